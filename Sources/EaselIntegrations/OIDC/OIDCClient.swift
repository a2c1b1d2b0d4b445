import AsyncHTTPClient
import Crypto
import Foundation
import JWTKit
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// What the web layer needs to send a person to the provider, and to keep until they return.
///
/// Send the browser to `url`. Keep `state`, `nonce` and `codeVerifier` for this browser only
/// (a short-lived signed, HttpOnly cookie or a database row keyed by `state`, valid for about
/// ten minutes and used once). When the provider redirects back, the web layer itself checks
/// that the `state` query parameter equals the kept one (constant-time) before calling
/// `OIDCClient.finishAuthorization` with the kept `codeVerifier` and `nonce`.
public struct OIDCAuthorizationRequest: Sendable, Equatable {
    public var url: URL
    public var state: String
    public var nonce: String
    public var codeVerifier: String

    public init(url: URL, state: String, nonce: String, codeVerifier: String) {
        self.url = url
        self.state = state
        self.nonce = nonce
        self.codeVerifier = codeVerifier
    }
}

/// The relying-party side of OpenID Connect's authorization code flow with PKCE, for "Sign in
/// with Google" and any other provider that publishes a discovery document.
///
/// Copies share one cache of the discovery document and the provider's keys, so create one
/// client at start-up and hand it to whoever needs it.
public struct OIDCClient: Sendable {
    public let configuration: OIDCConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let discoveryCache = OIDCCache<OIDCProviderMetadata>()
    private let keyCache = OIDCCache<OIDCSigningKeys>()

    /// Bytes of randomness in `state` and `nonce` (256 bits), and in the PKCE verifier
    /// (384 bits, which base64url makes 64 characters: inside PKCE's 43–128).
    static let randomBytes = 32
    static let verifierBytes = 48
    /// Discovery documents, key sets and token answers are small; refuse anything bigger.
    static let responseLimit = 1024 * 1024
    /// Bounds on how long a key set is kept, whatever its Cache-Control says.
    static let keySetLifetimeBounds: ClosedRange<TimeInterval> = 60...86_400

    /// Checks the configuration (throws `OIDCError.invalidConfiguration`); makes no request.
    /// `now` is the clock used for caches and token times; tests pass one they can move.
    public init(
        configuration: OIDCConfiguration,
        httpClient: HTTPClient,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(OIDCError) {
        try configuration.validate()
        self.configuration = configuration
        self.httpClient = httpClient
        var logger = logger
        logger[metadataKey: "oidc.issuer"] = .string(configuration.issuer.absoluteString)
        self.logger = logger
        self.now = now
    }

    /// The provider's discovery document, fetched and checked on first use and then cached.
    public func providerMetadata() async throws(OIDCError) -> OIDCProviderMetadata {
        try await self.discoveryCache.value(now: self.now()) { await self.fetchDiscovery() }.get().value
    }

    /// Makes a fresh `state`, `nonce` and PKCE verifier and the URL to send the browser to.
    ///
    /// - Parameters:
    ///   - prompt: OpenID's `prompt` ("select_account", "login", "consent"), if wanted.
    ///   - loginHint: an email address to preselect at the provider, if known.
    public func startAuthorization(prompt: String? = nil, loginHint: String? = nil) async throws(OIDCError) -> OIDCAuthorizationRequest {
        let metadata = try await self.providerMetadata()
        let state = Self.randomToken(byteCount: Self.randomBytes)
        let nonce = Self.randomToken(byteCount: Self.randomBytes)
        let codeVerifier = Self.randomToken(byteCount: Self.verifierBytes)

        var parameters = [
            ("response_type", "code"),
            ("client_id", self.configuration.clientID),
            ("redirect_uri", self.configuration.redirectURI.absoluteString),
            ("scope", self.configuration.scopes.joined(separator: " ")),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", Self.pkceChallenge(for: codeVerifier)),
            ("code_challenge_method", "S256"),
        ]
        if let prompt, !prompt.isEmpty { parameters.append(("prompt", prompt)) }
        if let loginHint, !loginHint.isEmpty { parameters.append(("login_hint", loginHint)) }

        // An authorization endpoint may carry its own query, which must be kept (RFC 6749 §3.1).
        let endpoint = metadata.authorizationEndpoint.absoluteString
        let separator = metadata.authorizationEndpoint.query == nil ? "?" : "&"
        guard let url = URL(string: endpoint + separator + OIDCForm.encode(parameters)) else {
            throw .discoveryFailed(issuer: metadata.issuer, reason: "its authorization_endpoint \(endpoint) cannot take a query")
        }
        return OIDCAuthorizationRequest(url: url, state: state, nonce: nonce, codeVerifier: codeVerifier)
    }

    /// Exchanges the code from the provider's redirect for an ID token and verifies it.
    ///
    /// The caller has already checked `state`; `codeVerifier` and `expectedNonce` are the ones
    /// `startAuthorization` made for this browser. The identity's email is trustworthy only when
    /// `emailVerified` is true.
    public func finishAuthorization(code: String, codeVerifier: String, expectedNonce: String) async throws(OIDCError) -> OIDCIdentity {
        do throws(OIDCError) {
            guard !code.isEmpty else {
                throw OIDCError.tokenRequestFailed(reason: "the provider's redirect carried no code")
            }
            // An empty nonce means the caller lost what it stored; that is never a match.
            guard !expectedNonce.isEmpty else { throw OIDCError.nonceMismatch }
            let metadata = try await self.providerMetadata()
            let idToken = try await self.redeem(code: code, codeVerifier: codeVerifier, metadata: metadata)
            let identity = try await self.verifyIDToken(idToken, expectedNonce: expectedNonce)
            self.logger.debug("OIDC sign-in verified", metadata: ["oidc.email_verified": .stringConvertible(identity.emailVerified)])
            return identity
        } catch {
            self.logger.warning("OIDC sign-in failed", metadata: ["error": .string(error.description)])
            throw error
        }
    }

    /// Checks an ID token's header, signature and claims (OpenID Connect Core §3.1.3.7).
    func verifyIDToken(_ idToken: String, expectedNonce: String) async throws(OIDCError) -> OIDCIdentity {
        let header = try IDTokenHeader.parse(idToken)
        // Decided here, not by the token: "none" and HS256 (signed with our public key as an
        // HMAC secret) are the classic forgeries.
        guard header.alg == "RS256" else {
            throw .unsupportedAlgorithm(header.alg ?? "(none given)")
        }
        // jwt-kit falls back to its default key for a missing or unknown kid; we never want that.
        guard let keyID = header.kid, !keyID.isEmpty else {
            throw .missingKeyID
        }
        let signingKeys = try await self.signingKeys(naming: keyID)

        let claims: IDTokenClaims
        do {
            claims = try await signingKeys.keys.verify(idToken, as: IDTokenClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw .invalidSignature(keyID: keyID)
        } catch let error as JWTError where error.errorType == .malformedToken {
            throw .malformedIDToken(reason: "its payload or signature is not well-formed (OpenID Connect requires iss, sub, aud, exp and iat)")
        } catch {
            throw .malformedIDToken(reason: "it could not be verified (\(Self.errorKind(error)))")
        }
        try claims.check(configuration: self.configuration, expectedNonce: expectedNonce, now: self.now())
        return claims.identity(issuer: self.configuration.issuer.absoluteString)
    }

    /// `BASE64URL(SHA256(ASCII(verifier)))`, PKCE's S256 (RFC 7636 §4.2).
    public static func pkceChallenge(for verifier: String) -> String {
        OIDCBase64URL.encode(SHA256.hash(data: Data(verifier.utf8)))
    }

    // MARK: - Provider documents

    private func fetchDiscovery() async -> Result<OIDCCache<OIDCProviderMetadata>.Fetched, OIDCError> {
        let url = self.configuration.discoveryURL
        let issuer = self.configuration.issuer.absoluteString
        do throws(OIDCError) {
            let exchange: OIDCExchange
            do {
                exchange = try await self.send(Self.getRequest(url))
            } catch {
                throw .discoveryFailed(issuer: issuer, reason: "\(url.absoluteString): \(error.reason)")
            }
            guard exchange.status == .ok else {
                throw .discoveryFailed(issuer: issuer, reason: "\(url.absoluteString) answered HTTP \(exchange.status.code)")
            }
            let metadata = try OIDCProviderMetadata.parse(exchange.body, configuration: self.configuration)
            if let methods = metadata.codeChallengeMethods, !methods.contains("S256") {
                self.logger.warning(
                    "The OIDC provider does not list PKCE S256; sign-in may fail",
                    metadata: ["oidc.methods": .string(methods.joined(separator: ","))]
                )
            }
            self.logger.info("Fetched the OIDC discovery document", metadata: ["oidc.jwks_uri": .string(metadata.jwksURI.absoluteString)])
            return .success(.init(value: metadata, lifetime: OIDCDuration.seconds(self.configuration.discoveryLifetime)))
        } catch {
            self.logger.error("OIDC discovery failed", metadata: ["error": .string(error.description)])
            return .failure(error)
        }
    }

    private func fetchKeys() async -> Result<OIDCCache<OIDCSigningKeys>.Fetched, OIDCError> {
        do throws(OIDCError) {
            let url = try await self.providerMetadata().jwksURI
            let exchange: OIDCExchange
            do {
                exchange = try await self.send(Self.getRequest(url))
            } catch {
                throw .keySetUnavailable(reason: "\(url.absoluteString): \(error.reason)")
            }
            guard exchange.status == .ok else {
                throw .keySetUnavailable(reason: "\(url.absoluteString) answered HTTP \(exchange.status.code)")
            }
            let keys = try await OIDCSigningKeys.parse(exchange.body, from: url, logger: self.logger)
            let lifetime = Self.cacheLifetime(
                exchange.headers,
                default: OIDCDuration.seconds(self.configuration.defaultKeySetLifetime),
                bounds: Self.keySetLifetimeBounds
            )
            self.logger.info(
                "Fetched the OIDC key set",
                metadata: [
                    "oidc.kids": .string(keys.keyIDs.sorted().joined(separator: ",")), "oidc.cache_seconds": .stringConvertible(Int(lifetime)),
                ]
            )
            return .success(.init(value: keys, lifetime: lifetime))
        } catch {
            self.logger.error("Fetching the OIDC key set failed", metadata: ["error": .string(error.description)])
            return .failure(error)
        }
    }

    /// The key set holding `keyID`: the cached one, or, if the key is new to us, a fresh one.
    private func signingKeys(naming keyID: String) async throws(OIDCError) -> OIDCSigningKeys {
        let lookup = try await self.keyCache.value(now: self.now()) { await self.fetchKeys() }.get()
        if lookup.value.keyIDs.contains(keyID) {
            return lookup.value
        }
        if lookup.fetchedNow {
            throw .unknownKeyID(keyID)
        }
        // Providers rotate keys; a kid we have not seen may be new since we fetched.
        self.logger.notice("An ID token names an unknown key; fetching the OIDC key set again", metadata: ["oidc.kid": .string(keyID)])
        let refreshed = await self.keyCache.refreshEarly(
            now: self.now(),
            minimumInterval: OIDCDuration.seconds(self.configuration.minimumKeyRefreshInterval)
        ) { await self.fetchKeys() }
        guard let refreshed else {
            self.logger.warning("Not fetching the OIDC key set again so soon", metadata: ["oidc.kid": .string(keyID)])
            throw .unknownKeyID(keyID)
        }
        let keys = try refreshed.get()
        guard keys.keyIDs.contains(keyID) else {
            throw .unknownKeyID(keyID)
        }
        return keys
    }

    // MARK: - Token endpoint

    /// POSTs the code to the token endpoint and returns the ID token from its answer.
    private func redeem(code: String, codeVerifier: String, metadata: OIDCProviderMetadata) async throws(OIDCError) -> String {
        var form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.configuration.redirectURI.absoluteString),
            ("code_verifier", codeVerifier),
        ]
        var request = HTTPClientRequest(url: metadata.tokenEndpoint.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        switch metadata.clientAuthentication ?? .basic {
        case .basic:
            // RFC 6749 §2.3.1: both halves are form-encoded before base64.
            let credentials = OIDCForm.escape(self.configuration.clientID) + ":" + OIDCForm.escape(self.configuration.clientSecret)
            request.headers.add(name: "Authorization", value: "Basic " + Data(credentials.utf8).base64EncodedString())
        case .post:
            form.append(("client_id", self.configuration.clientID))
            form.append(("client_secret", self.configuration.clientSecret))
        }
        request.body = .bytes(ByteBuffer(string: OIDCForm.encode(form)))

        let exchange: OIDCExchange
        do {
            exchange = try await self.send(request)
        } catch {
            throw .tokenRequestFailed(reason: "\(metadata.tokenEndpoint.absoluteString): \(error.reason)")
        }
        guard exchange.status == .ok else {
            guard let refusal = try? JSONDecoder().decode(OAuthErrorAnswer.self, from: exchange.body) else {
                throw .tokenRequestFailed(
                    reason: "\(metadata.tokenEndpoint.absoluteString) answered HTTP \(exchange.status.code) without an OAuth error"
                )
            }
            throw .tokenExchangeRejected(
                status: Int(exchange.status.code),
                error: Self.printable(refusal.error),
                errorDescription: refusal.errorDescription.map(Self.printable)
            )
        }
        guard let answer = try? JSONDecoder().decode(TokenAnswer.self, from: exchange.body) else {
            throw .tokenRequestFailed(reason: "\(metadata.tokenEndpoint.absoluteString) answered with something other than a token response")
        }
        guard let idToken = answer.idToken, !idToken.isEmpty else {
            throw .tokenRequestFailed(reason: "the token response has no id_token")
        }
        return idToken
    }

    private struct TokenAnswer: Decodable {
        var idToken: String?
        enum CodingKeys: String, CodingKey { case idToken = "id_token" }
    }

    private struct OAuthErrorAnswer: Decodable {
        var error: String
        var errorDescription: String?
        enum CodingKeys: String, CodingKey {
            case error
            case errorDescription = "error_description"
        }
    }

    // MARK: - HTTP

    private static func getRequest(_ url: URL) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .GET
        request.headers.add(name: "Accept", value: "application/json")
        return request
    }

    /// Sends `request` and reads the whole answer within `requestTimeout`: the deadline covers
    /// the body too, so a provider that stalls mid-answer cannot hold a sign-in forever.
    private func send(_ request: HTTPClientRequest) async throws(OIDCTransportFailure) -> OIDCExchange {
        let timeout = self.configuration.requestTimeout
        let httpClient = self.httpClient
        let logger = self.logger
        do {
            return try await withThrowingTaskGroup(of: OIDCExchange?.self) { group in
                group.addTask {
                    let deadline = NIODeadline.now() + .nanoseconds(Int64(OIDCDuration.seconds(timeout) * 1e9))
                    let response = try await httpClient.execute(request, deadline: deadline, logger: logger)
                    let body = try await response.body.collect(upTo: Self.responseLimit)
                    return OIDCExchange(status: response.status, headers: response.headers, body: Data(buffer: body))
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let exchange = first else {
                    throw OIDCTransportFailure(reason: "no answer within \(timeout)")
                }
                return exchange
            }
        } catch let failure as OIDCTransportFailure {
            throw failure
        } catch is NIOTooManyBytesError {
            throw OIDCTransportFailure(reason: "the answer is larger than \(Self.responseLimit) bytes")
        } catch let error as HTTPClientError where [.deadlineExceeded, .connectTimeout, .readTimeout].contains(error) {
            throw OIDCTransportFailure(reason: "no answer within \(timeout)")
        } catch is CancellationError {
            throw OIDCTransportFailure(reason: "the request was cancelled")
        } catch {
            throw OIDCTransportFailure(reason: "could not connect (\(error))")
        }
    }

    /// Seconds to keep a response: its Cache-Control max-age less its Age, within `bounds`.
    static func cacheLifetime(_ headers: HTTPHeaders, default fallback: TimeInterval, bounds: ClosedRange<TimeInterval>) -> TimeInterval {
        let directives = headers["Cache-Control"]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if directives.contains("no-store") || directives.contains("no-cache") {
            return bounds.lowerBound
        }
        guard let maxAge = directives.lazy.compactMap({ $0.hasPrefix("max-age=") ? Int($0.dropFirst("max-age=".count)) : nil }).first else {
            return min(max(fallback, bounds.lowerBound), bounds.upperBound)
        }
        let age = headers.first(name: "Age").flatMap { Int($0) } ?? 0
        return min(max(TimeInterval(maxAge - age), bounds.lowerBound), bounds.upperBound)
    }

    static func randomToken(byteCount: Int) -> String {
        // SystemRandomNumberGenerator is the operating system's CSPRNG (getrandom, arc4random).
        var generator = SystemRandomNumberGenerator()
        return OIDCBase64URL.encode((0..<byteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// Provider text shown to operators: printable ASCII only (RFC 6749 §5.2), and not too long.
    private static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.filter { (0x20...0x7E).contains($0.value) }).prefix(300))
    }

    private static func errorKind(_ error: any Error) -> String {
        if let error = error as? JWTError { return error.errorType.description }
        return String(describing: type(of: error))
    }
}

struct OIDCExchange: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: Data
}

struct OIDCTransportFailure: Error {
    var reason: String
}

/// `application/x-www-form-urlencoded`, strictly: everything but RFC 3986's unreserved
/// characters is percent-encoded (a "+" left alone would arrive as a space).
enum OIDCForm {
    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    static func escape(_ value: String) -> String {
        var escaped = ""
        for byte in value.utf8 {
            if Self.unreserved.contains(byte) {
                escaped.append(Character(Unicode.Scalar(byte)))
            } else {
                escaped += String(format: "%%%02X", byte)
            }
        }
        return escaped
    }

    static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&")
    }
}
