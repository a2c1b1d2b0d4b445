import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Invitations")
struct InvitationTests {
    @Test("In invite mode, only an admin's invitation opens sign-up: for its address, once")
    func inviteOnly() async throws {
        try await withTestApp(["EASEL_SIGNUP": "invite"]) { services, client in
            // The first admin comes from the command line in invite mode.
            _ = try await services.accounts.createAdmin(email: "ada@example.org", password: "correct horse battery")
            let admin = Browser(client)
            try await admin.get("/signin")
            _ = try await admin.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"])
            let adminUser = try #require(try await services.database.user(email: "ada@example.org"))
            let csrf = try #require(try await services.database.sessions(userID: adminUser.id!).first?.csrfToken)

            let stranger = Browser(client)
            try await stranger.get("/signup")
            let refused = try await stranger.post("/signup", ["email": "eve@example.org", "password": "correct horse battery", "age": "on", "terms": "on"])
            #expect(refused.status == .unprocessableContent)
            #expect(String(buffer: refused.body).contains("invitation-only"))

            let sent = try await admin.post("/admin/invitations", ["email": "Bob@Example.org", "role": "member"], csrf: csrf)
            #expect(sent.status == .seeOther)
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first { $0.kind == "invitation" })
            #expect(mail.toEmail == "bob@example.org")
            let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/signup?invite=") })
            let path = String(link.dropFirst("http://localhost:8080".count))
            let token = String(path.split(separator: "=").last!)

            let bob = Browser(client)
            let form = try await bob.get(path)
            #expect(String(buffer: form.body).contains("value=\"bob@example.org\""))
            // For another address, the invitation does not work.
            let wrongAddress = try await bob.post("/signup", ["email": "mallory@example.org", "password": "correct horse battery", "age": "on", "terms": "on", "invite": token])
            #expect(wrongAddress.status == .unprocessableContent)
            let created = try await bob.post("/signup", ["email": "bob@example.org", "password": "correct horse battery", "age": "on", "terms": "on", "invite": token])
            #expect(created.status == .seeOther)
            let bobUser = try #require(try await services.database.user(email: "bob@example.org"))
            #expect(bobUser.isVerified, "the invitation was mailed to this address")
            #expect(bobUser.role == .member)
            let signIn = try await bob.post("/signin", ["email": "bob@example.org", "password": "correct horse battery"])
            #expect(signIn.headers[.location] == "/account")

            let again = Browser(client)
            try await again.get("/signup")
            let reused = try await again.post("/signup", ["email": "bob@example.org", "password": "another long passphrase", "age": "on", "terms": "on", "invite": token])
            #expect(reused.status == .unprocessableContent)
            #expect(try await services.database.pendingInvitations().isEmpty)
        }
    }
}
