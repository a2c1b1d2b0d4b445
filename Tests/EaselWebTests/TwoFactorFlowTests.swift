import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdOTP
import HummingbirdTesting
import Testing

@Suite("Two-factor sign-in through the site")
struct TwoFactorFlowTests {
    @Test("Turn on TOTP, sign out, sign in again: the used code is refused, a recovery code works once")
    func twoFactorFlow() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await browser.get("/signup")
            try await browser.post("/signup", ["email": "ada@example.org", "password": "correct horse battery", "age": "on", "terms": "on"])
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first)
            let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/verify?token=") })
            try await browser.get(String(link.dropFirst("http://localhost:8080".count)))
            _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            let userID = try #require(try await services.database.user(email: "ada@example.org")?.id)
            var csrf: String { get async throws { try await services.database.sessions(userID: userID).first?.csrfToken ?? "" } }

            let setup = try await browser.post("/account/2fa/setup", [:], csrf: try await csrf)
            #expect(setup.status == .ok)
            #expect(String(buffer: setup.body).contains("otpauth://totp/"))
            let sealed = try #require(try await services.database.user(id: userID)?.totpSecret)
            #expect(sealed.hasPrefix("enc1:"), "the TOTP secret is stored sealed under the person's data key")
            let secret = try #require(try await services.dataKeys.open(secret: sealed, owner: userID))
            let code = String(format: "%06d", TOTP(secret: secret).compute())
            let enabled = try await browser.post("/account/2fa/enable", ["code": code], csrf: try await csrf)
            #expect(enabled.status == .ok)
            let page = String(buffer: enabled.body)
            let recovery = page.matches(of: /<code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})<\/code>/).map { String($0.1) }
            #expect(recovery.count == 10)

            _ = try await browser.post("/signout", [:], csrf: try await csrf)
            try await browser.get("/signin")
            let password = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            #expect(password.status == .seeOther)
            #expect(password.headers[.location] == "/signin/2fa")
            #expect(browser.cookies["easel_session"] == nil, "no session before the second step")

            let reused = try await browser.post("/signin/2fa", ["code": code])
            #expect(reused.status == .unauthorized)
            let ok = try await browser.post("/signin/2fa", ["code": recovery[0]])
            #expect(ok.status == .seeOther)
            #expect(ok.headers[.location] == "/account")
            #expect(browser.cookies["easel_session"] != nil)
            #expect(try await browser.get("/account").status == .ok)

            // The same recovery code cannot start another sign-in.
            let again = Browser(client)
            try await again.get("/signin")
            _ = try await again.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            #expect(try await again.post("/signin/2fa", ["code": recovery[0]]).status == .unauthorized)
            // Without the password step, the code page sends people back to sign in.
            let stranger = Browser(client)
            try await stranger.get("/signin")
            #expect(try await stranger.post("/signin/2fa", ["code": recovery[1]]).headers[.location] == "/signin")
        }
    }
}
