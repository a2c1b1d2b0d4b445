import EaselApp
import EaselCore
import EaselStore
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@Suite("Analytics, cookie choices and request logs")
struct AnalyticsTests {
    static let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    static let iPhone =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    static let on = ["EASEL_ANALYTICS": "on"]

    static func browserHeaders(_ extra: HTTPFields = [:]) -> HTTPFields {
        var headers: HTTPFields = [.userAgent: Self.firefox]
        headers.append(contentsOf: extra)
        return headers
    }

    static func count(_ services: AppServices, _ table: String) async throws -> Int {
        await services.traffic.flush()
        return try await services.database.writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0 }
    }

    static func adminBrowser(_ services: AppServices, _ client: any TestClientProtocol) async throws -> (Browser, String) {
        let (admin, _) = try await services.accounts.createAdmin(email: "ada@example.org", password: "correct horse battery")
        let browser = Browser(client)
        try await browser.get("/signin")
        #expect(try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"]).status == .seeOther)
        let token = try #require(try await services.database.sessions(userID: admin.id!).first?.csrfToken)
        return (browser, token)
    }

    // MARK: Addresses

    @Test(
        "Addresses are cut to their /24 or /48 network; anything unreadable becomes \"unknown\"",
        arguments: [
            ("203.0.113.9", "203.0.113.0"),
            ("2001:db8:1234:5678::9", "2001:db8:1234::"),
            ("[2001:DB8:AB:CD:EF::1]", "2001:db8:ab::"),
            ("::ffff:198.51.100.77", "198.51.100.0"),
            ("fe80::1%eth0", "fe80::"),
            ("not-an-ip", "unknown"),
            ("203.0.113.9<script>", "unknown"),
            ("", "unknown"),
        ])
    func truncation(address: String, network: String) {
        #expect(ClientNetwork.truncate(address) == network)
    }

    @Test("No analytics or log table ever holds a full IP address, from IPv4 or IPv6 clients behind a trusted proxy")
    func noFullAddresses() async throws {
        let settings = Self.on.merging(["EASEL_TRUSTED_PROXIES": "127.0.0.1"]) { _, new in new }
        try await withTestApp(settings, testing: .live) { services, client in
            let clients = ["203.0.113.9", "2001:db8:1234:5678::9"]
            for address in clients {
                let browser = Browser(client)
                let headers = Self.browserHeaders([
                    HTTPField.Name("X-Forwarded-For")!: address, .referer: "https://news.example.com/story?id=\(address)",
                ])
                #expect(try await browser.get("/", headers: headers).status == .ok)
                #expect(try await browser.get("/signin?next=/\(address)", headers: headers).status == .ok)
                _ = try await browser.get("/no-such-page", headers: headers)
            }
            #expect(try await Self.count(services, "page_view") == 4, "the pages were counted, so there was something to leak")
            #expect(try await Self.count(services, "request_log") >= 6)

            func scan() async throws -> [String] {
                try await services.database.writer.read { db in
                    var texts: [String] = []
                    for table in ["page_view", "page_view_daily", "request_log", "request_log_daily"] {
                        for column in try db.columns(in: table) {
                            texts += try String.fetchAll(
                                db, sql: "SELECT CAST(\(column.name) AS TEXT) FROM \(table) WHERE \(column.name) IS NOT NULL")
                        }
                    }
                    return texts
                }
            }
            var texts = try await scan()
            let networks = try await services.database.writer.read { db in try Set(String.fetchAll(db, sql: "SELECT network FROM request_log")) }
            #expect(networks == ["203.0.113.0", "2001:db8:1234::"])
            #expect(texts.contains("news.example.com"), "the referrer host is kept")
            // Rolled up, the daily tables must be as clean as the raw ones.
            try await MaintenanceJobs.applyTrafficRetention(
                database: services.database, logDays: 0, analyticsDays: 0, now: Date().addingTimeInterval(86400))
            texts += try await scan()
            #expect(try await Self.count(services, "request_log_daily") == 1)
            for address in clients + ["2001:db8:1234:5678", "story?id"] {
                #expect(!texts.contains { $0.contains(address) }, "\(address) is stored somewhere")
            }
        }
    }

    // MARK: Opting out

    @Test("Global Privacy Control, Do Not Track, the cookie choice and the profile setting each stop the counting")
    func optOuts() async throws {
        try await withTestApp(Self.on) { services, client in
            let visitor = Browser(client)
            try await visitor.get("/", headers: Self.browserHeaders())
            #expect(try await Self.count(services, "page_view") == 1)
            try await visitor.get("/", headers: Self.browserHeaders([HTTPField.Name("Sec-GPC")!: "1"]))
            try await visitor.get("/", headers: Self.browserHeaders([HTTPField.Name("DNT")!: "1"]))
            try await visitor.get("/", headers: [.userAgent: "Googlebot/2.1 (+http://www.google.com/bot.html)"])
            #expect(try await Self.count(services, "page_view") == 1, "GPC, DNT and robots are not counted")
            try await visitor.get("/", headers: Self.browserHeaders([HTTPField.Name("DNT")!: "0"]))
            #expect(try await Self.count(services, "page_view") == 2, "DNT: 0 is no objection")

            #expect(try await visitor.post("/cookies", ["choice": "decline"]).status == .seeOther)
            #expect(visitor.cookies["easel_consent"] == "analytics=no&preferences=no")
            try await visitor.get("/", headers: Self.browserHeaders())
            #expect(try await Self.count(services, "page_view") == 2, "a declined visitor is not counted")

            let (member, user) = try await APITests().signedIn(services, client, email: "bob@example.org")
            try await member.get("/account", headers: Self.browserHeaders())
            #expect(try await Self.count(services, "page_view") == 3)
            let token = try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
            let saved = try await member.post("/account/analytics", [:], csrf: token)
            #expect(saved.status == .seeOther)
            #expect(try await services.database.analyticsOptOut(userID: user.id!))
            try await member.get("/account", headers: Self.browserHeaders())
            try await member.get("/cookies", headers: Self.browserHeaders())
            #expect(try await Self.count(services, "page_view") == 3, "the profile's opt-out holds")
            let logged = try await services.database.writer.read { db in
                try String.fetchAll(db, sql: "SELECT kind FROM data_request WHERE user_id = ?", arguments: [user.id!])
            }
            #expect(logged.contains("analytics_opt_out"), "the objection is in the log of data requests")
            _ = try await member.post("/account/analytics", ["counted": "on"], csrf: token)
            try await member.get("/account", headers: Self.browserHeaders())
            #expect(try await Self.count(services, "page_view") == 4, "and can be lifted")
        }
    }

    @Test("With analytics off nothing is counted and no banner shows, but the request log is kept")
    func off() async throws {
        try await withTestApp { services, client in
            let page = try await Browser(client).get("/", headers: Self.browserHeaders())
            #expect(!page.text.contains("consent-banner"))
            #expect(page.text.contains("href=\"/cookies\""), "the choices stay reachable from the footer")
            #expect(try await Self.count(services, "page_view") == 0)
            #expect(try await Self.count(services, "request_log") == 1)
        }
    }

    // MARK: Banner and beacon

    @Test("The banner shows only while analytics are on and no choice was made; accepting hands out a beacon token")
    func banner() async throws {
        try await withTestApp(Self.on) { services, client in
            let visitor = Browser(client)
            let first = try await visitor.get("/", headers: Self.browserHeaders())
            #expect(first.text.contains("class=\"consent-banner\""))
            #expect(first.text.contains("value=\"decline\"") && first.text.contains("value=\"accept\""), "both answers, without a script")
            #expect(!first.text.contains("easel-beacon"), "no beacon before consent")
            let choices = try await visitor.get("/cookies", headers: Self.browserHeaders())
            #expect(!choices.text.contains("class=\"consent-banner\""), "the choices page is the banner's long form")
            #expect(
                !choices.text.contains("name=\"analytics\" checked") && !choices.text.contains("name=\"preferences\" checked"),
                "no box is ticked in advance")

            let accepted = try await visitor.post("/cookies", ["choice": "accept"], headers: [.referer: "http://localhost:8080/signin"])
            #expect(accepted.headers[.location] == "/signin")
            let after = try await visitor.get("/", headers: Self.browserHeaders())
            #expect(!after.text.contains("class=\"consent-banner\""))
            let token = try #require(after.text.firstMatch(of: /name="easel-beacon" content="([0-9a-f]{32})"/).map { String($0.1) })

            let beacon = try await visitor.post("/a/beacon", ["v": token, "w": "390"])
            #expect(beacon.status == .noContent)
            await services.traffic.flush()
            let screens = try await services.database.writer.read { db in
                try String.fetchAll(db, sql: "SELECT screen FROM page_view WHERE screen IS NOT NULL")
            }
            #expect(screens == ["< 576 px"])
            // A token works once.
            _ = try await visitor.post("/a/beacon", ["v": token, "w": "1920"])
            await services.traffic.flush()
            #expect(
                try await services.database.writer.read { db in try String.fetchAll(db, sql: "SELECT screen FROM page_view WHERE screen IS NOT NULL")
                } == ["< 576 px"])
        }
    }

    @Test(
        "The beacon accepts only small well-formed bodies",
        arguments: [
            ("v=0123456789abcdef0123456789abcdef&w=1280", HTTPResponse.Status.noContent),
            ("v=0123456789abcdef0123456789abcdef", .badRequest),
            ("v=0123456789ABCDEF0123456789ABCDEF&w=1280", .badRequest),
            ("v=0123456789abcdef0123456789abcdef&w=-5", .badRequest),
            ("v=0123456789abcdef0123456789abcdef&w=1280&x=1", .badRequest),
            ("v=0123456789abcdef0123456789abcdef&w=1280&w=1", .badRequest),
            ("{\"v\":\"x\"}", .badRequest),
            ("v=0123456789abcdef0123456789abcdef&w=1280&pad=" + String(repeating: "a", count: 600), .contentTooLarge),
        ])
    func beaconBodies(body: String, status: HTTPResponse.Status) async throws {
        try await withTestApp(Self.on) { _, client in
            let visitor = Browser(client)
            try await visitor.get("/", headers: Self.browserHeaders())
            let response = try await visitor.send(
                "/a/beacon", method: .post,
                headers: [
                    .contentType: "application/x-www-form-urlencoded;charset=UTF-8", .origin: "http://localhost:8080",
                    HTTPField.Name("X-CSRF-Token")!: visitor.csrf,
                ],
                body: ByteBuffer(string: body)
            )
            #expect(response.status == status)
        }
    }

    @Test("A beacon without the page's token is refused as cross-site")
    func beaconNeedsToken() async throws {
        try await withTestApp(Self.on) { _, client in
            let response = try await client.execute(
                uri: "/a/beacon", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: "v=0123456789abcdef0123456789abcdef&w=1280")
            )
            #expect(response.status == .forbidden)
        }
    }

    @Test("With every optional cookie declined, a person still signs in and creates an image")
    func declinedCookiesBreakNothing() async throws {
        try await withTestApp(Self.on.merging(["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "0"]) { _, new in new }) { services, client in
            let user = try await APITests().makeAccount(services, email: "ada@example.org")
            let browser = Browser(client)
            try await browser.get("/")
            let declined = try await browser.post("/cookies", ["choice": "decline"])
            #expect(declined.status == .seeOther)
            #expect(browser.cookies["easel_consent"] == "analytics=no&preferences=no")
            try await browser.get("/signin")
            let signedIn = try await browser.post("/signin", ["email": user.email, "password": "correct horse battery"])
            #expect(signedIn.status == .seeOther)
            let create = try await browser.get("/create")
            #expect(create.status == .ok)
            let made = try await browser.post(
                "/create", ["prompt": "A lighthouse", "model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": "1", "idempotency_key": "declined-1"],
                csrf: try APITests().formToken(create)
            )
            #expect(made.status == .seeOther)
            #expect(made.headers[.location]?.hasPrefix("/activity?notice=submitted") == true)
            #expect(try await services.database.generationTask(userID: user.id!, idempotencyKey: "declined-1") != nil)
        }
    }

    @Test("A chosen language is kept past the browser session only with consent to preference cookies; declining keeps it until the browser closes")
    func preferenceCookies() async throws {
        try await withTestApp(Self.on) { _, client in
            let visitor = Browser(client)
            try await visitor.get("/")
            let unasked = try await visitor.post("/preferences", ["language": "es", "theme": "dark"])
            #expect(unasked.headers[values: .setCookie].contains { $0.hasPrefix("easel_prefs=") && !$0.contains("Max-Age") }, "no choice made yet: a session cookie")
            _ = try await visitor.post("/cookies", ["choice": "save", "preferences": "on"])
            let remembered = try await visitor.post("/preferences", ["language": "es", "theme": "dark"])
            #expect(remembered.headers[values: .setCookie].contains { $0.hasPrefix("easel_prefs=") && $0.contains("Max-Age") })
            let declined = try await visitor.post("/cookies", ["choice": "save", "analytics": "on"])
            #expect(declined.headers[.location] == "/cookies?notice=saved")
            #expect(declined.headers[values: .setCookie].contains { $0.hasPrefix("easel_prefs=") && !$0.contains("Max-Age") })
            #expect(visitor.cookies["easel_consent"] == "analytics=yes&preferences=no")
            let again = try await visitor.post("/preferences", ["language": "en", "theme": "light"])
            #expect(again.headers[values: .setCookie].contains { $0.hasPrefix("easel_prefs=") && !$0.contains("Max-Age") })
            let page = try await visitor.get("/cookies")
            #expect(page.text.contains("name=\"analytics\" checked"))
            #expect(!page.text.contains("name=\"preferences\" checked"))
        }
    }

    // MARK: Salt

    @Test("Each UTC day gets a new salt and the previous one is gone for good")
    func dailySalt() async throws {
        let recorder = TrafficRecorder(
            settings: .init(logRequests: false, analytics: true), database: try AppDatabase.inMemory(), logger: Logger(label: "test")
        )
        let day1 = Date(timeIntervalSince1970: 1_795_000_000)
        let day2 = day1.addingTimeInterval(86400)
        let morning = try #require(await recorder.visitorHash(network: "203.0.113.0", userAgent: Self.firefox, at: day1))
        let evening = try #require(await recorder.visitorHash(network: "203.0.113.0", userAgent: Self.firefox, at: day1.addingTimeInterval(60)))
        #expect(morning == evening, "one visitor is one visitor all day")
        #expect(await recorder.visitorHash(network: "203.0.113.0", userAgent: Self.iPhone, at: day1) != morning)
        #expect(await recorder.saltDays == [UTCDay.string(day1)])
        let next = try #require(await recorder.visitorHash(network: "203.0.113.0", userAgent: Self.firefox, at: day2))
        #expect(next != morning, "the same visitor cannot be followed to the next day")
        #expect(await recorder.saltDays == [UTCDay.string(day2)], "yesterday's salt is forgotten")
        #expect(await recorder.visitorHash(network: "203.0.113.0", userAgent: Self.firefox, at: day1) == nil, "and cannot be made again")
    }

    // MARK: Retention

    @Test("Rows older than the windows are rolled up into daily totals, then deleted; the totals stay")
    func retention() async throws {
        let database = try AppDatabase.inMemory()
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        func request(_ daysAgo: Double, _ status: Int, _ ms: Double, _ path: String = "/") -> RequestLogEntry {
            RequestLogEntry(
                at: now.addingTimeInterval(-daysAgo * 86400), network: "203.0.113.0", method: "GET", path: path, status: status, durationMS: ms,
                userAgent: Self.firefox, referrerHost: nil
            )
        }
        func view(_ daysAgo: Double, _ visitor: UInt8, _ path: String) -> PageViewEntry {
            PageViewEntry(
                at: now.addingTimeInterval(-daysAgo * 86400), path: path, visitor: Data(repeating: visitor, count: 32),
                referrerHost: "news.example.com",
                country: "DE", region: nil, device: .mobile, os: "iOS", browser: "Safari"
            )
        }
        let old: [RequestLogEntry] = (1...20).map { (index: Int) -> RequestLogEntry in
            let status = index <= 18 ? 200 : 500
            return request(100, status, Double(index * 10), index % 2 == 0 ? "/" : "/pricing")
        }
        try await database.recordTraffic(
            requests: old + [request(95, 404, 3), request(10, 200, 5)],
            views: [view(100, 1, "/"), view(100, 1, "/pricing"), view(100, 2, "/"), view(40, 3, "/"), view(10, 4, "/")]
        )
        let oldDay = UTCDay.string(now, minusDays: 100)

        try await MaintenanceJobs.applyTrafficRetention(database: database, logDays: 90, analyticsDays: 30, now: now)
        let requestsLeft = try await database.writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM request_log") }
        #expect(requestsLeft == 1, "only the request from 10 days ago is still kept")
        let viewsLeft = try await database.writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM page_view") }
        #expect(viewsLeft == 1, "page views are kept 30 days here")

        let daily = try await database.dailyRequests(since: UTCDay.string(now, minusDays: 120))
        let rolled = try #require(daily.first { $0.day == oldDay })
        #expect(rolled.requests == 20)
        #expect(rolled.status2xx == 18 && rolled.status5xx == 2)
        #expect(rolled.p50MS == 100 && rolled.p95MS == 190)
        #expect(rolled.topPaths == ["/": 10, "/pricing": 10])
        #expect(daily.first { $0.day == UTCDay.string(now, minusDays: 95) }?.status4xx == 1)
        #expect(daily.count == 3, "two rolled-up days and one raw day")

        let traffic = try await database.dailyTraffic(since: UTCDay.string(now, minusDays: 120))
        #expect(traffic.first { $0.day == oldDay }?.pageViews == 3)
        #expect(traffic.first { $0.day == oldDay }?.visitors == 2)
        #expect(traffic.count == 3)
        let top = try await database.trafficTop(since: UTCDay.string(now, minusDays: 120))
        #expect(top.pages == ["/": 4, "/pricing": 1])
        #expect(top.countries == ["DE": 5])
        #expect(top.devices == ["mobile · iOS": 5])

        // Running again (the job is hourly) changes nothing.
        try await MaintenanceJobs.applyTrafficRetention(database: database, logDays: 90, analyticsDays: 30, now: now)
        #expect(try await database.dailyRequests(since: oldDay).first?.requests == 20)
        #expect(try await database.dailyTraffic(since: oldDay).first?.pageViews == 3)
    }

    @Test("Sign-ups, generations, success rate, p50/p95 time and credits spent are derived from accounts and tasks")
    func productFigures() async throws {
        let database = try AppDatabase.inMemory()
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let yesterday = now.addingTimeInterval(-86400)
        try await database.writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO user (email, age_confirmed_at, terms_version, terms_accepted_at, created_at, updated_at)
                    VALUES ('ada@example.org', ?1, '1', ?1, ?1, ?1)
                    """,
                arguments: [now]
            )
            let user = db.lastInsertedRowID
            func task(_ created: Date, seconds: Double, status: String, reserved: Int, charged: Int) throws {
                try db.execute(
                    sql: """
                        INSERT INTO generation_task (user_id, status, provider, model, prompt, size, quality, count, credits_reserved,
                            credits_charged, credits_refunded, next_attempt_at, created_at, updated_at, finished_at)
                        VALUES (?, ?, 'demo', 'gpt-image-2', 'a lighthouse', '1024x1024', 'medium', 1, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [user, status, reserved, charged, reserved - charged, created, created, created, created.addingTimeInterval(seconds)]
                )
            }
            try task(now, seconds: 10, status: "succeeded", reserved: 4, charged: 4)
            try task(now, seconds: 30, status: "succeeded", reserved: 2, charged: 2)
            try task(now, seconds: 5, status: "failed", reserved: 3, charged: 0)
            try task(yesterday, seconds: 20, status: "succeeded", reserved: 1, charged: 1)
        }
        let figures = try await database.productFigures(since: now.addingTimeInterval(-2 * 86400))
        let today = try #require(figures.days.first { $0.day == UTCDay.string(now) })
        #expect(today.signUps == 1)
        #expect(today.generations == 3 && today.succeeded == 2 && today.failed == 1)
        #expect(today.creditsSpent == 6, "what was charged, not what was reserved")
        #expect(abs((today.p50Seconds ?? 0) - 10) < 0.01 && abs((today.p95Seconds ?? 0) - 30) < 0.01)
        #expect(figures.days.count == 2)
        #expect(abs((figures.p50Seconds ?? 0) - 20) < 0.01, "over the whole period")
        #expect(abs((figures.p95Seconds ?? 0) - 30) < 0.01)
    }

    // MARK: Admin pages

    @Test("The dashboard draws its charts for an admin, each with its figures as a table, and refuses a member")
    func dashboard() async throws {
        try await withTestApp(Self.on) { services, client in
            let (admin, _) = try await Self.adminBrowser(services, client)
            try await admin.get("/", headers: Self.browserHeaders([.referer: "https://news.example.com/a/b?c"]))
            await services.traffic.flush()
            let page = try await admin.get("/admin/analytics")
            #expect(page.status == .ok)
            let charts = page.text.matches(of: /<svg class="chart"/).count
            #expect(charts == 8, "visitors, page views, sign-ups, generations, success rate, time, credits, requests")
            #expect(page.text.contains("news.example.com"))
            // Every chart is followed by its numbers as a table, one row per day, for screen readers.
            #expect(page.text.matches(of: /<details class="chart-figures">/).count == 8)
            let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
            #expect(page.text.contains("<tr><th scope=\"row\">\(today)</th><td>1</td></tr>"), "today's page view, in the page-views table")
            #expect(page.text.contains("<th scope=\"col\">p50</th><th scope=\"col\">p95</th>"), "the generation-time table has a column per line")
            #expect(!page.text.contains("<script>"), "no inline script")
            #expect(page.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)

            let (member, _) = try await APITests().signedIn(services, client, email: "bob@example.org")
            #expect(try await member.get("/admin/analytics").status == .forbidden)
            #expect(try await member.get("/admin/jobs").status == .forbidden)
        }
    }

    @Test("Admins see every job with its schedule and last runs, and can run one now")
    func jobs() async throws {
        try await withTestApp { services, client in
            let (admin, token) = try await Self.adminBrowser(services, client)
            let before = try await admin.get("/admin/jobs")
            #expect(before.status == .ok)
            for job in services.scheduler.jobs {
                #expect(before.text.contains("id=\"job-\(job.name)\""), "\(job.name) is listed")
            }
            let ran = try await admin.post("/admin/jobs/traffic-retention/run", [:], csrf: token)
            #expect(ran.headers[.location] == "/admin/jobs?ran=traffic-retention")
            let after = try await admin.get("/admin/jobs?ran=traffic-retention")
            #expect(after.text.contains("The job traffic-retention ran."))
            #expect(try await services.database.recentJobRuns(job: "traffic-retention").first?.outcome == .succeeded)
            #expect(try await admin.post("/admin/jobs/nothing/run", [:], csrf: token).status == .notFound)
        }
    }
}
