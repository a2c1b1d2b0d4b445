import EaselApp
import EaselBlobs
import EaselCore
import EaselStore
import EaselTestSupport
import EaselWeb
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@Suite("Studio pages: Create, Activity, Gallery and Credits")
struct StudioPagesTests {
    /// The demo provider with no simulated latency: tasks finish at once.
    static let settings = ["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "0"]
    static let pages = ["/create", "/activity", "/gallery", "/credits"]

    // MARK: Helpers

    /// A confirmed account (sign-up plus the mailed code), signed in through the sign-in form.
    func signedIn(_ services: AppServices, _ client: any TestClientProtocol, email: String) async throws -> (Browser, User) {
        try await services.accounts.signUp(.init(email: email, password: "correct horse battery", displayName: "", ageConfirmed: true, termsAccepted: true))
        let mail = try #require(try await services.database.recentMails().first { $0.toEmail == email && $0.kind == "verify_email" })
        let code = try #require(mail.textBody.firstMatch(of: /code is (\d{6})/)?.1).description
        let user = try #require(try await services.accounts.verify(email: email, code: code))
        let browser = Browser(client)
        try await browser.get("/signin")
        let response = try await browser.post("/signin", ["email": email, "password": "correct horse battery"])
        #expect(response.status == .seeOther)
        return (browser, user)
    }

    /// The token the page gives its script for API writes (the layout's csrf-token meta tag).
    func pageToken(_ page: TestResponse) throws -> String {
        try #require(page.text.firstMatch(of: /<meta name="csrf-token" content="([^"]+)">/).map { String($0.1) }, "no csrf-token meta tag")
    }

    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any], "not a JSON object: \(response.text)")
    }

    /// Submits a task as the Create page's script does, then (unless told not to) polls until it has finished.
    func generate(_ browser: Browser, token: String, prompt: String, key: String = UUID().uuidString, waitUntilFinished: Bool = true) async throws -> [String: Any] {
        let body = #"{"prompt":"\#(prompt)","model":"gpt-image-1-mini","size":"1024x1024","quality":"low","n":1,"reference_upload_ids":[]}"#
        let submitted = try await browser.send(
            "/api/v1/generations", method: .post,
            headers: [.contentType: "application/json", HTTPField.Name("X-CSRF-Token")!: token, HTTPField.Name("Idempotency-Key")!: key,
                      .origin: "http://localhost:8080"],
            body: ByteBuffer(string: body)
        )
        #expect(submitted.status == .accepted, "\(submitted.text)")
        let id = try #require(try self.json(submitted)["id"] as? Int)
        if !waitUntilFinished { return try self.json(submitted) }
        for _ in 0..<400 {
            let task = try self.json(try await browser.get("/api/v1/generations/\(id)"))
            if let status = task["status"] as? String, ["succeeded", "failed", "canceled"].contains(status) { return task }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("task \(id) did not finish within 10 seconds")
        return try self.json(try await browser.get("/api/v1/generations/\(id)"))
    }

    // MARK: Sign-in and empty states

    @Test("Each studio page sends visitors who are not signed in to the sign-in page", arguments: Self.pages)
    func needsSignIn(path: String) async throws {
        try await withTestApp(Self.settings) { _, client in
            let response = try await client.execute(uri: path, method: .get, headers: [.accept: "text/html"])
            #expect(response.status == .seeOther)
            #expect(response.headers[.location] == "/signin?next=\(path)")
        }
    }

    @Test("A new person sees the form, the demo label, the price and the empty states; the nav and home page lead to Create")
    func emptyStates() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (browser, _) = try await self.signedIn(services, client, email: "ada@example.org")

            let create = try await browser.get("/create")
            #expect(create.status == .ok)
            let html = create.text
            for snippet in [
                "<h1>Create</h1>", "<textarea id=\"prompt\" name=\"prompt\"", "<select id=\"model\" name=\"model\">", "<select id=\"size\" name=\"size\">",
                "<select id=\"quality\" name=\"quality\">", "<select id=\"count\" name=\"n\">", "<option value=\"gpt-image-2\" selected>",
                "Demo provider: pictures are drawn locally", "id=\"ref-files\"", "multiple", "data-max-refs=\"16\"", "Up to 16 images",
                "4 credits · balance 50", "id=\"create-submit\" type=\"submit\">Create</button>", "Ctrl+Enter",
                "href=\"/create\"", "href=\"/activity\"", "href=\"/gallery\"", "href=\"/credits\"", "<meta name=\"csrf-token\"",
            ] {
                #expect(html.contains(snippet), "Create page lacks \(snippet)")
            }
            #expect(!html.contains("id=\"create-submit\" type=\"submit\" disabled"), "affordable, so the button is enabled")

            let activity = try await browser.get("/activity")
            #expect(activity.status == .ok)
            #expect(activity.text.contains("<div class=\"empty-state\" data-empty>\n      <p>No images yet — create your first.</p>"))
            #expect(activity.text.contains("<a class=\"button primary\" href=\"/create\">Create your first image</a>"))
            #expect(activity.text.contains("<template id=\"tpl-task\">"))

            let gallery = try await browser.get("/gallery")
            #expect(gallery.status == .ok)
            #expect(gallery.text.contains("<div class=\"empty-state\" data-empty>\n      <p>No images yet — create your first.</p>"))
            #expect(gallery.text.contains("<dialog class=\"lightbox\""))

            let credits = try await browser.get("/credits")
            #expect(credits.status == .ok)
            #expect(credits.text.contains("<strong id=\"balance\">50</strong>"))
            #expect(credits.text.contains("Granted"), "the sign-up grant is in the ledger")
            #expect(credits.text.contains("+50"))

            let home = try await browser.get("/")
            #expect(home.text.contains("<a class=\"button primary\" href=\"/create\">Start creating</a>"))
        }
    }

    // MARK: After a task

    @Test("After a task made through the API, Activity, Gallery and Credits list it")
    func listsATask() async throws {
        try await withTestApp(Self.settings) { services, client in
            _ = try await self.signedIn(services, client, email: "admin@example.org")  // the first account is the admin
            let (browser, user) = try await self.signedIn(services, client, email: "bo@example.org")
            let token = try self.pageToken(try await browser.get("/create"))
            let task = try await self.generate(browser, token: token, prompt: "A red fox & a <small> owl in the snow")
            #expect(task["status"] as? String == "succeeded")
            let taskID = try #require(task["id"] as? Int)
            let images = try #require(task["images"] as? [[String: Any]])
            let imageID = try #require(images.first?["id"] as? Int)

            let activity = try await browser.get("/activity")
            let html = activity.text
            #expect(html.contains("id=\"task-\(taskID)\""))
            #expect(html.contains("A red fox &amp; a &lt;small&gt; owl in the snow"), "the prompt, escaped")
            #expect(!html.contains("<small> owl"))
            #expect(html.contains(">Done</span>"))
            #expect(html.contains("gpt-image-1-mini · 1024×1024 · Low · 1 image"))
            #expect(html.contains("Charged 1 · returned 0"))
            #expect(html.contains("href=\"/create?prompt=A%20red%20fox%20%26%20a%20%3Csmall%3E%20owl%20in%20the%20snow&amp;model=gpt-image-1-mini&amp;size=1024x1024&amp;quality=low&amp;n=1\""))
            #expect(html.contains("/api/v1/images/\(imageID)/thumb"))
            #expect(!html.contains("data-empty>"), "no empty state")
            #expect(!html.contains("data-f=\"cancel\">"), "a finished task has no cancel button")

            let gallery = try await browser.get("/gallery")
            #expect(gallery.text.contains("id=\"image-\(imageID)\""))
            #expect(gallery.text.contains("<img src=\"/api/v1/images/\(imageID)/thumb\""))
            #expect(gallery.text.contains("loading=\"lazy\""))
            #expect(gallery.text.contains("data-download=\"/api/v1/images/\(imageID)/file?download=1\""))
            #expect(gallery.text.contains("data-reference=\"/create?ref=\(imageID)\""))
            #expect(!gallery.text.contains("data-empty>"), "no empty state")

            let credits = try await browser.get("/credits")
            #expect(credits.text.contains("<strong id=\"balance\">49</strong>"))
            #expect(credits.text.contains("Held"))
            #expect(credits.text.contains("\u{2212}1"))
            #expect(credits.text.contains("href=\"/activity?before=\(taskID + 1)#task-\(taskID)\""))
            #expect(try await services.database.creditBalance(userID: user.id!) == 49)

            // Someone else's page never shows it.
            let (other, _) = try await self.signedIn(services, client, email: "cy@example.org")
            #expect(!(try await other.get("/gallery")).text.contains("id=\"image-\(imageID)\""))
            #expect(!(try await other.get("/activity")).text.contains("id=\"task-\(taskID)\""))
        }
    }

    @Test("Admins can see everyone's tasks, failures first; members cannot")
    func everyone() async throws {
        // Slow enough that a task is still unfinished when the test fails it.
        try await withTestApp(["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "60000"]) { services, client in
            let (admin, _) = try await self.signedIn(services, client, email: "admin@example.org")
            let (member, _) = try await self.signedIn(services, client, email: "bo@example.org")
            let task = try await self.generate(member, token: try self.pageToken(try await member.get("/create")), prompt: "A member's lighthouse", waitUntilFinished: false)
            let taskID = try #require(task["id"] as? Int)
            let failing = try await self.generate(member, token: try self.pageToken(try await member.get("/create")), prompt: "A member's storm", waitUntilFinished: false)
            let failedID = try #require(failing["id"] as? Int)
            _ = try #require(try await services.database.failGenerationTask(taskID: Int64(failedID), code: "provider_down", message: "The image service is down."))

            let mine = try await admin.get("/activity")
            #expect(mine.text.contains("class=\"segmented\""))
            #expect(!mine.text.contains("id=\"task-\(taskID)\""))
            let all = try await admin.get("/activity?all=1")
            let html = all.text
            let failures = try #require(html.range(of: "<h2>Failures</h2>"))
            let tasks = try #require(html.range(of: "<h2>Everything else</h2>"))
            #expect(failures.lowerBound < tasks.lowerBound)
            // The failed task is listed once, among the failures, and every card says whose it is.
            #expect(html.components(separatedBy: "id=\"task-\(failedID)\"").count == 2)
            let failedCard = try #require(html.range(of: "id=\"task-\(failedID)\""))
            #expect(failedCard.lowerBound < tasks.lowerBound)
            let card = try #require(html.range(of: "id=\"task-\(taskID)\""))
            #expect(card.lowerBound > tasks.lowerBound)
            #expect(html.components(separatedBy: "data-f=\"owner\">bo@example.org</p>").count == 3)
            #expect(html.contains("The image service is down."))
            #expect(html.contains("data-api=\"/api/v1/generations?all=1&amp;status=failed&amp;limit=30\""))
            #expect(html.contains("data-api=\"/api/v1/generations?all=1&amp;exclude_status=failed&amp;limit=30\""))

            // The feeds' next pages through the API: the same split, with the owner's address.
            let others = try JSONSerialization.jsonObject(with: Data((try await admin.get("/api/v1/generations?all=1&exclude_status=failed")).text.utf8)) as? [String: Any]
            let rows = try #require(others?["tasks"] as? [[String: Any]])
            #expect(rows.map { $0["id"] as? Int } == [taskID])
            #expect(rows.first?["owner_email"] as? String == "bo@example.org")
            let own = try JSONSerialization.jsonObject(with: Data((try await member.get("/api/v1/generations")).text.utf8)) as? [String: Any]
            #expect((own?["tasks"] as? [[String: Any]])?.allSatisfy { $0["owner_email"] == nil } == true)

            let refused = try await member.get("/activity?all=1")
            #expect(refused.status == .ok)
            #expect(!refused.text.contains("class=\"segmented\""))
            #expect(!refused.text.contains("<h2>Failures</h2>"))
        }
    }

    // MARK: Create

    @Test("Query parameters prefill the Create form (run again, remix, use as reference); unknown values fall back")
    func prefill() async throws {
        try await withTestApp(Self.settings) { services, client in
            let (browser, _) = try await self.signedIn(services, client, email: "ada@example.org")
            let page = try await browser.get("/create?prompt=Two%20cats%20%26%20a%20dog&model=gpt-image-1-mini&size=1536x1024&quality=high&n=2&ref=7&ref=9")
            let html = page.text
            #expect(html.contains(">Two cats &amp; a dog</textarea>"))
            #expect(html.contains("<option value=\"gpt-image-1-mini\" selected>"))
            #expect(html.contains("<option value=\"1536x1024\" selected>1536×1024</option>"))
            #expect(html.contains("<option value=\"high\" selected>High</option>"))
            #expect(html.contains("<option value=\"2\" selected>2</option>"))
            #expect(html.contains("data-refs=\"7,9\""))
            // mini, high, 3:2 (medium class) is 6 per image; two references at 1 each.
            #expect(html.contains("14 credits · balance 50"))

            let odd = try await browser.get("/create?model=nonsense&size=9x9&n=99&ref=abc")
            #expect(odd.text.contains("<option value=\"gpt-image-2\" selected>"))
            #expect(odd.text.contains("<option value=\"1\" selected>1</option>"))
            #expect(odd.text.contains("data-refs=\"\""))
        }
    }

    @Test("An unaffordable request renders with the button disabled and the reason in words")
    func unaffordable() async throws {
        try await withTestApp(Self.settings.merging(["EASEL_SIGNUP_CREDITS": "3"]) { _, new in new }) { services, client in
            let (browser, _) = try await self.signedIn(services, client, email: "ada@example.org")
            let html = try await browser.get("/create?quality=high&n=4").text
            #expect(html.contains("id=\"create-submit\" type=\"submit\" disabled"))
            #expect(html.contains("Not enough credits: this costs 64 and your balance is 3."))
        }
    }

    @Test("Without JavaScript the form still creates (and an empty prompt is refused in words); a task can be canceled")
    func formWithoutScript() async throws {
        try await withTestApp(Self.settings.merging(["EASEL_DEMO_LATENCY_MS": "3000"]) { _, new in new }) { services, client in
            let (browser, user) = try await self.signedIn(services, client, email: "ada@example.org")
            let token = try self.pageToken(try await browser.get("/create"))
            let empty = try await browser.post("/create", ["prompt": "  ", "model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": "1"], csrf: token)
            #expect(empty.status == .unprocessableContent)
            #expect(empty.text.contains("Write a prompt"))

            let made = try await browser.post(
                "/create", ["prompt": "A slow picture", "model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": "1", "idempotency_key": "form-1"], csrf: token
            )
            #expect(made.status == .seeOther)
            let location = try #require(made.headers[.location])
            #expect(location.hasPrefix("/activity?notice=submitted#task-"))
            let taskID = try #require(Int64(location.split(separator: "-").last ?? ""))
            // The same page submitted twice is one task.
            let again = try await browser.post(
                "/create", ["prompt": "A slow picture", "model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": "1", "idempotency_key": "form-1"], csrf: token
            )
            #expect(again.headers[.location] == location)

            let activity = try await browser.get("/activity?notice=submitted")
            #expect(activity.text.contains("Your images are on the way."))
            #expect(activity.text.contains("action=\"/activity/\(taskID)/cancel\""))
            let canceled = try await browser.post("/activity/\(taskID)/cancel", [:], csrf: token)
            #expect(canceled.status == .seeOther)
            #expect(try await services.database.generationTask(id: taskID)?.status == .canceled)
            #expect(try await services.database.creditBalance(userID: user.id!) == 50)
            let after = try await browser.get("/activity")
            #expect(after.text.contains(">Canceled</span>"))
        }
    }

    @Test("Without image generation the studio pages are not served")
    func withoutGeneration() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try AppDatabase.inMemory()
        let localizer = try Localizer.embedded()
        let publicURL = URL(string: "http://localhost:8080")!
        let signer = BlobURLSigner(baseURL: publicURL, secret: Data(repeating: 7, count: 32))
        let mails = AccountMails(siteName: "Easel", publicURL: publicURL, localizer: localizer)
        let router = buildRouter(
            WebDependencies(
                siteName: "Easel", assets: try AssetCatalog.embedded(), readinessChecks: [],
                blobs: try DiskBlobStore(root: folder.url, urlSigner: signer), blobURLSigner: signer, servesTLS: false,
                publicURL: publicURL, database: database,
                accounts: AccountService(settings: .init(), database: database, hasher: PasswordHasher(cost: 4), mails: mails, logger: Logger(label: "test")),
                twoFactor: TwoFactorService(database: database, mails: mails, issuer: "Easel", secrets: DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))),
                secretKey: String(repeating: "s", count: 40), mailTransport: "log", localizer: localizer, mailQueued: {}
            )
        )
        try await Application(router: router).test(.router) { client in
            for path in Self.pages {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .notFound, "\(path)")
            }
        }
    }

    // MARK: Words

    @Test("Every word the studio pages use exists in English, Simplified Chinese and Spanish")
    func catalogs() throws {
        let catalogs = try Localizer.embedded().catalogs
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var keys: Set<String> = []
        for name in ["create", "activity", "gallery", "credits", "task-card", "studio-text", "layout", "home"] {
            let text = try String(contentsOf: root.appending(path: "templates/\(name).mustache"), encoding: .utf8)
            keys.formUnion(text.matches(of: /layout\.t\.([a-z0-9_.]+)/).map { String($0.1) })
        }
        // Keys the controller builds from values.
        keys.formUnion(GenerationTask.Status.allCases.map { "studio.status_\($0.rawValue)" })
        keys.formUnion(LedgerEntry.Kind.allCases.map { "credits.kind_\($0.rawValue)" })
        keys.formUnion(["low", "medium", "high", "auto"].map { "studio.quality_\($0)" })
        keys.formUnion([
            "create.title", "create.references_hint", "create.price_one", "create.price_other", "create.unaffordable", "create.insufficient",
            "activity.title", "activity.failures", "activity.all_tasks", "activity.other_tasks", "activity.empty", "activity.empty_everyone", "activity.empty_filtered",
            "activity.no_failures", "activity.notice_submitted", "activity.notice_canceled", "activity.error_no_task", "studio.wait",
            "studio.credits_reserved", "studio.credits_charged", "studio.images_one", "studio.images_other", "studio.took", "studio.size_auto",
            "gallery.title", "gallery.empty", "gallery.empty_more", "credits.title", "credits.unit_one", "credits.unit_other", "credits.empty",
        ])
        #expect(keys.count > 100)
        for language in Language.allCases {
            let catalog = try #require(catalogs[language])
            let missing = keys.filter { catalog[$0] == nil }.sorted()
            #expect(missing == [], "\(language.rawValue) lacks \(missing)")
        }
    }
}
