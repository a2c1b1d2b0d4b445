import AsyncHTTPClient
import EaselApp
import EaselBlobs
import EaselCore
import EaselIntegrations
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Settings → Privacy: access download, deletion with its grace period and the purge,
/// restriction, marketing consent with one-click unsubscribe, under-age purges, and the
/// data-request log. The purge is checked by scanning every table and the whole blob store.
@Suite("Privacy rights and the account purge", .serialized)
struct PrivacyRightsTests {
    static let settings = ["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "0", "EASEL_SIGNUP_CREDITS": "100"]
    static let password = "correct horse battery"

    // MARK: Helpers

    /// A confirmed account signed in through the sign-in form.
    static func signedIn(_ services: AppServices, _ client: any TestClientProtocol, email: String) async throws -> (Browser, User) {
        try await services.accounts.signUp(.init(email: email, password: Self.password, displayName: "Person \(email.prefix(3))", ageConfirmed: true, termsAccepted: true))
        let mail = try #require(try await services.database.recentMails().first { $0.toEmail == email && $0.kind == "verify_email" })
        let code = try #require(mail.textBody.firstMatch(of: /code is (\d{6})/)?.1).description
        let user = try #require(try await services.accounts.verify(email: email, code: code))
        let browser = Browser(client)
        try await browser.get("/signin")
        let response = try await browser.post("/signin", ["email": email, "password": Self.password])
        #expect(response.status == .seeOther)
        return (browser, user)
    }

    static func csrf(_ services: AppServices, _ user: User) async throws -> String {
        try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
    }

    /// One finished image made from one reference upload.
    static func makeImage(_ services: AppServices, _ user: User, prompt: String) async throws -> GenerationTask {
        let viewer = Viewer(userID: user.id!, isAdmin: false)
        let upload = try await services.generation.upload(try AvatarFixtures.png(), viewer: viewer)
        let outcome = try await services.generation.submit(GenerationRequest(prompt: prompt, referenceUploadIDs: [upload.id!]), viewer: viewer, clientIP: nil)
        for _ in 0..<400 {
            if let task = try await services.database.generationTask(id: outcome.task.id!), task.status.isFinished { return task }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("task did not finish within 10 seconds")
        return try #require(try await services.database.generationTask(id: outcome.task.id!))
    }

    /// Everything a person can leave behind: images and uploads, an avatar, an API key, a linked
    /// identity, a payment with its customer and subscription, a failed sign-in, an invitation
    /// to their address, and the mails of all that.
    static func fillAccount(_ services: AppServices, _ user: User) async throws {
        let task = try await Self.makeImage(services, user, prompt: "a lighthouse for \(user.email)")
        #expect(task.status == .succeeded)
        _ = try await services.avatars.replace(userID: user.id!, with: try AvatarFixtures.png(width: 64, height: 64))
        _ = try await services.apiKeys.create(for: user, name: "laptop", scopes: [.generate, .read], expiresAt: nil)
        try await services.database.linkIdentity(userID: user.id!, issuer: "https://accounts.example.org", subject: "sub-\(user.id!)", email: user.email)
        try await services.database.recordLoginFailure(email: user.email, ip: "192.0.2.7")
        try await services.database.writer.write { db in
            let now = Date()
            try db.execute(
                sql: """
                    INSERT INTO billing_customer (stripe_customer_id, user_id, created_at) VALUES (?, ?, ?);
                    INSERT INTO subscription (stripe_subscription_id, user_id, status, created_at, updated_at) VALUES (?, ?, 'canceled', ?, ?);
                    INSERT INTO payment (user_id, kind, product_id, checkout_session_id, amount, currency, status, card_last4, billing_country, credits, created_at, paid_at, updated_at)
                      VALUES (?, 'pack', 'pack-500', ?, 2000, 'eur', 'paid', '4242', 'DE', 500, ?, ?, ?);
                    """,
                arguments: ["cus_\(user.id!)", user.id!, now, "sub_\(user.id!)", user.id!, now, now, user.id!, "cs_\(user.id!)", now, now, now]
            )
        }
    }

    /// Every row of every table that refers to the person: columns with a foreign key to
    /// `user` holding their id, columns named user_id, text columns holding their address or
    /// a blob key of theirs ("u<id>/").
    static func rowsReferring(to userID: Int64, email: String, in database: AppDatabase) async throws -> [String] {
        try await database.writer.read { db in
            var found: [String] = []
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'")
            #expect(tables.contains("user") && tables.contains("image") && tables.contains("payment"))
            for table in tables {
                let quoted = table.quotedDatabaseIdentifier
                var idColumns = Set(try Row.fetchAll(db, sql: "PRAGMA foreign_key_list(\(quoted))").filter { $0["table"] == "user" }.map { $0["from"] as String })
                let columns = try db.columns(in: table)
                if columns.contains(where: { $0.name == "user_id" }) { idColumns.insert("user_id") }
                if table == "user" { idColumns.insert("id") }
                for column in idColumns {
                    let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(quoted) WHERE \(column.quotedDatabaseIdentifier) = ?", arguments: [userID]) ?? 0
                    if count > 0 { found.append("\(table).\(column) = \(userID) (\(count))") }
                }
                for column in columns {
                    let name = column.name.quotedDatabaseIdentifier
                    // Blob keys by their full prefixes: a bare "u<id>/" also turns up by chance
                    // inside other people's bcrypt hashes, whose alphabet has letters, digits and "/".
                    let count = try Int.fetchOne(
                        db,
                        sql: """
                            SELECT COUNT(*) FROM \(quoted) WHERE typeof(\(name)) = 'text' AND (instr(lower(\(name)), ?) > 0
                                OR instr(\(name), ?) > 0 OR instr(\(name), ?) > 0 OR instr(\(name), ?) > 0 OR instr(\(name), ?) > 0)
                            """,
                        arguments: [email.lowercased(), "images/u\(userID)/", "uploads/u\(userID)/", "avatars/u\(userID)/", "exports/u\(userID)/"]
                    ) ?? 0
                    if count > 0 { found.append("\(table).\(column.name) mentions the person (\(count))") }
                }
            }
            return found
        }
    }

    static func blobsOf(_ userID: Int64, in blobs: any BlobStore) async throws -> [String] {
        try await blobs.list(prefix: "").map(\.key.rawValue).filter { $0.contains("u\(userID)/") }
    }

    /// Deletion through the form, the purge 31 days later, the goodbye mail sent and removed:
    /// nothing of the person is left but their pseudonymised payment, while another person's
    /// account is untouched.
    static func deleteAndPurge(_ services: AppServices, _ client: any TestClientProtocol) async throws {
        // The first account is the admin, and the only admin may not leave.
        _ = try await Self.signedIn(services, client, email: "admin@example.org")
        let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
        let (_, other) = try await Self.signedIn(services, client, email: "bob@example.org")
        try await Self.fillAccount(services, user)
        try await Self.fillAccount(services, other)
        _ = try await services.database.createInvitation(
            email: user.email, tokenHash: Data(SecureToken.hash("invite-ada")), role: .member, invitedBy: other.id!,
            expiresAt: Date().addingTimeInterval(86400),
            mail: MailDraft(kind: "invitation", toEmail: user.email, toName: nil, subject: "Join", text: "Join us", html: nil, messageID: "<inv-ada@example.org>")
        )
        #expect(try await Self.blobsOf(user.id!, in: services.blobs).count >= 4, "image, thumbnail, upload and avatar are stored")
        // Copies taken before the deletion, as a backup or an old bucket version would keep them.
        let sealedStore = try #require(services.blobs as? EncryptedBlobStore)
        var copies: [(BlobKey, Data, Data)] = []
        for name in try await Self.blobsOf(user.id!, in: services.blobs) {
            let key = try BlobKey(name)
            let raw = try await sealedStore.inner.getData(key)
            #expect(raw.prefix(8) == Data("EASELENC".utf8), "\(name) is encrypted at rest")
            copies.append((key, raw, try await services.blobs.getData(key)))
        }
        #expect(copies.allSatisfy { $0.1 != $0.2 })

        let token = try await Self.csrf(services, user)
        let refused = try await browser.post("/account/privacy/delete", ["email": user.email, "password": "wrong password!"], csrf: token)
        #expect(refused.status == .unauthorized)
        let deleted = try await browser.post("/account/privacy/delete", ["email": user.email, "password": Self.password], csrf: token)
        #expect(deleted.status == .ok)
        #expect(deleted.text.contains("signed out everywhere"))
        #expect(try await services.database.sessions(userID: user.id!).isEmpty)
        #expect(try await services.apiKeys.keys(for: user).allSatisfy { $0.revokedAt != nil })
        #expect(try await services.database.recentMails().contains { $0.toEmail == user.email && $0.kind == AccountMails.deletionRequestedKind })
        await #expect(throws: GenerationError.self) {
            _ = try await services.generation.submit(GenerationRequest(prompt: "more"), viewer: Viewer(userID: user.id!, isAdmin: false), clientIP: nil)
        }

        // Within the grace period nothing goes.
        #expect(try await services.privacy.purgeDue(now: Date().addingTimeInterval(29 * 86400)) == 0)
        #expect(try await services.database.user(id: user.id!) != nil)

        // The hourly job takes accounts due before its next run: never later than 30 days.
        #expect(try await services.privacy.purgeDue(now: Date().addingTimeInterval(30 * 86400 - 7200), ahead: 3600) == 0)
        let later = Date().addingTimeInterval(30 * 86400 - 1800)
        #expect(try await services.privacy.purgeDue(now: later, ahead: 3600) == 1)
        let goodbye = try #require(try await services.database.recentMails().first { $0.kind == AccountMails.purgedKind })
        #expect(goodbye.toEmail == user.email, "the goodbye mail is queued before the row goes")
        // The purge ran at `later`, so its mail is due then.
        try await services.mailer.sendDue(now: later)
        try await services.privacy.removeSentPurgeMails(now: later)
        #expect(try await services.database.recentMails().contains { $0.kind == AccountMails.purgedKind } == false, "sent, then removed")

        let leftovers = try await Self.rowsReferring(to: user.id!, email: user.email, in: services.database)
        #expect(leftovers == [])
        let blobs = try await Self.blobsOf(user.id!, in: services.blobs)
        #expect(blobs == [])
        // Crypto-shredding: the copies, put back into storage, no longer open, even after a restart.
        let restarted = EncryptedBlobStore(
            inner: sealedStore.inner, keyring: DataKeys(database: services.database, masterKeys: try MasterKeyFile.load(at: services.config.masterKeyPath)),
            urlSigner: services.blobURLSigner, personalFolders: Set(PrivacyService.personalFolders)
        )
        for (key, raw, _) in copies {
            try await sealedStore.inner.put(key, data: raw)
            await #expect(throws: BlobError.self, "\(key) cannot be decrypted after the purge") { _ = try await services.blobs.getData(key) }
            await #expect(throws: BlobError.self) { _ = try await restarted.getData(key) }
            try await sealedStore.inner.delete(key)
        }
        let payments = try await services.database.writer.read { db in try Row.fetchAll(db, sql: "SELECT user_id, pseudonym FROM payment WHERE checkout_session_id = ?", arguments: ["cs_\(user.id!)"]) }
        #expect(payments.count == 1, "the payment record is kept")
        let pseudonym: String? = payments.first?["pseudonym"]
        #expect(pseudonym?.hasPrefix("deleted-") == true)
        let log = try await services.database.dataRequests()
        #expect(log.contains { $0.request.kind == .purged && $0.request.pseudonym == pseudonym && $0.email == nil })
        #expect(log.contains { $0.request.kind == .deletionRequested && $0.request.pseudonym == pseudonym }, "the log keeps the request under the pseudonym")

        // The other person keeps everything.
        #expect(try await services.database.images(userID: other.id!).count == 1)
        #expect(try await Self.blobsOf(other.id!, in: services.blobs).count >= 4)
        #expect(try await Self.rowsReferring(to: other.id!, email: other.email, in: services.database).isEmpty == false)
        // Running the purge again changes nothing.
        #expect(try await services.privacy.purgeDue(now: later) == 0)
    }

    // MARK: Access

    @Test("Download my data: one JSON file, an attachment, with every section, no secrets and nobody else's data; logged")
    func accessDownload() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            _ = try await Self.signedIn(services, client, email: "bob@example.org")
            try await Self.fillAccount(services, user)
            let key = try await services.apiKeys.create(for: user, name: "ci", scopes: [.read], expiresAt: nil)
            try await services.database.writer.write { db in
                try db.execute(sql: "UPDATE user SET totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' WHERE id = ?", arguments: [user.id!])
            }

            let response = try await browser.get("/account/privacy/download")
            #expect(response.status == .ok)
            #expect(response.headers[.contentDisposition]?.hasPrefix("attachment;") == true)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any])
            for section in [
                "account", "consents", "identities", "sessions", "api_keys", "tasks", "images", "reference_uploads", "credit_ledger", "payments",
                "subscriptions", "mails", "data_requests",
            ] {
                #expect(json[section] != nil, "section \(section)")
            }
            let account = try #require(json["account"] as? [String: Any])
            #expect(account["email"] as? String == user.email)
            #expect(account["has_password"] as? Bool == true)
            #expect((json["tasks"] as? [[String: Any]])?.first?["prompt"] as? String == "a lighthouse for ada@example.org")
            #expect((json["images"] as? [[String: Any]])?.count == 1)
            #expect((json["payments"] as? [[String: Any]])?.first?["card_last4"] as? String == "4242")
            #expect((json["api_keys"] as? [[String: Any]])?.map { $0["name"] as? String }.contains("ci") == true)
            let consents = try #require(json["consents"] as? [String: Any])
            #expect(consents["terms_version"] != nil && consents["marketing_mail"] as? Bool == false)

            let stored = try #require(try await services.database.user(id: user.id!))
            let session = try #require(try await services.database.sessions(userID: user.id!).first)
            for secret in [stored.passwordHash!, "JBSWY3DPEHPK3PXP", key.secret, session.csrfToken, session.tokenHash.base64EncodedString()] {
                #expect(!response.text.contains(secret), "the download holds a secret")
            }
            for name in ["password_hash", "token_hash", "totp_secret", "secret_hash", "csrf_token", "code_hash"] {
                #expect(!response.text.contains(name))
            }
            #expect(!response.text.contains("bob@example.org"), "only the signed-in person's data")
            #expect(try await services.database.dataRequests(userID: user.id!).contains { $0.kind == .access })
            #expect(try await client.execute(uri: "/account/privacy/download", method: .get).status == .seeOther, "visitors are sent to sign in")
        }
    }

    // MARK: Deletion

    @Test("After deletion and the purge no row of any table and no blob on disk refers to the person, except the pseudonymised payment")
    func purgeOnDisk() async throws {
        try await withTestApp(Self.settings) { services, client in
            try await Self.deleteAndPurge(services, client)
        }
    }

    @Test("Mail to an address the person has since changed is theirs: listed in their data, and purged with them")
    func mailToEarlierAddresses() async throws {
        try await withTestApp(Self.settings) { services, client in
            _ = try await Self.signedIn(services, client, email: "admin@example.org")
            let (_, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            @Sendable func draft(_ kind: String, to address: String) -> MailDraft {
                MailDraft(kind: kind, toEmail: address, toName: nil, subject: kind, text: "about your account", html: nil, messageID: "<\(kind)@example.org>")
            }
            let token = Data(SecureToken.hash("change-ada"))
            try await services.database.issueEmailToken(
                NewEmailToken(purpose: .changeEmail, tokenHash: token, newEmail: "ada.new@example.org", expiresAt: Date().addingTimeInterval(3600)),
                userID: user.id!, mail: draft("confirm_new", to: "ada.new@example.org")
            )
            _ = try #require(try await services.database.confirmEmailChange(tokenHash: token) { old in draft("address_changed", to: old.email) })
            let mine = try await services.database.writer.read { db in
                try String.fetchAll(db, sql: "SELECT to_email FROM mail_outbox WHERE user_id = ? ORDER BY id", arguments: [user.id!])
            }
            #expect(mine.contains("ada@example.org") && mine.contains("ada.new@example.org"))

            var report = Data()
            for try await chunk in try await services.privacy.accessReport(userID: user.id!) { report.append(contentsOf: chunk.readableBytesView) }
            let json = try #require(try JSONSerialization.jsonObject(with: report) as? [String: Any])
            let listed = try #require(json["mails"] as? [[String: Any]]).compactMap { $0["to_email"] as? String }
            #expect(listed.contains("ada@example.org") && listed.contains("ada.new@example.org"), "the access report lists mail to both addresses")

            let mail = draft("deletion_requested", to: "ada.new@example.org")
            _ = try await services.database.requestAccountDeletion(userID: user.id!, mail: mail, outcome: "scheduled")
            #expect(try await services.privacy.purge(userID: user.id!))
            let left = try await services.database.writer.read { db in
                try Row.fetchAll(db, sql: "SELECT kind, to_email FROM mail_outbox WHERE to_email IN ('ada@example.org', 'ada.new@example.org')")
            }
            #expect(left.map { $0["kind"] as String } == [AccountMails.purgedKind], "only the goodbye mail, to the current address, remains until sent")
        }
    }

    @Test("Signing in within the grace period offers to cancel the deletion, and cancelling keeps the account")
    func signingInCancels() async throws {
        try await withTestApp(Self.settings) { services, client in
            _ = try await Self.signedIn(services, client, email: "admin@example.org")
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            let deleted = try await browser.post("/account/privacy/delete", ["email": "ADA@example.org ", "password": Self.password], csrf: try await Self.csrf(services, user))
            #expect(deleted.status == .ok)
            #expect(try await browser.get("/account").status == .seeOther, "signed out")

            let again = try await browser.post("/signin", ["email": user.email, "password": Self.password])
            #expect(again.status == .seeOther)
            let account = try await browser.get("/account")
            #expect(account.status == .seeOther)
            #expect(account.headers[.location] == "/account/deletion")
            let offer = try await browser.get("/account/deletion")
            #expect(offer.status == .ok)
            #expect(offer.text.contains("/account/deletion/cancel"))
            let blocked = try await browser.post("/account/privacy/restrict", ["value": "on"], csrf: try await Self.csrf(services, user))
            #expect(blocked.status == .forbidden, "nothing else works while the deletion is pending")

            let cancel = try await browser.post("/account/deletion/cancel", [:], csrf: try await Self.csrf(services, user))
            #expect(cancel.headers[.location] == "/account/privacy?notice=deletion-canceled")
            #expect(try await browser.get("/account").status == .ok)
            #expect(try await services.privacy.purgeDue(now: Date().addingTimeInterval(40 * 86400)) == 0)
            #expect(try await services.database.user(id: user.id!) != nil)
            let kinds = try await services.database.recentMails().filter { $0.toEmail == user.email }.map(\.kind)
            #expect(kinds.contains(AccountMails.deletionRequestedKind) && kinds.contains(AccountMails.deletionCanceledKind))
            let log = try await services.database.dataRequests(userID: user.id!).map(\.kind)
            #expect(log.contains(.deletionRequested) && log.contains(.deletionCanceled))
        }
    }

    @Test("Delete all my images removes every image, thumbnail and upload from storage at once")
    func deleteAllImages() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            _ = try await Self.makeImage(services, user, prompt: "one")
            _ = try await Self.makeImage(services, user, prompt: "two")
            let before = try await services.blobs.list(prefix: "images/u\(user.id!)/").count + services.blobs.list(prefix: "uploads/u\(user.id!)/").count
            #expect(before == 6)
            let token = try await Self.csrf(services, user)
            #expect(try await browser.post("/account/privacy/images/delete", [:], csrf: token).status == .unprocessableContent, "the box must be ticked")
            let done = try await browser.post("/account/privacy/images/delete", ["confirm": "on"], csrf: token)
            #expect(done.headers[.location] == "/account/privacy?notice=images-deleted")
            #expect(try await services.database.images(userID: user.id!).isEmpty)
            #expect(try await services.blobs.list(prefix: "images/u\(user.id!)/").isEmpty)
            #expect(try await services.blobs.list(prefix: "uploads/u\(user.id!)/").isEmpty)
            #expect(try await services.database.dataRequests(userID: user.id!).contains { $0.kind == .imagesDeleted })
        }
    }

    // MARK: Restriction and consent

    @Test("Restricting processing cancels and refunds unfinished tasks, refuses new ones with 403, and holds back non-essential mail")
    func restriction() async throws {
        try await withTestApp(["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "60000", "EASEL_SIGNUP_CREDITS": "100"]) { services, client in
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            let viewer = Viewer(userID: user.id!, isAdmin: false)
            let slow = try await services.generation.submit(GenerationRequest(prompt: "slow"), viewer: viewer, clientIP: nil).task
            try await services.database.setMarketingConsent(userID: user.id!, true, via: "test")
            let token = try await Self.csrf(services, user)

            #expect(try await browser.post("/account/privacy/restrict", ["value": "on"], csrf: token).status == .seeOther)
            let canceled = try #require(try await services.database.generationTask(id: slow.id!))
            #expect(canceled.status == .canceled && canceled.creditsRefunded == canceled.creditsReserved)
            #expect(try await services.database.creditBalance(userID: user.id!) == 100)

            let body = #"{"prompt":"a fox","n":1}"#
            let api = try await browser.send(
                "/api/v1/generations", method: .post,
                headers: [.contentType: "application/json", HTTPField.Name("X-CSRF-Token")!: token, .origin: "http://localhost:8080"], body: ByteBuffer(string: body)
            )
            #expect(api.status == .forbidden)
            #expect(api.text.contains("processing_restricted"))
            let page = try await browser.post("/create", ["prompt": "a fox"], csrf: token)
            #expect(page.status == .forbidden)

            #expect(try await services.privacy.queueNonEssentialMail(to: user, kind: "newsletter", subject: "News", paragraphs: ["Hello"]) == false)
            #expect(!(try await services.database.recentMails().contains { $0.kind == "newsletter" }))

            #expect(try await browser.post("/account/privacy/restrict", ["value": "off"], csrf: token).status == .seeOther)
            #expect(try await services.privacy.queueNonEssentialMail(to: user, kind: "newsletter", subject: "News", paragraphs: ["Hello"]) == true)
            let log = try await services.database.dataRequests(userID: user.id!).map(\.kind)
            #expect(log.contains(.restrictionOn) && log.contains(.restrictionOff))
        }
    }

    @Test("Marketing mail is off by default; opted in, its mail carries List-Unsubscribe headers whose one-click POST withdraws consent")
    func oneClickUnsubscribe() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            #expect(try await services.privacy.queueNonEssentialMail(to: user, kind: "newsletter", subject: "News", paragraphs: ["Hello"]) == false, "off by default")
            let token = try await Self.csrf(services, user)
            #expect(try await browser.post("/account/privacy/marketing", ["value": "on"], csrf: token).headers[.location] == "/account/privacy?notice=marketing-on")
            #expect(try await services.privacy.queueNonEssentialMail(to: user, kind: "newsletter", subject: "News", paragraphs: ["Hello"]) == true)

            let mail = try #require(try await services.database.recentMails().first { $0.kind == "newsletter" })
            let headers = mail.extraHeaders
            let list = try #require(headers["List-Unsubscribe"])
            #expect(headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click")
            let url = try #require(list.firstMatch(of: /<(https?:\/\/[^>]+)>/).map { String($0.1) })
            #expect(url.hasPrefix("http://localhost:8080/unsubscribe?token="))
            #expect(mail.textBody.contains(url), "the link is in the mail too")

            let rendered = MIMEMessage(
                MailMessage(
                    from: MailAddress("noreply@example.org"), to: [MailAddress(mail.toEmail)], subject: mail.subject, text: mail.textBody,
                    messageID: mail.messageID, date: mail.createdAt, headers: headers
                )
            ).rendered()
            #expect(rendered.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"))
            #expect(rendered.replacingOccurrences(of: "\r\n ", with: " ").contains("List-Unsubscribe: <\(url)>"))

            let path = String(url.dropFirst("http://localhost:8080".count))
            let page = try await client.execute(uri: path, method: .get)
            #expect(page.status == .ok)
            #expect(try await services.privacy.state(userID: user.id!)?.marketingConsent == true, "GET changes nothing")
            // As a mail provider sends it: no cookies, no form token, no Origin.
            let oneClick = try await client.execute(
                uri: path, method: .post, headers: [.contentType: "application/x-www-form-urlencoded"], body: ByteBuffer(string: "List-Unsubscribe=One-Click")
            )
            #expect(oneClick.status == .ok)
            #expect(try await services.privacy.state(userID: user.id!)?.marketingConsent == false)
            #expect(try await services.database.dataRequests(userID: user.id!).contains { $0.kind == .marketingOptOut && $0.outcome == "one-click unsubscribe link" })
            let forged = try await client.execute(
                uri: "/unsubscribe?token=\(String(url.split(separator: "=").last!).dropLast(3))abc", method: .post,
                headers: [.contentType: "application/x-www-form-urlencoded"], body: ByteBuffer(string: "List-Unsubscribe=One-Click")
            )
            #expect(forged.status == .badRequest)
        }
    }

    // MARK: Admins

    @Test("Admins purge an account reported as under age at once, after typing its address; the log keeps a pseudonymous entry")
    func underAgePurge() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (admin, adminUser) = try await Self.signedIn(services, client, email: "admin@example.org")
            let (member, child) = try await Self.signedIn(services, client, email: "kid@example.org")
            try await Self.fillAccount(services, child)
            #expect(try await member.get("/admin/privacy").status == .forbidden)
            #expect(try await member.get("/admin/users/\(adminUser.id!)/under-age").status == .forbidden)

            let token = try await Self.csrf(services, adminUser)
            #expect(try await admin.get("/admin/users/\(child.id!)").text.contains("/admin/users/\(child.id!)/under-age"))
            #expect(try await admin.get("/admin/users/\(child.id!)/under-age").status == .ok)
            let wrong = try await admin.post("/admin/users/\(child.id!)/under-age", ["email": "someone@example.org"], csrf: token)
            #expect(wrong.status == .unprocessableContent)
            #expect(try await services.database.user(id: child.id!) != nil)

            let purged = try await admin.post("/admin/users/\(child.id!)/under-age", ["email": child.email], csrf: token)
            #expect(purged.headers[.location] == "/admin/privacy?notice=purged")
            #expect(try await services.database.user(id: child.id!) == nil)
            try await services.mailer.sendDue()
            try await services.privacy.removeSentPurgeMails()
            let leftovers = try await Self.rowsReferring(to: child.id!, email: child.email, in: services.database)
            #expect(leftovers == [])
            #expect(try await Self.blobsOf(child.id!, in: services.blobs) == [])
            let entry = try #require(try await services.database.dataRequests().first { $0.request.kind == .underAgePurged })
            #expect(entry.request.actorID == adminUser.id && entry.request.pseudonym?.hasPrefix("deleted-") == true)
            let log = try await admin.get("/admin/privacy")
            #expect(log.status == .ok)
            #expect(log.text.contains(entry.request.pseudonym!))
            #expect(!log.text.contains(child.email))
            #expect(try await admin.post("/admin/users/\(adminUser.id!)/under-age", ["email": adminUser.email], csrf: token).status == .conflict)
        }
    }

    @Test("The only admin cannot delete their account; the ledger stays append-only except for nulling references")
    func lastAdminAndLedger() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (admin, adminUser) = try await Self.signedIn(services, client, email: "admin@example.org")
            let refused = try await admin.post("/account/privacy/delete", ["email": adminUser.email, "password": Self.password], csrf: try await Self.csrf(services, adminUser))
            #expect(refused.status == .conflict)
            await #expect(throws: DatabaseError.self) {
                try await services.database.writer.write { db in try db.execute(sql: "UPDATE credit_ledger SET amount = amount + 1") }
            }
        }
    }

    @Test("Re-authentication: the typed address always; the password and 2FA code when there is a password; else a sign-in within ten minutes")
    func reauthentication() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (_, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            let now = Date()
            let privacy = services.privacy
            #expect(throws: PrivacyService.DeletionError.emailMismatch) {
                try privacy.check(.init(typedEmail: "bob@example.org", passwordOK: true, codeOK: nil, signedInAt: now), user: user, now: now)
            }
            #expect(throws: PrivacyService.DeletionError.wrongPassword) {
                try privacy.check(.init(typedEmail: user.email, passwordOK: false, codeOK: nil, signedInAt: now), user: user, now: now)
            }
            try privacy.check(.init(typedEmail: " Ada@Example.org", passwordOK: true, codeOK: nil, signedInAt: now.addingTimeInterval(-86400)), user: user, now: now)
            var twoFactor = user
            twoFactor.totpSecret = "JBSWY3DPEHPK3PXP"
            twoFactor.totpEnabledAt = now
            #expect(throws: PrivacyService.DeletionError.wrongCode) {
                try privacy.check(.init(typedEmail: user.email, passwordOK: true, codeOK: false, signedInAt: now), user: twoFactor, now: now)
            }
            var oidcOnly = user
            oidcOnly.passwordHash = nil
            try privacy.check(.init(typedEmail: user.email, passwordOK: nil, codeOK: nil, signedInAt: now.addingTimeInterval(-300)), user: oidcOnly, now: now)
            #expect(throws: PrivacyService.DeletionError.signInAgain) {
                try privacy.check(.init(typedEmail: user.email, passwordOK: nil, codeOK: nil, signedInAt: now.addingTimeInterval(-3600)), user: oidcOnly, now: now)
            }
        }
    }

    @Test("Wrong two-factor codes on the deletion form count as failed sign-ins, so guessing codes is throttled")
    func deletionCodesAreThrottled() async throws {
        try await withTestApp(Self.settings) { services, client in
            _ = try await Self.signedIn(services, client, email: "admin@example.org")
            let (browser, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            try await services.database.writer.write { db in
                try db.execute(sql: "UPDATE user SET totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', totp_enabled_at = ? WHERE id = ?", arguments: [Date(), user.id!])
            }
            let token = try await Self.csrf(services, user)
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<7 {
                // The right password each time: it must not wipe the count of wrong codes.
                let response = try await browser.post("/account/privacy/delete", ["email": user.email, "password": Self.password, "code": "000000"], csrf: token)
                statuses.append(response.status)
            }
            #expect(statuses.allSatisfy { $0 == .unauthorized || $0 == .tooManyRequests }, "\(statuses)")
            let failures = try await services.database.loginFailures(email: user.email, ip: "", since: Date().addingTimeInterval(-3600))
            #expect(failures.account == statuses.filter { $0 == .unauthorized }.count)
            #expect(failures.account >= 5)
            let latest = try #require(failures.latest)
            #expect(try await services.accounts.throttleDelay(email: user.email, ip: "", now: latest) != nil, "the next try must wait")
            #expect(try await services.privacy.state(userID: user.id!)?.deletionRequestedAt == nil, "nothing was deleted")
        }
    }

    @Test("Extra mail headers cannot inject lines or replace the headers Easel sets")
    func extraHeadersAreSafe() {
        let message = MailMessage(
            from: MailAddress("noreply@example.org"), to: [MailAddress("ada@example.org")], subject: "Hi", text: "Hello", messageID: "<m@example.org>",
            date: Date(timeIntervalSince1970: 0),
            headers: ["List-Unsubscribe": "<https://example.org/u>\r\nBcc: evil@example.org", "Subject": "Replaced", "Bad Name": "x", "X-Ok": "yes"]
        )
        let rendered = MIMEMessage(message).rendered()
        #expect(!rendered.contains("\r\nBcc:"))
        #expect(!rendered.contains("Replaced"))
        #expect(!rendered.contains("Bad Name"))
        #expect(rendered.contains("\r\nX-Ok: yes\r\n"))
    }

    // MARK: Retention

    @Test("The sweep removes blobs no row refers to after the grace period, and never backups or referenced files")
    func orphanSweep() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (_, user) = try await Self.signedIn(services, client, email: "ada@example.org")
            _ = try await Self.makeImage(services, user, prompt: "kept")
            let orphan = try BlobKey("images/u\(user.id!)/t999/0.png")
            let backup = try BlobKey("backups/easel-old.db")
            try await services.blobs.put(orphan, data: Data([1, 2, 3]))
            try await services.blobs.put(backup, data: Data([1, 2, 3]))
            let referenced = try await services.database.referencedBlobKeys()

            #expect(try await services.privacy.sweepOrphanBlobs(now: Date()) == 0, "within the grace period")
            #expect(try await services.privacy.sweepOrphanBlobs(now: Date().addingTimeInterval(2 * 86400)) == 1)
            #expect(try await services.blobs.head(orphan) == nil)
            #expect(try await services.blobs.head(backup) != nil)
            for key in referenced { #expect(try await services.blobs.head(BlobKey(key)) != nil) }
        }
    }
}

/// The same purge with EASEL_STORAGE=s3 against moto: no object of the person is left in the bucket.
@Suite("Account purge on S3", .serialized)
struct AccountPurgeS3Tests {
    @Test("After deletion and the purge no object of the person is left in the bucket")
    func purgeOnS3() async throws {
        let peer = try await S3Peer.start()
        do {
            let bucket = "easel-purge-\(UUID().uuidString.prefix(8).lowercased())"
            try await HTTPClient.withHTTPClient { client in
                let store = try S3BlobStore(
                    configuration: S3Configuration(
                        endpoint: peer.endpoint, region: peer.region, bucket: bucket, accessKeyID: peer.accessKeyID, secretAccessKey: peer.secretAccessKey,
                        pathStyle: true
                    ),
                    httpClient: client, logger: Logger(label: "test")
                )
                try await store.createBucket()
            }
            var settings = S3StorageTests().settings(peer, bucket: bucket)
            settings.merge(PrivacyRightsTests.settings) { _, new in new }
            try await withTestApp(settings) { services, client in
                #expect(services.blobs.kind == "s3")
                try await PrivacyRightsTests.deleteAndPurge(services, client)
            }
        } catch {
            await peer.stop()
            throw error
        }
        await peer.stop()
    }
}
