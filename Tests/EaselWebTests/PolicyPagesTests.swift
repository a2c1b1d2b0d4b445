import EaselApp
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// The Privacy Policy and Terms are true for each deployment: built from the live settings,
/// never from reaching the services. Publishing a material change mails active people and
/// holds their page views at a notice until they acknowledge it.
@Suite("Policy pages and versions", .serialized)
struct PolicyPagesTests {
    static let outsideNames = ["OpenAI", "Evolink", "S3", "SMTP", "Resend", "Stripe", "Google"]

    func page(_ client: any TestClientProtocol, _ path: String) async throws -> String {
        let response = try await client.execute(uri: path, method: .get, headers: [.accept: "text/html"], body: nil)
        #expect(response.status == .ok, "\(path) answered \(response.status)")
        return response.text
    }

    @Test("A demo instance on disk with mail in the log names no outside service")
    func offlineInstanceNamesNoService() async throws {
        try await withTestApp(["EASEL_PROVIDER": "demo"]) { _, client in
            for path in ["/privacy", "/terms"] {
                let text = try await self.page(client, path)
                for name in Self.outsideNames {
                    #expect(!text.contains(name), "\(path) names \(name) on an instance that does not use it")
                }
            }
            let privacy = try await self.page(client, "/privacy")
            #expect(privacy.contains("sends no personal data to other companies"))
            #expect(privacy.contains("the administrator of this instance"), "no contact set: the page points to the administrator")
        }
    }

    @Test("OpenAI, S3, SMTP, Stripe and an OIDC sign-in are each named, from the settings alone")
    func configuredServicesAreNamed() async throws {
        let folder = try TemporaryDirectory("easel-policy")
        defer { folder.remove() }
        let catalog = folder.url.appending(path: "catalog.json")
        try Data(BillingTests.catalog.utf8).write(to: catalog)
        // None of these hosts is reachable: the page must not need them.
        let settings = [
            "EASEL_OPENAI_API_KEY": "sk-test-unused", "EASEL_OPENAI_BASE_URL": "https://api.openai.com/v1",
            "EASEL_STORAGE": "s3", "EASEL_S3_ENDPOINT": "https://objects.storage.example", "EASEL_S3_BUCKET": "easel-images",
            "EASEL_S3_ACCESS_KEY_ID": "AKIDTEST", "EASEL_S3_SECRET_ACCESS_KEY": "secret-test",
            "EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.relay.example",
            "STRIPE_SECRET_KEY": "sk_test_unused", "STRIPE_WEBHOOK_SECRET": "whsec_unused", "EASEL_BILLING_CATALOG": catalog.path,
            "EASEL_OIDC_CLIENT_ID": "client-test", "EASEL_OIDC_CLIENT_SECRET": "client-secret-test",
        ]
        try await withTestApp(settings) { _, client in
            let text = try await self.page(client, "/privacy")
            for expected in ["OpenAI", "api.openai.com", "S3", "objects.storage.example", "SMTP", "mail.relay.example", "Stripe", "Google", "accounts.google.com"] {
                #expect(text.contains(expected), "the privacy page should name \(expected)")
            }
            #expect(text.contains("reference images"), "the image provider's row says it receives reference images")
            #expect(!text.contains("Evolink"))
            #expect(!text.contains("Resend"))
            #expect(!text.contains("sends no personal data to other companies"))
            #expect(text.contains("Payment records:</strong> 7 years"))
        }
    }

    @Test("Evolink and Resend are named when they are the chosen provider and mail service")
    func evolinkAndResendAreNamed() async throws {
        try await withTestApp(["EASEL_EVOLINK_API_KEY": "ek-test-unused", "EASEL_MAIL": "resend", "EASEL_RESEND_API_KEY": "re_unused"]) { _, client in
            let text = try await self.page(client, "/privacy")
            #expect(text.contains("Evolink"))
            #expect(text.contains("Resend"))
            #expect(!text.contains("OpenAI"))
            #expect(!text.contains("Stripe"))
        }
    }

    @Test("The operator's name, contact and jurisdiction appear on both pages")
    func operatorFactsAppear() async throws {
        let settings = [
            "EASEL_SITE_NAME": "Pixel Garden", "EASEL_OPERATOR_NAME": "Garden Works B.V.", "EASEL_PRIVACY_CONTACT": "privacy@garden.example",
            "EASEL_JURISDICTION": "the Netherlands",
        ]
        try await withTestApp(settings) { _, client in
            let privacy = try await self.page(client, "/privacy")
            #expect(privacy.contains("Garden Works B.V."))
            #expect(privacy.contains("href=\"mailto:privacy@garden.example\""))
            #expect(!privacy.contains("the administrator of this instance"))
            let terms = try await self.page(client, "/terms")
            #expect(terms.contains("Garden Works B.V."))
            #expect(terms.contains("governed by the law of the Netherlands"))
            #expect(terms.contains("privacy@garden.example"))
        }
    }

    @Test("Retention periods on the privacy page follow the settings")
    func retentionFollowsSettings() async throws {
        let settings = [
            "EASEL_ACCOUNT_PURGE_DAYS": "45", "EASEL_LOG_RETENTION_DAYS": "14", "EASEL_ANALYTICS": "on", "EASEL_ANALYTICS_RETENTION_DAYS": "60",
            "EASEL_EXPORT_RETENTION_DAYS": "3", "EASEL_MIN_AGE": "16",
        ]
        try await withTestApp(settings) { _, client in
            let text = try await self.page(client, "/privacy")
            #expect(text.contains("held for 45 days"))
            #expect(text.contains("Request log:</strong> 14 days"))
            #expect(text.contains("Visit statistics:</strong> 60 days"))
            #expect(text.contains("Data exports you ask for:</strong> 3 days"))
            #expect(text.contains("at least 16 years old"))
            #expect(!text.contains("Payment records:"), "no billing: no payment records to keep")
        }
        try await withTestApp(["EASEL_LOG_RETENTION_DAYS": "0"]) { _, client in
            let text = try await self.page(client, "/privacy")
            #expect(text.contains("Request log:</strong> none is kept"))
            #expect(text.contains("held for 30 days"))
            #expect(!text.contains("Visit statistics:"), "analytics off: nothing about counted visits")
        }
    }

    @Test("The pages show the configured version and date; sign-up records that version")
    func versionFromSettings() async throws {
        try await withTestApp(["EASEL_POLICY_VERSION": "v7", "EASEL_POLICY_UPDATED": "2026-12-03"]) { services, client in
            let text = try await self.page(client, "/privacy")
            #expect(text.contains("Last updated 2026-12-03 · version v7"))
            let user = try await APITests().makeAccount(services)
            #expect(user.termsVersion == "v7")
        }
    }

    @Test("The footer links both pages and the sign-up checkbox links them")
    func linksInFooterAndSignup() async throws {
        try await withTestApp { _, client in
            let signup = try await self.page(client, "/signup")
            #expect(signup.contains("<a href=\"/privacy\">"))
            #expect(signup.contains("<a href=\"/terms\">"))
            #expect(signup.contains("href=\"/terms\" target=\"_blank\""), "the terms checkbox links the terms")
            #expect(signup.contains("href=\"/privacy\" target=\"_blank\""))
        }
    }

    /// Marks people as having accepted an earlier version, as if they signed up before it changed.
    func acceptedEarlier(_ services: AppServices, _ ids: [Int64]) async throws {
        try await services.database.writer.write { db in
            for id in ids {
                try db.execute(sql: "UPDATE user SET terms_version = '2026-11-25', terms_accepted_at = ? WHERE id = ?", arguments: [Date().addingTimeInterval(-86400), id])
            }
        }
    }

    @Test("A material change mails each active person once, holds their pages at the notice, and acknowledging ends it")
    func materialChange() async throws {
        try await withTestApp(["EASEL_POLICY_VERSION": "2026-12-01"]) { services, client in
            let api = APITests()
            // Given: two active people, one suspended, one awaiting deletion, all on the old version.
            let (browser, ada) = try await api.signedIn(services, client, email: "ada@example.org")
            let dan = try await api.makeAccount(services, email: "dan@example.org")
            let bob = try await api.makeAccount(services, email: "bob@example.org")
            let carol = try await api.makeAccount(services, email: "carol@example.org")
            try await services.database.setStatus(.suspended, userID: bob.id!, by: ada.id!)
            _ = try await services.privacy.requestDeletion(user: carol)
            try await self.acceptedEarlier(services, [ada.id!, dan.id!, bob.id!, carol.id!])
            try await services.database.writer.write { db in try db.execute(sql: "UPDATE user SET language = 'es' WHERE id = ?", arguments: [dan.id!]) }
            let key = try await api.key(services, for: ada, scopes: [.read])
            #expect(try await browser.get("/account", headers: [.accept: "text/html"]).status == .ok, "no notice before anything is published")

            // When: the version is published as material.
            let record = try await services.policy.publish(material: true)

            // Then: one notice each to Ada and Dan, none to Bob or Carol.
            #expect(record.mailsQueued == 2)
            let notices = try await services.database.recentMails().filter { $0.kind == AccountMails.policyChangedKind }
            #expect(notices.map(\.toEmail).sorted() == ["ada@example.org", "dan@example.org"])
            #expect(notices.allSatisfy { $0.textBody.contains("2026-12-01") })
            #expect(notices.first { $0.toEmail == "dan@example.org" }?.subject.contains("ha actualizado") == true, "in the person's language")
            #expect(notices.first { $0.toEmail == "ada@example.org" }?.subject.contains("has updated") == true)

            // Page views lead to the notice; the API is unaffected.
            let held = try await browser.get("/account", headers: [.accept: "text/html"])
            #expect(held.status == .seeOther)
            #expect(held.headers[.location] == "/policy/notice?next=%2Faccount")
            #expect(try await api.call(client, .get, "/api/v1/me", key: key).status == .ok)
            #expect(try await browser.get("/privacy", headers: [.accept: "text/html"]).status == .ok, "the policy itself can be read")
            let notice = try await browser.get("/policy/notice?next=%2Faccount", headers: [.accept: "text/html"])
            #expect(notice.status == .ok)
            #expect(notice.text.contains("action=\"/policy/notice\""))

            // Acknowledging needs the form token.
            let forged = try await browser.post("/policy/notice", ["next": "/account"], csrf: "wrong")
            #expect(forged.status == .forbidden)
            #expect(try await services.database.user(id: ada.id!)?.termsVersion == "2026-11-25")

            let before = Date()
            let done = try await browser.post("/policy/notice", ["next": "/account"], csrf: try api.formToken(notice))
            #expect(done.status == .seeOther)
            #expect(done.headers[.location] == "/account")
            let updated = try #require(try await services.database.user(id: ada.id!))
            #expect(updated.termsVersion == "2026-12-01")
            #expect(updated.termsAcceptedAt >= before.addingTimeInterval(-1))
            #expect(try await browser.get("/account", headers: [.accept: "text/html"]).status == .ok, "acknowledged: no more redirect")

            // Publishing the same version again is refused and mails nobody.
            await #expect(throws: PolicyService.PublishError.alreadyPublished("2026-12-01")) { try await services.policy.publish(material: true) }
            #expect(try await services.database.recentMails().filter { $0.kind == AccountMails.policyChangedKind }.count == 2)
        }
    }

    @Test("A change that is not material mails nobody and shows no notice")
    func minorChange() async throws {
        try await withTestApp(["EASEL_POLICY_VERSION": "2026-12-01"]) { services, client in
            let (browser, ada) = try await APITests().signedIn(services, client, email: "ada@example.org")
            try await self.acceptedEarlier(services, [ada.id!])
            let record = try await services.policy.publish(material: false)
            #expect(record.mailsQueued == 0)
            #expect(try await services.database.recentMails().filter { $0.kind == AccountMails.policyChangedKind }.isEmpty)
            #expect(try await browser.get("/account", headers: [.accept: "text/html"]).status == .ok)
        }
    }

    @Test("Only the configured version can be published")
    func publishRequiresConfiguredVersion() async throws {
        try await withTestApp { services, _ in
            await #expect(throws: PolicyService.PublishError.notConfigured(requested: "2027-01-01", configured: "2026-11-25")) {
                try await services.policy.publish(version: "2027-01-01", material: true)
            }
        }
    }
}

@Suite("Policy settings")
struct PolicyConfigTests {
    func load(_ environment: [String: String]) async throws -> EaselConfig {
        try EaselConfig.load(from: try await EaselConfig.reader(arguments: [], environment: environment, dotEnvPath: nil))
    }

    @Test("Policy settings default to the site name, no contact and the shipped version")
    func defaults() async throws {
        let facts = try await self.load(["EASEL_SITE_NAME": "Pixel Garden"]).policyFacts()
        #expect(facts.operatorName == "Pixel Garden")
        #expect(facts.contact == nil)
        #expect(facts.version == "2026-11-25")
        #expect(facts.updatedOn == "2026-11-25")
        #expect(facts.services.isEmpty)
    }

    @Test("Bad policy settings are refused, naming the variable")
    func badSettings() async throws {
        await #expect(throws: ConfigError.self) { try await self.load(["EASEL_POLICY_VERSION": "second draft"]) }
        do {
            _ = try await self.load(["EASEL_POLICY_VERSION": "v2"])
            Issue.record("a version that is not a day needs EASEL_POLICY_UPDATED")
        } catch let error as ConfigError {
            #expect(error.key == "EASEL_POLICY_UPDATED")
        }
        do {
            _ = try await self.load(["EASEL_PRIVACY_CONTACT": "write to us"])
            Issue.record("a contact must be an address or a web page")
        } catch let error as ConfigError {
            #expect(error.key == "EASEL_PRIVACY_CONTACT")
        }
        #expect(try await self.load(["EASEL_PRIVACY_CONTACT": "https://garden.example/privacy"]).policyFacts().contactHref == "https://garden.example/privacy")
    }
}

extension PolicyPagesTests {
    @Test("An operator's own privacy template in EASEL_POLICY_DIR replaces the shipped one, facts still filled in")
    func operatorTemplateOverride() async throws {
        let folder = try TemporaryDirectory("easel-policy-dir")
        defer { folder.remove() }
        let custom = """
            {{<layout}}{{$body}}<article><h1>Our own words</h1><p>Run by {{facts.operatorName}}; purge after {{facts.accountPurgeDays}} days.</p></article>{{/body}}{{/layout}}
            """
        try Data(custom.utf8).write(to: folder.url.appending(path: "policy-privacy.mustache"))
        try await withTestApp(["EASEL_POLICY_DIR": folder.url.path, "EASEL_OPERATOR_NAME": "Garden Works", "EASEL_ACCOUNT_PURGE_DAYS": "21"]) { _, client in
            let privacy = try await self.page(client, "/privacy")
            #expect(privacy.contains("Our own words"))
            #expect(privacy.contains("Run by Garden Works; purge after 21 days."))
            #expect(privacy.contains("<a href=\"/terms\">"), "the shipped layout (and its footer) surrounds it")
            let terms = try await self.page(client, "/terms")
            #expect(terms.contains("governed by the law"), "no terms file in the folder: the shipped terms")
        }
    }
}

extension PolicyPagesTests {
    @Test("An admin publishes the configured version from /admin/policy; members cannot")
    func adminPublishes() async throws {
        try await withTestApp(["EASEL_POLICY_VERSION": "2026-12-01"]) { services, client in
            let api = APITests()
            let (admin, ada) = try await api.signedIn(services, client, email: "ada@example.org")
            let (member, bob) = try await api.signedIn(services, client, email: "bob@example.org")
            #expect(ada.role == .admin, "the first account is the admin")
            try await self.acceptedEarlier(services, [ada.id!, bob.id!])

            #expect(try await member.get("/admin/policy", headers: [.accept: "text/html"]).status == .forbidden)
            let memberPage = try await member.get("/account", headers: [.accept: "text/html"])
            #expect(try await member.post("/admin/policy/publish", ["material": "on"], csrf: try api.formToken(memberPage)).status == .forbidden)
            #expect(try await services.policy.publishedVersions().isEmpty)

            let page = try await admin.get("/admin/policy", headers: [.accept: "text/html"])
            #expect(page.status == .ok)
            #expect(page.text.contains("Publish version 2026-12-01"))
            let published = try await admin.post("/admin/policy/publish", ["material": "on"], csrf: try api.formToken(page))
            #expect(published.status == .seeOther)
            #expect(published.headers[.location] == "/admin/policy?published=2")
            #expect(try await services.database.recentMails().filter { $0.kind == AccountMails.policyChangedKind }.count == 2)
            #expect(try await services.policy.publishedVersions().map(\.version) == ["2026-12-01"])

            let again = try await admin.post("/admin/policy/publish", ["material": "on"], csrf: try api.formToken(page))
            #expect(again.status == .conflict)
            #expect(try await services.database.recentMails().filter { $0.kind == AccountMails.policyChangedKind }.count == 2)
        }
    }
}
