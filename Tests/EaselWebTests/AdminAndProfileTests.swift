import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Admin users, profile and password")
struct AdminAndProfileTests {
    /// Signs up, confirms and signs in; returns the browser and the user.
    func signedIn(_ services: AppServices, _ client: any TestClientProtocol, email: String, password: String = "correct horse battery") async throws -> (Browser, User) {
        let browser = Browser(client)
        try await browser.get("/signup")
        try await browser.post("/signup", ["email": email, "password": password, "age": "on", "terms": "on"])
        try await services.mailer.sendDue()
        let mail = try #require(try await services.database.recentMails().first { $0.toEmail == email && $0.kind == "verify_email" })
        let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/verify?token=") })
        try await browser.get(String(link.dropFirst("http://localhost:8080".count)))
        let signIn = try await browser.post("/signin", ["email": email, "password": password])
        #expect(signIn.headers[.location] == "/account")
        return (browser, try #require(try await services.database.user(email: email)))
    }

    func csrf(_ services: AppServices, _ user: User) async throws -> String {
        try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
    }

    @Test("Admins search, suspend and restore, change roles; never on themselves; members cannot")
    func adminUsers() async throws {
        try await withTestApp { services, client in
            let (admin, adminUser) = try await self.signedIn(services, client, email: "ada@example.org")
            let (member, memberUser) = try await self.signedIn(services, client, email: "bob@example.org")
            let adminCSRF = try await self.csrf(services, adminUser)

            let search = String(buffer: try await admin.get("/admin/users?q=bob").body)
            #expect(search.contains("href=\"/admin/users/\(memberUser.id!)\""))
            #expect(!search.contains("href=\"/admin/users/\(adminUser.id!)\""))
            #expect(try await member.get("/admin/users").status == .forbidden)

            let suspend = try await admin.post("/admin/users/\(memberUser.id!)/status", ["value": "suspended"], csrf: adminCSRF)
            #expect(suspend.status == .seeOther)
            #expect(try await member.get("/account").status == .seeOther, "a suspended account is signed out")
            let refused = try await member.post("/signin", ["email": "bob@example.org", "password": "correct horse battery"])
            #expect(refused.status == .forbidden)
            #expect(String(buffer: refused.body).contains("suspended"))

            _ = try await admin.post("/admin/users/\(memberUser.id!)/status", ["value": "active"], csrf: adminCSRF)
            _ = try await admin.post("/admin/users/\(memberUser.id!)/role", ["value": "admin"], csrf: adminCSRF)
            #expect(try await services.database.user(id: memberUser.id!)?.role == .admin)

            let selfDemote = try await admin.post("/admin/users/\(adminUser.id!)/role", ["value": "member"], csrf: adminCSRF)
            #expect(selfDemote.status == .conflict)
            #expect(try await services.database.user(id: adminUser.id!)?.role == .admin)

            _ = try await admin.post("/admin/users/\(memberUser.id!)/send-reset", [:], csrf: adminCSRF)
            try await services.mailer.sendDue()
            #expect(try await services.database.recentMails().first?.kind == "reset_password")
        }
    }

    @Test("Profile changes are saved, and the chosen theme applies to every page")
    func profile() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.signedIn(services, client, email: "ada@example.org")
            let token = try await self.csrf(services, user)
            let saved = try await browser.post("/account/profile", ["name": "Ada L.", "language": "es", "theme": "dark"], csrf: token)
            #expect(saved.status == .seeOther)
            let updated = try #require(try await services.database.user(id: user.id!))
            #expect(updated.displayName == "Ada L.")
            #expect(updated.language == "es")
            #expect(updated.theme == .dark)
            #expect(String(buffer: try await browser.get("/account").body).contains("data-theme=\"dark\""))
            let bad = try await browser.post("/account/profile", ["name": "x", "language": "klingon", "theme": "dark"], csrf: token)
            #expect(bad.status == .unprocessableContent)
        }
    }

    @Test("Changing the password asks for the old one, can sign out other devices, and mails a notice")
    func changePassword() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.signedIn(services, client, email: "ada@example.org")
            let other = Browser(client)
            try await other.get("/signin")
            _ = try await other.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            // The first browser's session is the older one.
            let sessions = try await services.database.sessions(userID: user.id!)
            let mine = try #require(sessions.min { $0.createdAt < $1.createdAt || ($0.createdAt == $1.createdAt && $0.id! < $1.id!) })

            let wrong = try await browser.post("/account/password", ["current": "nope nope nope", "new": "a brand new passphrase", "signOutOthers": "on"], csrf: mine.csrfToken)
            #expect(wrong.status == .unauthorized)
            let ok = try await browser.post("/account/password", ["current": "correct horse battery", "new": "a brand new passphrase", "signOutOthers": "on"], csrf: mine.csrfToken)
            #expect(ok.status == .seeOther)
            #expect(try await browser.get("/account").status == .ok, "this session stays")
            #expect(try await other.get("/account").status == .seeOther, "the other device is signed out")
            try await services.mailer.sendDue()
            #expect(try await services.database.recentMails().first?.kind == "password_changed")
        }
    }
}

@Suite("Changing the email address")
struct EmailChangeTests {
    @Test("The new address must be confirmed by its link; the old one gets a notice")
    func changeEmail() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await AdminAndProfileTests().signedIn(services, client, email: "ada@example.org")
            let token = try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
            let wrong = try await browser.post("/account/email", ["email": "ada@new.example.org", "password": "nope nope nope"], csrf: token)
            #expect(wrong.status == .unauthorized)
            let asked = try await browser.post("/account/email", ["email": "Ada@New.example.org", "password": "correct horse battery"], csrf: token)
            #expect(asked.status == .ok)
            #expect(try await services.database.user(id: user.id!)?.email == "ada@example.org", "nothing changes before confirmation")
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first { $0.toEmail == "ada@new.example.org" })
            let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/account/email/confirm?token=") })
            let path = String(link.dropFirst("http://localhost:8080".count))
            let confirmed = try await Browser(client).get(path)
            #expect(confirmed.status == .ok)
            #expect(try await services.database.user(id: user.id!)?.email == "ada@new.example.org")
            try await services.mailer.sendDue()
            #expect(try await services.database.recentMails().first?.toEmail == "ada@example.org")
            #expect(try await services.database.recentMails().first?.kind == "email_changed")
            #expect(try await Browser(client).get(path).status == .badRequest, "single use")
        }
    }
}
