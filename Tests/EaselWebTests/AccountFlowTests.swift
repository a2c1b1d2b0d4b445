import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Accounts: sign-up, verification, sign-in, sessions")
struct AccountFlowTests {
    /// The newest queued mail to `email`, after the mail job ran.
    func latestMail(_ services: AppServices, to email: String) async throws -> OutboxMail {
        try await services.mailer.sendDue()
        return try #require(try await services.database.recentMails().first { $0.toEmail == email })
    }

    func link(in mail: OutboxMail, path: String) throws -> String {
        let line = try #require(mail.textBody.split(separator: "\n").first { $0.contains(path + "?token=") })
        let url = try #require(line.split(separator: " ").last.map(String.init))
        #expect(url.hasPrefix("http://localhost:8080" + path + "?token="), "links use the public URL")
        return String(url.dropFirst("http://localhost:8080".count))
    }

    @discardableResult
    func signUp(_ browser: Browser, email: String, password: String = "correct horse battery") async throws -> TestResponse {
        try await browser.get("/signup")
        return try await browser.post("/signup", ["email": email, "password": password, "name": "Ada", "age": "on", "terms": "on"])
    }

    @Test("Sign up, confirm by link, sign in, see the account, sign out")
    func happyPath() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            let signUp = try await self.signUp(browser, email: "ada@example.org")
            #expect(signUp.status == .seeOther)
            #expect(signUp.headers[.location]?.hasPrefix("/verify/code?email=ada") == true)

            // Not verified yet: sign-in is refused with a pointer to the mail.
            let early = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            #expect(early.status == .forbidden)
            #expect(String(buffer: early.body).contains("Confirm your email"))

            let mail = try await self.latestMail(services, to: "ada@example.org")
            #expect(mail.kind == "verify_email")
            #expect(mail.status == .sent)
            #expect(mail.transport == "log")
            let verify = try await browser.get(try self.link(in: mail, path: "/verify"))
            #expect(verify.status == .seeOther)
            #expect(verify.headers[.location] == "/signin?notice=verified")

            let signIn = try await browser.post("/signin", ["email": "ADA@example.org", "password": "correct horse battery"])
            #expect(signIn.status == .seeOther)
            #expect(signIn.headers[.location] == "/account")
            let setCookie = try #require(signIn.headers[values: .setCookie].first { $0.hasPrefix("easel_session=") })
            for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
                #expect(setCookie.contains(attribute), "session cookie lacks \(attribute)")
            }
            #expect(!setCookie.contains("Secure"), "over plain http the Secure attribute cannot work")

            let account = try await browser.get("/account")
            #expect(account.status == .ok)
            let page = String(buffer: account.body)
            #expect(page.contains("ada@example.org"))
            #expect(page.contains("Administrator"), "the first account is the admin")
            #expect(try await browser.get("/admin/mailbox").status == .ok)

            let userID = try #require(try await services.database.user(email: "ada@example.org")?.id)
            let sessionCSRF = try #require(try await services.database.sessions(userID: userID).first?.csrfToken)
            let signOut = try await browser.post("/signout", [:], csrf: sessionCSRF)
            #expect(signOut.status == .seeOther)
            #expect(browser.cookies["easel_session"] == nil)
            let after = try await browser.get("/account")
            #expect(after.status == .seeOther)
            #expect(after.headers[.location]?.hasPrefix("/signin") == true)
        }
    }

    @Test("The 6-digit code confirms too; wrong codes run out after five tries")
    func verifyByCode() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signUp(browser, email: "grace@example.org")
            let mail = try await self.latestMail(services, to: "grace@example.org")
            let code = try #require(mail.textBody.firstMatch(of: /code is (\d{6})/)?.1).description
            let wrong = code == "000000" ? "111111" : "000000"
            let failed = try await browser.post("/verify/code", ["email": "grace@example.org", "code": wrong])
            #expect(failed.status == .unprocessableContent)
            let ok = try await browser.post("/verify/code", ["email": "grace@example.org", "code": code])
            #expect(ok.status == .seeOther)
            #expect(try await services.database.user(email: "grace@example.org")?.isVerified == true)

            try await self.signUp(browser, email: "linus@example.org")
            let second = try await self.latestMail(services, to: "linus@example.org")
            let secondCode = try #require(second.textBody.firstMatch(of: /code is (\d{6})/)?.1).description
            for _ in 0..<5 {
                _ = try await browser.post("/verify/code", ["email": "linus@example.org", "code": secondCode == "000000" ? "111111" : "000000"])
            }
            let tooLate = try await browser.post("/verify/code", ["email": "linus@example.org", "code": secondCode])
            #expect(tooLate.status == .unprocessableContent)
            #expect(try await services.database.user(email: "linus@example.org")?.isVerified == false)
        }
    }

    @Test("Signing up with a taken address answers the same and mails the owner instead")
    func takenAddress() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            let first = try await self.signUp(browser, email: "ada@example.org")
            let second = try await self.signUp(browser, email: "ada@example.org", password: "another long password")
            #expect(first.status == second.status)
            #expect(first.headers[.location] == second.headers[.location])
            let mail = try await self.latestMail(services, to: "ada@example.org")
            #expect(mail.kind == "already_registered")
        }
    }

    @Test("Bad sign-up input is refused with a message that says what to fix", arguments: [
        (["email": "not-an-email", "password": "correct horse battery", "age": "on", "terms": "on"], "Enter an email address"),
        (["email": "a@example.org", "password": "short", "age": "on", "terms": "on"], "at least 8 characters"),
        (["email": "a@example.org", "password": "password123", "age": "on", "terms": "on"], "most common"),
        (["email": "a@example.org", "password": String(repeating: "é", count: 40), "age": "on", "terms": "on"], "too long"),
        (["email": "a@example.org", "password": "correct horse battery", "terms": "on"], "at least 13 years old"),
        (["email": "a@example.org", "password": "correct horse battery", "age": "on"], "accept the terms"),
    ])
    func badSignUp(_ fields: [String: String], message: String) async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await browser.get("/signup")
            let response = try await browser.post("/signup", fields)
            #expect(response.status == .unprocessableContent)
            #expect(String(buffer: response.body).contains(message))
            #expect(try await services.database.recentMails().isEmpty)
        }
    }

    @Test("A wrong password and an unknown address get the same answer; repeated failures are throttled with Retry-After")
    func wrongPasswordAndThrottling() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signUp(browser, email: "ada@example.org")
            let wrong = try await browser.post("/signin", ["email": "ada@example.org", "password": "not the password"])
            let unknown = try await browser.post("/signin", ["email": "nobody@example.org", "password": "not the password"])
            #expect(wrong.status == .unauthorized)
            #expect(unknown.status == .unauthorized)
            #expect(String(buffer: wrong.body).contains("Invalid email or password."))
            #expect(String(buffer: unknown.body).contains("Invalid email or password."))
            for _ in 0..<4 {
                _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "not the password"])
            }
            let throttled = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            #expect(throttled.status == .tooManyRequests)
            let retryAfter = try #require(throttled.headers[.retryAfter].flatMap(Int.init))
            #expect(retryAfter >= 1)
        }
    }

    @Test("State-changing requests need the CSRF token and a same-site Origin")
    func csrfIsRequired() async throws {
        try await withTestApp { _, client in
            let browser = Browser(client)
            try await browser.get("/signin")
            let missing = try await browser.post("/signin", ["email": "a@example.org", "password": "x", "_csrf": ""])
            #expect(missing.status == .forbidden)
            let wrong = try await browser.post("/signin", ["email": "a@example.org", "password": "x"], csrf: "forged-token-value-forged-token-value")
            #expect(wrong.status == .forbidden)
            browser.origin = "https://evil.example"
            let foreign = try await browser.post("/signin", ["email": "a@example.org", "password": "x"])
            #expect(foreign.status == .forbidden)
            #expect(String(buffer: foreign.body).contains("another site"))
        }
    }

    @Test("A password reset link works once, within the hour, and signs out every session")
    func passwordReset() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signUp(browser, email: "ada@example.org")
            try await browser.get(try self.link(in: try await self.latestMail(services, to: "ada@example.org"), path: "/verify"))
            _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            #expect(try await browser.get("/account").status == .ok)

            let other = Browser(client)
            try await other.get("/forgot-password")
            let asked = try await other.post("/forgot-password", ["email": "ada@example.org"])
            let unknown = try await other.post("/forgot-password", ["email": "nobody@example.org"])
            #expect(asked.status == unknown.status)
            let resetMail = try await self.latestMail(services, to: "ada@example.org")
            #expect(resetMail.kind == "reset_password")
            let link = try self.link(in: resetMail, path: "/reset-password")
            let token = String(link.split(separator: "=").last!)

            let done = try await other.post("/reset-password", ["token": token, "password": "a brand new passphrase"])
            #expect(done.status == .seeOther)
            #expect(try await browser.get("/account").status == .seeOther, "the old session was signed out")
            let again = try await other.post("/reset-password", ["token": token, "password": "yet another passphrase"])
            #expect(again.status == .badRequest, "single use")
            let signIn = try await other.post("/signin", ["email": "ada@example.org", "password": "a brand new passphrase"])
            #expect(signIn.status == .seeOther)
            #expect(try await self.latestMail(services, to: "ada@example.org").kind == "password_changed")
        }
    }

    @Test("Behind https the session cookie uses the __Host- prefix and Secure")
    func secureCookies() async throws {
        try await withTestApp(["EASEL_PUBLIC_URL": "https://img.example.org"]) { services, client in
            let browser = Browser(client)
            browser.origin = "https://img.example.org"
            try await browser.get("/signup")
            #expect(browser.cookies["__Host-easel_csrf"] != nil)
            let fields = ["email": "ada@example.org", "password": "correct horse battery", "age": "on", "terms": "on"]
            _ = try await browser.post("/signup", fields, csrf: browser.cookies["__Host-easel_csrf"])
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first)
            let url = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.hasPrefix("https://img.example.org/verify?token=") })
            try await browser.get(String(url.dropFirst("https://img.example.org".count)))
            let signIn = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], csrf: browser.cookies["__Host-easel_csrf"])
            let cookie = try #require(signIn.headers[values: .setCookie].first { $0.hasPrefix("__Host-easel_session=") })
            #expect(cookie.contains("Secure"))
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("Path=/"))
            #expect(!cookie.lowercased().contains("domain="))
        }
    }

    @Test("The dev mailbox is open until an admin has confirmed their address; then admins only")
    func mailboxAccess() async throws {
        try await withTestApp { services, client in
            let admin = Browser(client)
            try await self.signUp(admin, email: "ada@example.org")
            let stranger = Browser(client)
            #expect(try await stranger.get("/admin/mailbox").status == .ok, "the first person reads their own confirmation mail")
            try await admin.get(try self.link(in: try await self.latestMail(services, to: "ada@example.org"), path: "/verify"))
            let closed = try await stranger.get("/admin/mailbox")
            #expect(closed.status == .seeOther)
            #expect(closed.headers[.location]?.hasPrefix("/signin") == true)

            let member = Browser(client)
            try await self.signUp(member, email: "bob@example.org")
            try await member.get(try self.link(in: try await self.latestMail(services, to: "bob@example.org"), path: "/verify"))
            _ = try await member.post("/signin", ["email": "bob@example.org", "password": "correct horse battery"])
            #expect(try await services.database.user(email: "bob@example.org")?.role == .member)
            #expect(try await member.get("/admin/mailbox").status == .forbidden)

            _ = try await admin.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            let mailbox = try await admin.get("/admin/mailbox")
            #expect(mailbox.status == .ok)
            #expect(String(buffer: mailbox.body).contains("bob@example.org"))
        }
    }

    @Test("A sign-in from a device not seen before on the account is mailed to its owner; the first one is not")
    func newDeviceMail() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signUp(browser, email: "ada@example.org")
            try await browser.get(try self.link(in: try await self.latestMail(services, to: "ada@example.org"), path: "/verify"))
            let firefox: HTTPFields = [.userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"]
            _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], headers: firefox)
            _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], headers: firefox)
            try await services.mailer.sendDue()
            #expect(try await services.database.recentMails().contains { $0.kind == "new_device" } == false)

            let phone = Browser(client)
            try await phone.get("/signin")
            let iphone: HTTPFields = [.userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Version/18.0 Mobile/15E148 Safari/604.1"]
            _ = try await phone.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], headers: iphone)
            let mail = try await self.latestMail(services, to: "ada@example.org")
            #expect(mail.kind == "new_device")
            #expect(mail.textBody.contains("Safari on iOS"))
        }
    }
}
