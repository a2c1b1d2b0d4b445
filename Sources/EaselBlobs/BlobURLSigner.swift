import Crypto
import Foundation

/// Signs short-lived URLs on Easel's own public URL for objects in a store that has no URL
/// signing of its own (the disk store). The web layer serves `/blobs/{key}` and checks them.
public struct BlobURLSigner: Sendable {
    public let baseURL: URL
    /// Raw key bytes: SymmetricKey itself is not Sendable.
    private let key: [UInt8]

    /// `baseURL` is the public URL (EASEL_PUBLIC_URL); `secret` is derived from EASEL_SECRET_KEY.
    public init(baseURL: URL, secret: some DataProtocol) {
        self.baseURL = baseURL
        // A key of its own, so a signature made here means nothing anywhere else.
        self.key = Array(HMAC<SHA256>.authenticationCode(for: Data("easel blob url v1".utf8), using: SymmetricKey(data: Array(secret))))
    }

    public func url(for blobKey: BlobKey, expiresAt: Date) -> URL {
        let expires = Int(expiresAt.timeIntervalSince1970)
        let signature = self.signature(for: blobKey, expires: expires)
        var components = URLComponents(url: self.baseURL, resolvingAgainstBaseURL: false)!
        let basePath = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        components.percentEncodedPath = basePath + "/blobs/" + Self.encodePath(blobKey.rawValue)
        components.queryItems = [URLQueryItem(name: "expires", value: String(expires)), URLQueryItem(name: "sig", value: signature)]
        return components.url!
    }

    /// True when `signature` was made here for this key and `expires` is still in the future.
    public func verify(_ blobKey: BlobKey, expires: Int, signature: String, now: Date = Date()) -> Bool {
        guard expires >= Int(now.timeIntervalSince1970) else { return false }
        let expected = self.signature(for: blobKey, expires: expires)
        // Constant-time comparison.
        guard expected.utf8.count == signature.utf8.count else { return false }
        return zip(expected.utf8, signature.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private func signature(for blobKey: BlobKey, expires: Int) -> String {
        let message = Data("\(blobKey.rawValue)\n\(expires)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: self.key))
        return Data(mac).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func encodePath(_ path: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/")
        return path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
    }
}
