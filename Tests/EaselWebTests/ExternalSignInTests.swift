import AsyncHTTPClient
import EaselApp
import EaselBlobs
import EaselCore
import EaselImages
import EaselStore
import EaselTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Testing

/// "Sign in with Google" through the site, against a real OpenID Connect issuer on loopback.
@Suite("Sign in with an OpenID Connect provider", .serialized)
struct ExternalSignInTests {
    static let publicURL = "https://easel.test"

    func withIssuer(_ settings: [String: String] = [:], _ body: @Sendable (OIDCIssuerPeer, AppServices, Browser) async throws -> Void) async throws {
        let issuer = try await OIDCIssuerPeer.start()
        do {
            #expect(issuer.redirectURI.absoluteString == Self.publicURL + "/auth/oidc/callback")
            try await withTestApp([
                "EASEL_PUBLIC_URL": Self.publicURL, "EASEL_OIDC_ISSUER": issuer.issuer.absoluteString,
                "EASEL_OIDC_CLIENT_ID": issuer.clientID, "EASEL_OIDC_CLIENT_SECRET": issuer.clientSecret,
            ].merging(settings) { _, given in given }) { services, client in
                let browser = Browser(client)
                browser.origin = Self.publicURL
                try await body(issuer, services, browser)
            }
        } catch {
            await issuer.stop()
            throw error
        }
        await issuer.stop()
    }

    /// Leaves for the issuer (which approves at once) and returns the callback path with its query.
    func roundTrip(_ browser: Browser) async throws -> String {
        let start = try await browser.get("/auth/oidc/start")
        #expect(start.status == .seeOther)
        let authorize = try #require(start.headers[.location])
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { _ = http.shutdown() }
        let answer = try await http.execute(HTTPClientRequest(url: authorize), timeout: .seconds(30))
        let back = try #require(answer.headers.first(name: "location"))
        #expect(back.hasPrefix(Self.publicURL + "/auth/oidc/callback?"))
        return String(back.dropFirst(Self.publicURL.count))
    }

    var csrf: (Browser) -> String { { $0.cookies["__Host-easel_csrf"] ?? "" } }

    @Test("A first sign-in asks for consent, then creates a confirmed account linked by issuer and subject")
    func firstSignInCreatesAccount() async throws {
        try await self.withIssuer { issuer, services, browser in
            try await browser.get("/signin")
            let page = String(buffer: try await browser.get("/signin").body)
            #expect(page.contains("Sign in with Google"))

            let callback = try await browser.get(try await self.roundTrip(browser))
            #expect(callback.status == .seeOther)
            #expect(callback.headers[.location] == "/auth/oidc/welcome")
            let welcome = try await browser.get("/auth/oidc/welcome")
            #expect(String(buffer: welcome.body).contains(OIDCIssuerPeer.testEmail))

            let noConsent = try await browser.post("/auth/oidc/create", [:], csrf: self.csrf(browser))
            #expect(noConsent.status == .unprocessableContent)
            #expect(try await services.database.user(email: OIDCIssuerPeer.testEmail) == nil)

            let created = try await browser.post("/auth/oidc/create", ["age": "on", "terms": "on"], csrf: self.csrf(browser))
            #expect(created.status == .seeOther)
            #expect(created.headers[.location] == "/account")
            #expect(browser.cookies["__Host-easel_session"] != nil)
            let user = try #require(try await services.database.user(email: OIDCIssuerPeer.testEmail))
            #expect(user.isVerified)
            #expect(user.passwordHash == nil)
            #expect(user.displayName == OIDCIssuerPeer.testName)
            #expect(user.language == "en", "the page's language, as for an email sign-up")
            #expect(user.theme == .system)
            #expect(try await services.database.user(issuer: issuer.issuer.absoluteString, subject: OIDCIssuerPeer.testSubject)?.id == user.id)

            // The only way into this account cannot be disconnected.
            let identity = try #require(try await services.database.identities(userID: user.id!).first)
            let sessionCSRF = try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
            let unlink = try await browser.post("/account/identities/\(identity.id!)/unlink", [:], csrf: sessionCSRF)
            #expect(unlink.status == .conflict)

            // Next time, the same provider account signs straight in.
            let later = Browser(browser.client)
            later.origin = Self.publicURL
            let again = try await later.get(try await self.roundTrip(later))
            #expect(again.headers[.location] == "/account")
            #expect(later.cookies["__Host-easel_session"] != nil)
        }
    }

    /// Goes through a first sign-in up to the new account; returns it.
    func createAccount(_ browser: Browser, _ services: AppServices) async throws -> User {
        let callback = try await browser.get(try await self.roundTrip(browser))
        #expect(callback.headers[.location] == "/auth/oidc/welcome")
        let created = try await browser.post("/auth/oidc/create", ["age": "on", "terms": "on"], csrf: self.csrf(browser))
        #expect(created.status == .seeOther)
        #expect(created.headers[.location] == "/account")
        #expect(browser.cookies["__Host-easel_session"] != nil, "signed in")
        return try #require(try await services.database.user(email: OIDCIssuerPeer.testEmail))
    }

    @Test("A first sign-in in Spanish (Accept-Language) keeps Spanish and the visitor's theme in the new profile")
    func firstSignInKeepsLanguageAndTheme() async throws {
        try await self.withIssuer { _, services, browser in
            let spanish: HTTPFields = [.acceptLanguage: "es-ES,es;q=0.9,en;q=0.5"]
            // The footer's theme choice, without a language: the browser's language decides.
            browser.cookies["easel_prefs"] = "theme=dark"
            let callback = try await browser.get(try await self.roundTrip(browser), headers: spanish)
            #expect(callback.headers[.location] == "/auth/oidc/welcome")
            let welcome = try await browser.get("/auth/oidc/welcome", headers: spanish)
            #expect(welcome.text.contains("<html lang=\"es\""))
            let created = try await browser.post("/auth/oidc/create", ["age": "on", "terms": "on"], csrf: self.csrf(browser), headers: spanish)
            #expect(created.status == .seeOther)
            #expect(created.headers[.location] == "/account")
            let user = try #require(try await services.database.user(email: OIDCIssuerPeer.testEmail))
            #expect(user.language == "es")
            #expect(user.theme == .dark)
            // From now on the profile decides, with no Accept-Language and no cookie.
            browser.cookies["easel_prefs"] = nil
            let account = try await browser.get("/account")
            #expect(account.text.contains("<html lang=\"es\" data-theme=\"dark\" data-locale=\"es-ES\">"))
            #expect(account.text.contains("<h1>Tu cuenta</h1>"))
        }
    }

    @Test("A first sign-in keeps the provider's picture, fetched from an allowed host, as a clean WebP avatar")
    func firstSignInKeepsPicture() async throws {
        try await self.withIssuer(["EASEL_FETCH_ALLOW_HOSTS": "127.0.0.1"]) { issuer, services, browser in
            try await issuer.setPicture(issuer.servedPictureURL)
            let user = try await self.createAccount(browser, services)
            let key = try #require(user.avatarKey)
            #expect(key.hasPrefix(AvatarService.keyPrefix(userID: user.id!)))
            #expect(try await issuer.requestCounts().picture == 1)
            let served = try await browser.get("/avatars/\(user.id!)")
            #expect(served.status == .ok)
            let bytes = Data(buffer: served.body)
            #expect(ImageLibrary.sniffFormat(bytes) == .webp)
            #expect(bytes.range(of: Data("secret-provider-metadata".utf8)) == nil)
        }
    }

    @Test(
        "A provider picture that cannot be had (refused loopback address, or 404) leaves the new account without an avatar",
        arguments: [("", "picture.png"), ("127.0.0.1", "no-such-picture.png")]
    )
    func pictureFailureDoesNotStopSignIn(allowHosts: String, path: String) async throws {
        try await self.withIssuer(["EASEL_FETCH_ALLOW_HOSTS": allowHosts]) { issuer, services, browser in
            try await issuer.setPicture(issuer.issuer.appending(path: path))
            let user = try await self.createAccount(browser, services)
            #expect(user.avatarKey == nil)
            #expect(try await services.blobs.list(prefix: AvatarService.keyPrefix(userID: user.id!)).isEmpty)
            // A refused address is never connected to; a missing picture is not the served one.
            #expect(try await issuer.requestCounts().picture == 0)
            #expect(try await browser.get("/account").status == .ok)
        }
    }

    @Test("A callback whose state does not match, or from another browser, is refused")
    func wrongStateIsRefused() async throws {
        try await self.withIssuer { _, services, browser in
            let callback = try await self.roundTrip(browser)
            let tampered = callback.replacingOccurrences(of: "state=", with: "state=x")
            let refused = try await browser.get(tampered)
            #expect(refused.status == .badRequest)
            #expect(String(buffer: refused.body).contains("does not match"))

            let stranger = Browser(browser.client)
            let elsewhere = try await stranger.get(try await self.roundTrip(browser))
            #expect(elsewhere.status == .badRequest)
            #expect(try await services.database.user(email: OIDCIssuerPeer.testEmail) == nil)
        }
    }

    @Test("An ID token that fails verification signs nobody in", arguments: [OIDCIssuerPeer.TokenFault.wrongAudience, .wrongIssuer, .expired, .wrongNonce, .unknownKeyID, .hs256])
    func badTokensAreRefused(_ fault: OIDCIssuerPeer.TokenFault) async throws {
        try await self.withIssuer { issuer, services, browser in
            try await issuer.misbehaveOnNextToken(fault)
            let response = try await browser.get(try await self.roundTrip(browser))
            #expect(response.status == .badRequest)
            #expect(String(buffer: response.body).contains("could not be verified"))
            #expect(browser.cookies["__Host-easel_session"] == nil)
            #expect(try await services.database.user(email: OIDCIssuerPeer.testEmail) == nil)
        }
    }

    @Test("An unverified email is not trusted, and an existing account is never linked by email alone")
    func emailRules() async throws {
        try await self.withIssuer { issuer, services, browser in
            try await issuer.misbehaveOnNextToken(.emailUnverified)
            let unverified = try await browser.get(try await self.roundTrip(browser))
            #expect(unverified.status == .forbidden)
            #expect(String(buffer: unverified.body).contains("did not confirm your email"))

            // A password account with the provider's address already exists.
            try await browser.get("/signup")
            try await browser.post("/signup", ["email": OIDCIssuerPeer.testEmail, "password": "correct horse battery", "age": "on", "terms": "on"], csrf: self.csrf(browser))
            let existing = try await browser.get(try await self.roundTrip(browser))
            #expect(existing.status == .forbidden)
            #expect(String(buffer: existing.body).contains("already exists"))
            let user = try #require(try await services.database.user(email: OIDCIssuerPeer.testEmail))
            #expect(try await services.database.identities(userID: user.id!).isEmpty)

            // Refusals are said in the page's language.
            let spanish: HTTPFields = [.acceptLanguage: "es"]
            let inSpanish = try await browser.get(try await self.roundTrip(browser), headers: spanish)
            #expect(inSpanish.status == .forbidden)
            #expect(inSpanish.text.contains("Ya existe una cuenta con \(OIDCIssuerPeer.testEmail)."))
            try await issuer.misbehaveOnNextToken(.emailUnverified)
            let unverifiedChinese = try await browser.get(try await self.roundTrip(browser), headers: [.acceptLanguage: "zh-CN"])
            #expect(unverifiedChinese.text.contains("身份提供方没有确认你的邮箱地址"))
            try await issuer.misbehaveOnNextToken(.expired)
            let badToken = try await browser.get(try await self.roundTrip(browser), headers: spanish)
            #expect(badToken.status == .badRequest)
            #expect(badToken.text.contains("No se pudo verificar la respuesta de tu proveedor"))
        }
    }

    @Test("A signed-in person links a provider account, and can unlink it while they have a password")
    func linkAndUnlink() async throws {
        try await self.withIssuer { issuer, services, browser in
            try await browser.get("/signup")
            try await browser.post("/signup", ["email": "grace@example.org", "password": "correct horse battery", "age": "on", "terms": "on"], csrf: self.csrf(browser))
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first)
            let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/verify?token=") })
            try await browser.get(String(link.dropFirst(Self.publicURL.count)))
            _ = try await browser.post("/signin", ["email": "grace@example.org", "password": "correct horse battery"], csrf: self.csrf(browser))
            let user = try #require(try await services.database.user(email: "grace@example.org"))

            let linked = try await browser.get(try await self.roundTrip(browser))
            #expect(linked.headers[.location] == "/account?notice=linked")
            let identity = try #require(try await services.database.identities(userID: user.id!).first)
            #expect(identity.subject == OIDCIssuerPeer.testSubject)

            let sessionCSRF = try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
            let unlink = try await browser.post("/account/identities/\(identity.id!)/unlink", [:], csrf: sessionCSRF)
            #expect(unlink.status == .seeOther)
            #expect(try await services.database.identities(userID: user.id!).isEmpty)
        }
    }
}
