import Foundation
import Logging

/// A real OpenID Connect issuer for tests: Flask + joserfc on 127.0.0.1, run by
/// `Tests/peers/oidc_issuer.py` with the repository's `.venv` (which `make test` creates).
///
/// It publishes a discovery document and an RSA key set, auto-approves a test user at its
/// authorization endpoint (redirecting to `redirectURI` with `code` and `state`: read them from
/// the Location header with redirects turned off), and checks client credentials, the
/// redirect URI, the PKCE verifier and single use at its token endpoint. Commands on its stdin
/// make the next ID token misbehave, rotate its keys, change its discovery document or stall it.
///
/// Start one per test and stop it when the test is done; if the test process dies, the peer
/// sees its stdin close and exits too.
public final class OIDCIssuerPeer: Sendable {
    public let issuer: URL
    public let clientID: String
    public let clientSecret: String
    /// The only redirect URI the peer accepts for `clientID`.
    public let redirectURI: URL
    /// The kid of the key the peer signs with at start.
    public let initialKeyID: String

    /// Who the peer's authorization endpoint signs in (unless a login_hint names another email).
    public static let testSubject = "248289761001"
    public static let testEmail = "ada@example.test"
    public static let testName = "Ada Lovelace"
    public static let testPicture = URL(string: "https://images.example.test/ada.png")!

    /// A 64 x 48 PNG (with a tEXt comment "secret-provider-metadata") the peer serves itself,
    /// on loopback: a picture claim for the guarded fetcher to take or refuse.
    public var servedPictureURL: URL { self.issuer.appending(path: "picture.png") }

    private let peer: PythonPeer
    private let logger: Logger

    /// What the next ID token does wrong.
    public enum TokenFault: String, Sendable, CaseIterable {
        /// `aud` is another client.
        case wrongAudience = "wrong_audience"
        /// `aud` is [client, another service] and `azp` is the client: acceptable.
        case extraAudience = "extra_audience"
        /// `aud` is [client, another service] and `azp` is the other service.
        case extraAudienceWrongPresenter = "extra_audience_wrong_azp"
        case wrongIssuer = "wrong_issuer"
        /// `iss` without its scheme, the way Google's "accounts.google.com" looks.
        case shortIssuer = "google_short_issuer"
        /// `exp` ten minutes ago.
        case expired
        /// `iat` an hour from now.
        case issuedInFuture = "issued_in_future"
        case wrongNonce = "wrong_nonce"
        case missingNonce = "missing_nonce"
        /// Signed by a key whose kid is not in the key set.
        case unknownKeyID = "unknown_kid"
        /// Signed by a key not in the key set, under the current key's kid.
        case foreignKey = "foreign_key"
        /// HS256 with the RSA public key (PEM) as the HMAC secret, under the current kid.
        case hs256
        /// `alg: none`, no signature.
        case algNone = "alg_none"
        /// RS256 by the current key, but without a kid in the header.
        case noKeyID = "no_kid"
        case emailUnverified = "email_unverified"
        /// `email_verified` as the string "true".
        case emailVerifiedAsString = "email_verified_string"
    }

    /// How many requests each endpoint has answered.
    public struct RequestCounts: Sendable, Equatable, Decodable {
        public var discovery: Int
        public var jwks: Int
        public var authorize: Int
        public var token: Int
        /// GET /picture.png
        public var picture: Int
    }

    /// Starts the peer and waits (up to `timeout`) for it to say where it listens.
    public static func start(
        timeout: Duration = .seconds(90),
        logger: Logger = Logger(label: "easel.tests.oidc-issuer")
    ) async throws -> OIDCIssuerPeer {
        let (peer, line) = try await PythonPeer.start(script: "oidc_issuer.py", label: "OIDC", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)),
            let issuer = URL(string: announcement.issuer), let redirectURI = URL(string: announcement.redirectURI)
        else {
            await peer.stop()
            throw TestPeerError("the OIDC test issuer announced something unexpected: \(line)")
        }
        logger.info("OIDC issuer peer started", metadata: ["issuer": .string(issuer.absoluteString)])
        return OIDCIssuerPeer(
            issuer: issuer,
            clientID: announcement.clientID,
            clientSecret: announcement.clientSecret,
            redirectURI: redirectURI,
            initialKeyID: announcement.kid,
            peer: peer,
            logger: logger
        )
    }

    private init(
        issuer: URL,
        clientID: String,
        clientSecret: String,
        redirectURI: URL,
        initialKeyID: String,
        peer: PythonPeer,
        logger: Logger
    ) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.initialKeyID = initialKeyID
        self.peer = peer
        self.logger = logger
    }

    /// Makes the next ID token the token endpoint issues misbehave in one way.
    public func misbehaveOnNextToken(_ fault: TokenFault) async throws {
        _ = try await self.command(["command": "next_token", "fault": fault.rawValue])
    }

    /// Signs with a new key under a new kid from now on; returns that kid. The old key stays
    /// in the key set unless `keepingOld` is false.
    @discardableResult
    public func rotateKeys(keepingOld: Bool = true) async throws -> String {
        let reply = try await self.command(["command": "rotate_keys", "keep_old": keepingOld])
        guard let kid = reply["kid"] as? String else {
            throw TestPeerError("the OIDC test issuer did not name its new key")
        }
        return kid
    }

    /// Overrides fields of the discovery document (`nil` removes one); `[:]` restores it.
    public func setDiscoveryFields(_ fields: [String: String?]) async throws {
        let json = fields.mapValues { value -> Any in value ?? NSNull() }
        _ = try await self.command(["command": "set_discovery", "fields": json])
    }

    /// Sets `token_endpoint_auth_methods_supported`; the token endpoint then accepts only these.
    public func setTokenEndpointAuthMethods(_ methods: [String]) async throws {
        _ = try await self.command(["command": "set_auth_methods", "methods": methods])
    }

    /// The Cache-Control max-age of the key set's answers.
    public func setKeySetMaxAge(seconds: Int) async throws {
        _ = try await self.command(["command": "set_jwks_max_age", "seconds": seconds])
    }

    /// Makes the next request for `path` (e.g. "/.well-known/openid-configuration") wait
    /// `seconds` before it is answered.
    public func stallNextRequest(path: String, seconds: Double) async throws {
        _ = try await self.command(["command": "stall_next", "path": path, "seconds": seconds])
    }

    /// The `picture` claim of the ID tokens issued from now on; nil restores `testPicture`.
    public func setPicture(_ url: URL?) async throws {
        _ = try await self.command(["command": "set_picture", "url": url?.absoluteString ?? NSNull()])
    }

    public func requestCounts() async throws -> RequestCounts {
        let reply = try await self.command(["command": "stats"])
        let data = try JSONSerialization.data(withJSONObject: reply)
        return try JSONDecoder().decode(RequestCounts.self, from: data)
    }

    /// Closes the peer's stdin (it then exits) and waits for it, ending it after five seconds.
    public func stop() async {
        await self.peer.stop()
        self.logger.info("OIDC issuer peer stopped", metadata: ["issuer": .string(self.issuer.absoluteString)])
    }

    /// Sends one JSON command line and returns the peer's JSON answer, which must say ok.
    private func command(_ command: [String: Any]) async throws -> [String: Any] {
        let line = String(decoding: try JSONSerialization.data(withJSONObject: command), as: UTF8.self)
        let answer = try await self.peer.request(line)
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], object["ok"] as? Bool == true else {
            throw TestPeerError("the OIDC test issuer refused \(line): \(answer)")
        }
        return object
    }

    private struct Announcement: Decodable {
        var issuer: String
        var clientID: String
        var clientSecret: String
        var redirectURI: String
        var kid: String

        enum CodingKeys: String, CodingKey {
            case issuer
            case clientID = "client_id"
            case clientSecret = "client_secret"
            case redirectURI = "redirect_uri"
            case kid
        }
    }
}
