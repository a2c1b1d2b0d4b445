import Crypto
import EaselStore
import Foundation
import Hummingbird
import NIOCore

/// The signed-in person behind a request, and their session.
public struct Identity: Sendable {
    public var user: User
    public var session: Session
}

/// Per-request data only: the CSP nonce, the client address, and who is signed in.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// A fresh nonce each request, put in the Content-Security-Policy and on inline scripts.
    public let cspNonce: String
    /// The peer's IP address (a reverse proxy's, when there is one).
    public var clientIP: String
    /// Two-letter country from a trusted proxy's header or the GeoIP file (see ClientAddressMiddleware).
    public var country: String?
    /// Region (state, province) from a trusted proxy's EASEL_REGION_HEADER, when it tells.
    public var region: String?
    /// Set when this page view is counted for a visitor who accepted analytics: the page
    /// carries it so the beacon can add the screen size (`AnalyticsMiddleware`).
    public var beaconToken: String?
    /// Set by `SessionMiddleware` when the session cookie names a live session.
    public var identity: Identity?
    /// The anonymous CSRF token (double-submit cookie) for forms shown before sign-in.
    public var anonymousCSRF: String?
    /// Language and theme from the preferences cookie or Accept-Language (`PreferencesMiddleware`).
    public var preferences = VisitorPreferences()

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.cspNonce = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }).base64EncodedString()
        self.clientIP = source.channel.remoteAddress?.ipAddress ?? ""
    }

    /// The token a form or script must send back on a state-changing request.
    var csrfToken: String { self.identity?.session.csrfToken ?? self.anonymousCSRF ?? "" }
}

/// A request from a signed-in person: handlers in this context cannot forget the check.
public struct SignedInContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let cspNonce: String
    public let clientIP: String
    public let identity: Identity
    public let preferences: VisitorPreferences
    public let beaconToken: String?
    var csrfToken: String { self.identity.session.csrfToken }

    public init(context: AppRequestContext) throws {
        guard let identity = context.identity else { throw SignInRequired() }
        self.coreContext = context.coreContext
        self.cspNonce = context.cspNonce
        self.clientIP = context.clientIP
        self.identity = identity
        self.preferences = context.preferences
        self.beaconToken = context.beaconToken
    }

    var user: User { self.identity.user }
}

/// Thrown when a page needs a signed-in person: browsers are sent to the sign-in page.
struct SignInRequired: Error {}
