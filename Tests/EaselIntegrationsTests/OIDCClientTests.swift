import AsyncHTTPClient
import EaselTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import EaselIntegrations

/// The OpenID Connect client against a real issuer on loopback (Tests/peers/oidc_issuer.py).
/// Each test starts its own issuer, so faults injected into "the next token" never cross tests.
@Suite("OIDC client")
struct OIDCClientTests {
    // MARK: - The happy path and the authorization request

    @Test("a full sign-in returns the issuer's identity of the test user")
    func fullSignInReturnsIdentity() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a sign-in started by the client and approved by the issuer
            let request = try await fixture.client.startAuthorization()
            let redirect = try await fixture.followAuthorization(request)
            #expect(redirect.state == request.state)

            // When the code comes back
            let identity = try await fixture.client.finishAuthorization(
                code: redirect.code,
                codeVerifier: request.codeVerifier,
                expectedNonce: request.nonce
            )

            // Then the identity is the issuer's test user, with a verified email
            #expect(identity.issuer == fixture.peer.issuer.absoluteString)
            #expect(identity.subject == OIDCIssuerPeer.testSubject)
            #expect(identity.email == OIDCIssuerPeer.testEmail)
            #expect(identity.emailVerified)
            #expect(identity.name == OIDCIssuerPeer.testName)
            #expect(identity.pictureURL == OIDCIssuerPeer.testPicture)
        }
    }

    @Test("the authorization URL asks for a code with PKCE S256, the exact redirect URI, and fresh state and nonce")
    func authorizationURLParameters() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // When two sign-ins start
            let request = try await fixture.client.startAuthorization(prompt: "select_account", loginHint: "grace@example.test")
            let other = try await fixture.client.startAuthorization()

            // Then the URL goes to the issuer's authorization endpoint with every parameter
            let components = try #require(URLComponents(url: request.url, resolvingAgainstBaseURL: false))
            #expect(components.path == "/authorize")
            #expect(request.url.absoluteString.hasPrefix(fixture.peer.issuer.absoluteString + "/authorize?"))
            let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { first, _ in first })
            #expect(query["response_type"] == "code")
            #expect(query["client_id"] == fixture.peer.clientID)
            #expect(query["redirect_uri"] == fixture.peer.redirectURI.absoluteString)
            #expect(query["scope"] == "openid email profile")
            #expect(query["state"] == request.state)
            #expect(query["nonce"] == request.nonce)
            #expect(query["code_challenge_method"] == "S256")
            #expect(query["code_challenge"] == OIDCClient.pkceChallenge(for: request.codeVerifier))
            #expect(query["prompt"] == "select_account")
            #expect(query["login_hint"] == "grace@example.test")
            #expect(other.url.query?.contains("prompt") == false)

            // And state and nonce carry at least 128 random bits, the verifier fits PKCE's rules
            let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
            for value in [request.state, request.nonce] {
                #expect(value.count >= 22)  // 128 bits in base64url
                #expect(value.unicodeScalars.allSatisfy { unreserved.contains($0) })
            }
            #expect((43...128).contains(request.codeVerifier.count))
            #expect(request.codeVerifier.unicodeScalars.allSatisfy { unreserved.contains($0) })
            #expect(Set([request.state, request.nonce, request.codeVerifier]).count == 3)
            #expect(other.state != request.state)
            #expect(other.nonce != request.nonce)
            #expect(other.codeVerifier != request.codeVerifier)
        }
    }

    @Test("the PKCE challenge is BASE64URL(SHA256(verifier)), as in RFC 7636's example")
    func pkceChallengeMatchesRFCExample() {
        #expect(OIDCClient.pkceChallenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    }

    @Test("a login hint reaches the issuer")
    func loginHintReachesIssuer() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a sign-in that names an email (the test issuer signs in whoever is hinted)
            let request = try await fixture.client.startAuthorization(loginHint: "grace@example.test")
            let redirect = try await fixture.followAuthorization(request)

            // When it finishes
            let identity = try await fixture.client.finishAuthorization(
                code: redirect.code,
                codeVerifier: request.codeVerifier,
                expectedNonce: request.nonce
            )

            // Then the issuer saw the hint
            #expect(identity.email == "grace@example.test")
        }
    }

    // MARK: - The token endpoint

    @Test("a code verifier that does not match the challenge is refused by the issuer")
    func wrongCodeVerifierIsRefused() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given an approved sign-in
            let request = try await fixture.client.startAuthorization()
            let redirect = try await fixture.followAuthorization(request)

            // When it is finished with another sign-in's verifier
            let stranger = try await fixture.client.startAuthorization()
            let error = await fixture.failure {
                try await fixture.client.finishAuthorization(code: redirect.code, codeVerifier: stranger.codeVerifier, expectedNonce: request.nonce)
            }

            // Then the issuer's refusal comes through, without the code or the verifier
            guard case .tokenExchangeRejected(let status, let oauthError, let description)? = error else {
                Issue.record("expected tokenExchangeRejected, got \(String(describing: error))")
                return
            }
            #expect(status == 400)
            #expect(oauthError == "invalid_grant")
            #expect(description?.contains("PKCE") == true)
            let text = String(describing: error!)
            #expect(!text.contains(redirect.code))
            #expect(!text.contains(stranger.codeVerifier))
        }
    }

    @Test("a code works once; using it again is refused")
    func codeReuseIsRefused() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a sign-in that has finished
            let request = try await fixture.client.startAuthorization()
            let redirect = try await fixture.followAuthorization(request)
            _ = try await fixture.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: request.nonce)

            // When the same code is presented again
            let error = await fixture.failure {
                try await fixture.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: request.nonce)
            }

            // Then the issuer refuses it
            guard case .tokenExchangeRejected(400, "invalid_grant", _)? = error else {
                Issue.record("expected invalid_grant, got \(String(describing: error))")
                return
            }
        }
    }

    @Test("a wrong client secret is refused as invalid_client, and the error does not show the secret")
    func wrongClientSecretIsRefused() async throws {
        try await OIDCIssuerFixture.with(configure: { $0.clientSecret = "not-the-secret-\(UUID().uuidString)" }) { fixture in
            let error = try await fixture.failedSignIn()

            guard case .tokenExchangeRejected(401, "invalid_client", _)? = error else {
                Issue.record("expected invalid_client, got \(String(describing: error))")
                return
            }
            let text = String(describing: error!)
            #expect(text.contains("client secret"))  // tells the operator what to check
            #expect(!text.contains(fixture.client.configuration.clientSecret))
            #expect(!String(describing: fixture.client.configuration).contains(fixture.client.configuration.clientSecret))
        }
    }

    @Test(
        "the client authenticates the way the discovery document offers",
        arguments: [["client_secret_basic"], ["client_secret_post"], ["client_secret_post", "client_secret_basic"]]
    )
    func clientAuthenticationFollowsDiscovery(methods: [String]) async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given an issuer that accepts only these methods (it refuses any other)
            try await fixture.peer.setTokenEndpointAuthMethods(methods)

            // When someone signs in, then it works
            let identity = try await fixture.signIn()
            #expect(identity.subject == OIDCIssuerPeer.testSubject)
        }
    }

    @Test("an issuer offering no client authentication Easel supports is reported at discovery")
    func unsupportedClientAuthentication() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.setTokenEndpointAuthMethods(["private_key_jwt"])

            let error = await fixture.failure { try await fixture.client.startAuthorization() }

            guard case .discoveryFailed(_, let reason)? = error else {
                Issue.record("expected discoveryFailed, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("private_key_jwt"))
        }
    }

    // MARK: - ID token checks

    @Test(
        "an ID token that fails a check is refused with an error naming the check",
        arguments: [
            (OIDCIssuerPeer.TokenFault.wrongAudience, "wrongAudience"),
            (.extraAudienceWrongPresenter, "wrongAudience"),
            (.wrongIssuer, "wrongIssuer"),
            (.shortIssuer, "wrongIssuer"),  // only Google's issuer has a short form
            (.expired, "expired"),
            (.issuedInFuture, "notYetValid"),
            (.wrongNonce, "nonceMismatch"),
            (.missingNonce, "nonceMismatch"),
            (.unknownKeyID, "unknownKeyID"),
            (.foreignKey, "invalidSignature"),
            (.hs256, "unsupportedAlgorithm"),
            (.algNone, "unsupportedAlgorithm"),
            (.noKeyID, "missingKeyID"),
        ]
    )
    func badIDTokenIsRefused(fault: OIDCIssuerPeer.TokenFault, expected: String) async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given an issuer whose next ID token has this fault
            try await fixture.peer.misbehaveOnNextToken(fault)

            // When someone signs in
            let error = try await fixture.failedSignIn()

            // Then the client refuses the token for that reason
            #expect(error.map(Self.kind) == expected, "\(String(describing: error))")
        }
    }

    @Test("an HS256 token signed with the public key as secret is refused before any key is used")
    func hs256IsRefusedByName() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.misbehaveOnNextToken(.hs256)

            let error = try await fixture.failedSignIn()

            #expect(error == .unsupportedAlgorithm("HS256"))
        }
    }

    @Test("a token signed by a key outside the key set under a known kid fails its signature check")
    func foreignKeyUnderKnownKeyID() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.misbehaveOnNextToken(.foreignKey)

            let error = try await fixture.failedSignIn()

            #expect(error == .invalidSignature(keyID: fixture.peer.initialKeyID))
        }
    }

    @Test("an extra audience is accepted when the token was presented to this client (azp)")
    func extraAudienceWithOwnPresenter() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.misbehaveOnNextToken(.extraAudience)

            let identity = try await fixture.signIn()

            #expect(identity.subject == OIDCIssuerPeer.testSubject)
        }
    }

    @Test("an unverified email comes through as unverified")
    func unverifiedEmail() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.misbehaveOnNextToken(.emailUnverified)

            let identity = try await fixture.signIn()

            #expect(identity.email == OIDCIssuerPeer.testEmail)
            #expect(identity.emailVerified == false)
        }
    }

    @Test("email_verified sent as the string \"true\" counts as verified")
    func emailVerifiedAsString() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.misbehaveOnNextToken(.emailVerifiedAsString)

            let identity = try await fixture.signIn()

            #expect(identity.emailVerified)
        }
    }

    @Test("an empty expected nonce matches nothing")
    func emptyExpectedNonce() async throws {
        try await OIDCIssuerFixture.with { fixture in
            let request = try await fixture.client.startAuthorization()
            let redirect = try await fixture.followAuthorization(request)

            let error = await fixture.failure {
                try await fixture.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: "")
            }

            #expect(error == .nonceMismatch)
        }
    }

    @Test("a token read after its expiry by this server's clock is refused")
    func expiryFollowsTheClientsClock() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a sign-in approved now (its token lives an hour)
            let request = try await fixture.client.startAuthorization()
            let redirect = try await fixture.followAuthorization(request)

            // When our clock says two hours have passed
            fixture.clock.advance(by: 7200)
            let error = await fixture.failure {
                try await fixture.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: request.nonce)
            }

            // Then the token has expired
            #expect(error.map(Self.kind) == "expired")
        }
    }

    // MARK: - Keys

    @Test("after the issuer rotates its keys, a token under the new kid is verified with the refetched key set")
    func keyRotationIsFollowed() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a client that has fetched the key set once
            _ = try await fixture.signIn()
            #expect(try await fixture.peer.requestCounts().jwks == 1)

            // When the issuer replaces its key and someone signs in
            let newKeyID = try await fixture.peer.rotateKeys(keepingOld: false)
            #expect(newKeyID != fixture.peer.initialKeyID)
            let identity = try await fixture.signIn()

            // Then the client fetched the key set again and accepted the token
            #expect(identity.subject == OIDCIssuerPeer.testSubject)
            #expect(try await fixture.peer.requestCounts().jwks == 2)
        }
    }

    @Test("tokens with unknown kids make the key set be refetched at most once per interval")
    func unknownKeyIDRefetchIsRateLimited() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given a client with a fresh key set
            _ = try await fixture.signIn()

            // When two tokens name a key nobody publishes
            try await fixture.peer.misbehaveOnNextToken(.unknownKeyID)
            #expect(try await fixture.failedSignIn().map(Self.kind) == "unknownKeyID")
            try await fixture.peer.misbehaveOnNextToken(.unknownKeyID)
            #expect(try await fixture.failedSignIn().map(Self.kind) == "unknownKeyID")

            // Then the key set was fetched again for the first only
            #expect(try await fixture.peer.requestCounts().jwks == 2)

            // And once the interval has passed, another unknown kid may refetch
            fixture.clock.advance(by: 61)
            try await fixture.peer.misbehaveOnNextToken(.unknownKeyID)
            #expect(try await fixture.failedSignIn().map(Self.kind) == "unknownKeyID")
            #expect(try await fixture.peer.requestCounts().jwks == 3)
        }
    }

    @Test("the key set is cached for its Cache-Control max-age, the discovery document for its lifetime")
    func keySetCachedPerMaxAge() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // Given an issuer whose key set may be cached two minutes
            try await fixture.peer.setKeySetMaxAge(seconds: 120)
            _ = try await fixture.signIn()

            // When sign-ins happen within those two minutes
            fixture.clock.advance(by: 100)
            _ = try await fixture.signIn()
            #expect(try await fixture.peer.requestCounts().jwks == 1)

            // Then only one after them fetches the key set again
            fixture.clock.advance(by: 30)
            _ = try await fixture.signIn()
            let counts = try await fixture.peer.requestCounts()
            #expect(counts.jwks == 2)
            #expect(counts.discovery == 1)
        }
    }

    // MARK: - Discovery and reachability

    @Test("a discovery document naming another issuer is refused")
    func discoveryIssuerMismatch() async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.setDiscoveryFields(["issuer": "https://impostor.example.test"])

            let error = await fixture.failure { try await fixture.client.startAuthorization() }

            guard case .discoveryFailed(let issuer, let reason)? = error else {
                Issue.record("expected discoveryFailed, got \(String(describing: error))")
                return
            }
            #expect(issuer == fixture.peer.issuer.absoluteString)
            #expect(reason.contains("https://impostor.example.test"))
        }
    }

    @Test(
        "a discovery document without a usable endpoint is refused",
        arguments: [
            ["jwks_uri": nil], ["token_endpoint": nil], ["authorization_endpoint": nil],
            ["token_endpoint": "http://tokens.example.test/token"],  // plain http off loopback
        ] as [[String: String?]]
    )
    func discoveryWithoutUsableEndpoints(fields: [String: String?]) async throws {
        try await OIDCIssuerFixture.with { fixture in
            try await fixture.peer.setDiscoveryFields(fields)

            let error = await fixture.failure { try await fixture.client.startAuthorization() }

            guard case .discoveryFailed(_, let reason)? = error else {
                Issue.record("expected discoveryFailed, got \(String(describing: error))")
                return
            }
            #expect(reason.contains(fields.keys.first!))
        }
    }

    @Test("an unreachable issuer gives a clear error at once")
    func unreachableIssuer() async throws {
        // Port 1 on loopback: nothing listens there, so the connection is refused.
        let configuration = OIDCConfiguration(
            issuer: URL(string: "http://127.0.0.1:1")!,
            clientID: "easel",
            clientSecret: "secret",
            redirectURI: URL(string: "http://localhost:8080/auth/oidc/callback")!,
            allowInsecureLoopback: true,
            requestTimeout: .seconds(3)
        )
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let client = try OIDCClient(configuration: configuration, httpClient: http, logger: Logger(label: "easel.tests.oidc"))
        // No timing is asserted (the project's rule); a hang would stop the suite instead.
        let error = await OIDCIssuerFixture.failure { try await client.startAuthorization() }
        try await http.shutdown()

        guard case .discoveryFailed(let issuer, let reason)? = error else {
            Issue.record("expected discoveryFailed, got \(String(describing: error))")
            return
        }
        #expect(issuer == "http://127.0.0.1:1")
        #expect(reason.contains("127.0.0.1:1"))
    }

    @Test("concurrent sign-ins on a fresh client share one discovery fetch")
    func concurrentSignInsShareDiscovery() async throws {
        try await OIDCIssuerFixture.with { fixture in
            // When five sign-ins start at once on a client that has fetched nothing yet
            let client = fixture.client
            let requests = try await withThrowingTaskGroup(of: OIDCAuthorizationRequest.self) { group in
                for _ in 0..<5 {
                    group.addTask { try await client.startAuthorization() }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }

            // Then all got their own request, and the issuer was asked for its document once
            #expect(Set(requests.map(\.state)).count == 5)
            #expect(try await fixture.peer.requestCounts().discovery == 1)
        }
    }

    @Test("an issuer that does not answer fails after the request timeout instead of hanging")
    func stalledIssuerTimesOut() async throws {
        try await OIDCIssuerFixture.with(configure: { $0.requestTimeout = .seconds(1) }) { fixture in
            // Given an issuer that will sit on the discovery request for half a minute
            try await fixture.peer.stallNextRequest(path: "/.well-known/openid-configuration", seconds: 30)

            // When a sign-in starts
            let error = await fixture.failure { try await fixture.client.startAuthorization() }

            // Then it fails because of the timeout, saying so (no timing asserted)
            guard case .discoveryFailed(_, let reason)? = error else {
                Issue.record("expected discoveryFailed, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("no answer within"))
        }
    }

    // MARK: - Configuration

    @Test("plain http is refused for an issuer unless it is loopback and explicitly allowed")
    func insecureIssuerIsRefused() throws {
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        defer { try? http.syncShutdown() }
        let redirect = URL(string: "https://easel.example.test/auth/oidc/callback")!
        let logger = Logger(label: "easel.tests.oidc")

        let loopbackNotAllowed = OIDCConfiguration(
            issuer: URL(string: "http://127.0.0.1:9000")!,
            clientID: "c",
            clientSecret: "s",
            redirectURI: redirect
        )
        #expect(throws: OIDCError.self) { try OIDCClient(configuration: loopbackNotAllowed, httpClient: http, logger: logger) }

        let remote = OIDCConfiguration(
            issuer: URL(string: "http://issuer.example.test")!,
            clientID: "c",
            clientSecret: "s",
            redirectURI: redirect,
            allowInsecureLoopback: true
        )
        #expect(throws: OIDCError.self) { try OIDCClient(configuration: remote, httpClient: http, logger: logger) }

        let lookalike = OIDCConfiguration(
            issuer: URL(string: "http://127.0.0.1.example.test")!,
            clientID: "c",
            clientSecret: "s",
            redirectURI: redirect,
            allowInsecureLoopback: true
        )
        #expect(throws: OIDCError.self) { try OIDCClient(configuration: lookalike, httpClient: http, logger: logger) }

        for issuer in ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"] {
            let allowed = OIDCConfiguration(
                issuer: URL(string: issuer)!,
                clientID: "c",
                clientSecret: "s",
                redirectURI: redirect,
                allowInsecureLoopback: true
            )
            #expect(throws: Never.self, "\(issuer)") { try OIDCClient(configuration: allowed, httpClient: http, logger: logger) }
        }
    }

    @Test("a configuration without openid, client id or secret is refused, and its description hides the secret")
    func incompleteConfigurationIsRefused() throws {
        let redirect = URL(string: "https://easel.example.test/auth/oidc/callback")!
        let good = OIDCConfiguration(clientID: "client", clientSecret: "very-secret-value", redirectURI: redirect)
        #expect(throws: Never.self) { try good.validate() }
        #expect(good.issuer.absoluteString == "https://accounts.google.com")
        #expect(!good.description.contains("very-secret-value"))

        var noOpenID = good
        noOpenID.scopes = ["email", "profile"]
        #expect(throws: OIDCError.self) { try noOpenID.validate() }
        var noClient = good
        noClient.clientID = ""
        #expect(throws: OIDCError.self) { try noClient.validate() }
        var noSecret = good
        noSecret.clientSecret = ""
        #expect(throws: OIDCError.self) { try noSecret.validate() }
        var httpRedirect = good
        httpRedirect.redirectURI = URL(string: "http://easel.example.test/auth/oidc/callback")!
        #expect(throws: OIDCError.self) { try httpRedirect.validate() }
    }

    @Test("Google's ID tokens may name the issuer with or without https://; other issuers only exactly")
    func googleIssuerForms() {
        let redirect = URL(string: "https://easel.example.test/auth/oidc/callback")!
        let google = OIDCConfiguration(clientID: "c", clientSecret: "s", redirectURI: redirect)
        #expect(google.acceptedTokenIssuers == ["https://accounts.google.com", "accounts.google.com"])
        let other = OIDCConfiguration(
            issuer: URL(string: "https://login.example.test/realms/easel")!,
            clientID: "c",
            clientSecret: "s",
            redirectURI: redirect
        )
        #expect(other.acceptedTokenIssuers == ["https://login.example.test/realms/easel"])
        #expect(other.discoveryURL.absoluteString == "https://login.example.test/realms/easel/.well-known/openid-configuration")
    }

    // MARK: - Helpers

    /// The name of an error's case, for comparing kinds of failure.
    static func kind(_ error: OIDCError) -> String {
        switch error {
        case .invalidConfiguration: "invalidConfiguration"
        case .discoveryFailed: "discoveryFailed"
        case .keySetUnavailable: "keySetUnavailable"
        case .tokenRequestFailed: "tokenRequestFailed"
        case .tokenExchangeRejected: "tokenExchangeRejected"
        case .malformedIDToken: "malformedIDToken"
        case .unsupportedAlgorithm: "unsupportedAlgorithm"
        case .missingKeyID: "missingKeyID"
        case .unknownKeyID: "unknownKeyID"
        case .invalidSignature: "invalidSignature"
        case .wrongIssuer: "wrongIssuer"
        case .wrongAudience: "wrongAudience"
        case .expired: "expired"
        case .notYetValid: "notYetValid"
        case .nonceMismatch: "nonceMismatch"
        }
    }
}

/// A clock that runs with real time plus an offset the test moves (the issuer stamps tokens
/// with real time, so only our view of "now" may jump).
private final class OIDCTestClock: Sendable {
    private let offset = Mutex<TimeInterval>(0)

    var now: Date { Date().addingTimeInterval(self.offset.withLock { $0 }) }

    func advance(by seconds: TimeInterval) {
        self.offset.withLock { $0 += seconds }
    }
}

/// A running test issuer, an HTTP client that does not follow redirects (the test plays the
/// browser), and an `OIDCClient` configured for that issuer.
private struct OIDCIssuerFixture {
    let peer: OIDCIssuerPeer
    let http: HTTPClient
    let client: OIDCClient
    let clock: OIDCTestClock

    struct Redirect {
        var code: String
        var state: String?
    }

    static func with(
        configure: (inout OIDCConfiguration) -> Void = { _ in },
        _ body: (OIDCIssuerFixture) async throws -> Void
    ) async throws {
        let peer = try await OIDCIssuerPeer.start()
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: .init(redirectConfiguration: .disallow))
        let clock = OIDCTestClock()
        do {
            var configuration = OIDCConfiguration(
                issuer: peer.issuer,
                clientID: peer.clientID,
                clientSecret: peer.clientSecret,
                redirectURI: peer.redirectURI,
                allowInsecureLoopback: true,
                requestTimeout: .seconds(10)
            )
            configure(&configuration)
            let client = try OIDCClient(configuration: configuration, httpClient: http, logger: Logger(label: "easel.tests.oidc")) { clock.now }
            try await body(OIDCIssuerFixture(peer: peer, http: http, client: client, clock: clock))
        } catch {
            try? await http.shutdown()
            await peer.stop()
            throw error
        }
        try await http.shutdown()
        await peer.stop()
    }

    /// Plays the browser: opens the authorization URL and reads code and state from the
    /// issuer's redirect to our callback.
    func followAuthorization(_ request: OIDCAuthorizationRequest) async throws -> Redirect {
        let response = try await self.http.execute(HTTPClientRequest(url: request.url.absoluteString), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        try #require(response.status == .found, "the issuer answered \(response.status): \(String(buffer: body))")
        let location = try #require(response.headers.first(name: "Location"))
        let components = try #require(URLComponents(string: location))
        #expect(location.hasPrefix(self.peer.redirectURI.absoluteString + "?"))
        let items = components.queryItems ?? []
        let code = try #require(items.first { $0.name == "code" }?.value, "no code in \(location)")
        return Redirect(code: code, state: items.first { $0.name == "state" }?.value)
    }

    /// A whole sign-in that is expected to work.
    func signIn() async throws -> OIDCIdentity {
        let request = try await self.client.startAuthorization()
        let redirect = try await self.followAuthorization(request)
        return try await self.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: request.nonce)
    }

    /// A whole sign-in that is expected to fail when the code is exchanged; returns why.
    func failedSignIn(sourceLocation: SourceLocation = #_sourceLocation) async throws -> OIDCError? {
        let request = try await self.client.startAuthorization()
        let redirect = try await self.followAuthorization(request)
        return await self.failure(sourceLocation: sourceLocation) {
            try await self.client.finishAuthorization(code: redirect.code, codeVerifier: request.codeVerifier, expectedNonce: request.nonce)
        }
    }

    func failure<T>(sourceLocation: SourceLocation = #_sourceLocation, _ work: () async throws -> T) async -> OIDCError? {
        await Self.failure(sourceLocation: sourceLocation, work)
    }

    /// The error `work` throws; records an issue (and returns nil) when it succeeds instead.
    static func failure<T>(sourceLocation: SourceLocation = #_sourceLocation, _ work: () async throws -> T) async -> OIDCError? {
        do {
            let value = try await work()
            Issue.record("expected an OIDCError, but it succeeded with \(value)", sourceLocation: sourceLocation)
            return nil
        } catch let error as OIDCError {
            return error
        } catch {
            Issue.record("expected an OIDCError, got \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}
