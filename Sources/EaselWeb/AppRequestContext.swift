import Crypto
import Foundation
import Hummingbird
import NIOCore

/// Per-request data only: the CSP nonce for inline scripts (identity and session come later).
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// A fresh nonce each request, put in the Content-Security-Policy and on inline scripts.
    public let cspNonce: String

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.cspNonce = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }).base64EncodedString()
    }
}
