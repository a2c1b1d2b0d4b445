import Foundation
import GRDB

/// One request as the request log keeps it (`request_log`).
public struct RequestLogEntry: Sendable, Equatable {
    public var at: Date
    /// The /24 or /48 network of the client ("203.0.113.0"), never its address.
    public var network: String
    public var method: String
    /// Without the query string.
    public var path: String
    public var status: Int
    public var durationMS: Double
    public var userAgent: String
    public var referrerHost: String?

    public init(at: Date, network: String, method: String, path: String, status: Int, durationMS: Double, userAgent: String, referrerHost: String?) {
        self.at = at
        self.network = network
        self.method = method
        self.path = path
        self.status = status
        self.durationMS = durationMS
        self.userAgent = userAgent
        self.referrerHost = referrerHost
    }
}

/// One counted page view (`page_view`).
public struct PageViewEntry: Sendable, Equatable {
    public enum Device: String, Sendable, CaseIterable { case desktop, mobile, tablet }

    public var at: Date
    public var path: String
    /// SHA-256(daily salt ‖ network ‖ user agent).
    public var visitor: Data
    public var referrerHost: String?
    public var country: String?
    public var region: String?
    public var device: Device
    public var os: String?
    public var browser: String?
    public var screen: String?
    public var beaconToken: String?

    public init(
        at: Date, path: String, visitor: Data, referrerHost: String?, country: String?, region: String?, device: Device, os: String?,
        browser: String?, screen: String? = nil, beaconToken: String? = nil
    ) {
        self.at = at
        self.path = path
        self.visitor = visitor
        self.referrerHost = referrerHost
        self.country = country
        self.region = region
        self.device = device
        self.os = os
        self.browser = browser
        self.screen = screen
        self.beaconToken = beaconToken
    }
}

/// "2026-11-28" for a date, in UTC: the day analytics group by.
public enum UTCDay {
    public static func string(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    /// The day `days` before (negative: after) the day of `date`.
    public static func string(_ date: Date, minusDays days: Int) -> String {
        self.string(date.addingTimeInterval(-Double(days) * 86400))
    }
}

/// Page views and visitors of one day, from raw rows or from the daily roll-up.
public struct DailyTraffic: Sendable, Equatable {
    public var day: String
    public var pageViews: Int
    public var visitors: Int
}

/// The most frequent values of each dimension over a period, most first.
public struct TrafficTop: Sendable, Equatable, Codable {
    public var pages: [String: Int] = [:]
    public var referrers: [String: Int] = [:]
    public var countries: [String: Int] = [:]
    public var devices: [String: Int] = [:]
    public var screens: [String: Int] = [:]

    public init() {}

    mutating func add(_ other: TrafficTop) {
        self.pages.merge(other.pages, uniquingKeysWith: +)
        self.referrers.merge(other.referrers, uniquingKeysWith: +)
        self.countries.merge(other.countries, uniquingKeysWith: +)
        self.devices.merge(other.devices, uniquingKeysWith: +)
        self.screens.merge(other.screens, uniquingKeysWith: +)
    }

    /// Keeps the `limit` largest of each, so a roll-up stays small.
    func trimmed(to limit: Int) -> TrafficTop {
        func top(_ values: [String: Int]) -> [String: Int] {
            Dictionary(
                uniqueKeysWithValues: values.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(limit).map {
                    ($0.key, $0.value)
                })
        }
        var trimmed = TrafficTop()
        trimmed.pages = top(self.pages)
        trimmed.referrers = top(self.referrers)
        trimmed.countries = top(self.countries)
        trimmed.devices = top(self.devices)
        trimmed.screens = top(self.screens)
        return trimmed
    }
}

/// The product's own figures for one day, derived from accounts and tasks when asked (so
/// they are exact, and a purged person's tasks leave the figures with them).
public struct DailyProduct: Sendable, Equatable {
    public var day: String
    public var signUps = 0
    public var generations = 0
    public var succeeded = 0
    public var failed = 0
    public var creditsSpent = 0
    /// Seconds from submit to result of the day's successful tasks; nil without any.
    public var p50Seconds: Double?
    public var p95Seconds: Double?
}

/// The product's figures per day, and the generation times over the whole period.
public struct ProductFigures: Sendable, Equatable {
    public var days: [DailyProduct]
    public var p50Seconds: Double?
    public var p95Seconds: Double?
}

/// Requests of one day, from the raw log or from its roll-up.
public struct DailyRequests: Sendable, Equatable {
    public var day: String
    public var requests: Int
    public var status2xx: Int
    public var status3xx: Int
    public var status4xx: Int
    public var status5xx: Int
    public var p50MS: Double
    public var p95MS: Double
    public var topPaths: [String: Int]
}

/// The value at fraction `q` of sorted `values` (nearest rank); nil when empty.
public func percentile(_ sorted: [Double], _ q: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((q * Double(sorted.count)).rounded(.up))
    return sorted[min(sorted.count - 1, max(0, rank - 1))]
}

extension AppDatabase {
    /// Writes a batch of buffered requests and page views, and the screen sizes beacons
    /// reported, in one transaction.
    public func recordTraffic(requests: [RequestLogEntry], views: [PageViewEntry], screens: [(token: String, bucket: String)] = []) async throws {
        guard !requests.isEmpty || !views.isEmpty || !screens.isEmpty else { return }
        try await self.writer.write { db in
            let logRequest = try db.makeStatement(
                sql: """
                    INSERT INTO request_log (at, day, network, method, path, status, duration_ms, user_agent, referrer_host)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            )
            for entry in requests {
                try logRequest.execute(arguments: [
                    entry.at, UTCDay.string(entry.at), entry.network, entry.method, entry.path, entry.status, entry.durationMS,
                    entry.userAgent, entry.referrerHost,
                ])
            }
            let countView = try db.makeStatement(
                sql: """
                    INSERT INTO page_view (at, day, path, visitor, referrer_host, country, region, device, os, browser, screen, beacon_token)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            )
            for view in views {
                try countView.execute(arguments: [
                    view.at, UTCDay.string(view.at), view.path, view.visitor, view.referrerHost, view.country, view.region,
                    view.device.rawValue, view.os, view.browser, view.screen, view.beaconToken,
                ])
            }
            for screen in screens {
                try db.execute(
                    sql: "UPDATE page_view SET screen = ?, beacon_token = NULL WHERE beacon_token = ? AND screen IS NULL",
                    arguments: [screen.bucket, screen.token]
                )
            }
        }
    }

    /// Whether the person asked not to have their visits counted.
    public func analyticsOptOut(userID: Int64) async throws -> Bool {
        try await self.writer.read { db in
            try Bool.fetchOne(db, sql: "SELECT analytics_opt_out FROM user WHERE id = ?", arguments: [userID]) ?? false
        }
    }

    /// Records the person's analytics choice, and that they made it (the data request log).
    public func setAnalyticsOptOut(userID: Int64, _ optOut: Bool, now: Date = Date()) async throws {
        try await self.writer.write { db in
            let current = try Bool.fetchOne(db, sql: "SELECT analytics_opt_out FROM user WHERE id = ?", arguments: [userID])
            guard let current, current != optOut else { return }
            try db.execute(sql: "UPDATE user SET analytics_opt_out = ?, updated_at = ? WHERE id = ?", arguments: [optOut, now, userID])
            try db.execute(
                sql: "INSERT INTO data_request (user_id, kind, outcome, created_at) VALUES (?, ?, 'completed', ?)",
                arguments: [userID, optOut ? "analytics_opt_out" : "analytics_opt_in", now]
            )
        }
    }

    /// Rolls the request log of every day before `day` into `request_log_daily` (counts by
    /// status class, p50/p95 duration, top paths), then deletes those rows. Returns the
    /// number of rows deleted.
    @discardableResult
    public func rollUpRequestLog(before day: String) async throws -> Int {
        try await self.writer.write { db in
            let days = try String.fetchAll(db, sql: "SELECT DISTINCT day FROM request_log WHERE day < ? ORDER BY day", arguments: [day])
            for rolled in days {
                let summary = try Self.requestSummary(db, day: rolled)
                let top = String(decoding: try JSONEncoder().encode(summary.topPaths), as: UTF8.self)
                // A day rolled up before (rows logged late) adds to its counts.
                try db.execute(
                    sql: """
                        INSERT INTO request_log_daily (day, requests, status_2xx, status_3xx, status_4xx, status_5xx, p50_ms, p95_ms, top_paths)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT(day) DO UPDATE SET requests = requests + excluded.requests,
                            status_2xx = status_2xx + excluded.status_2xx, status_3xx = status_3xx + excluded.status_3xx,
                            status_4xx = status_4xx + excluded.status_4xx, status_5xx = status_5xx + excluded.status_5xx
                        """,
                    arguments: [
                        rolled, summary.requests, summary.status2xx, summary.status3xx, summary.status4xx, summary.status5xx, summary.p50MS,
                        summary.p95MS, top,
                    ]
                )
            }
            try db.execute(sql: "DELETE FROM request_log WHERE day < ?", arguments: [day])
            return db.changesCount
        }
    }

    /// Rolls the page views of every day before `day` into `page_view_daily` (views, visitors,
    /// top pages, referrers, countries, devices and screens), then deletes them. Also forgets
    /// beacon tokens older than an hour. Returns the number of page views deleted.
    @discardableResult
    public func rollUpPageViews(before day: String, now: Date = Date()) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(
                sql: "UPDATE page_view SET beacon_token = NULL WHERE beacon_token IS NOT NULL AND at < ?", arguments: [now.addingTimeInterval(-3600)])
            let days = try String.fetchAll(db, sql: "SELECT DISTINCT day FROM page_view WHERE day < ? ORDER BY day", arguments: [day])
            for rolled in days {
                let totals = try Row.fetchOne(
                    db, sql: "SELECT COUNT(*) AS views, COUNT(DISTINCT visitor) AS visitors FROM page_view WHERE day = ?", arguments: [rolled]
                )!
                let top = try Self.trafficTop(db, since: rolled, until: rolled).trimmed(to: 50)
                try db.execute(
                    sql: """
                        INSERT INTO page_view_daily (day, page_views, visitors, top) VALUES (?, ?, ?, ?)
                        ON CONFLICT(day) DO UPDATE SET page_views = page_views + excluded.page_views, visitors = visitors + excluded.visitors
                        """,
                    arguments: [
                        rolled, totals["views"] as Int, totals["visitors"] as Int, String(decoding: try JSONEncoder().encode(top), as: UTF8.self),
                    ]
                )
            }
            try db.execute(sql: "DELETE FROM page_view WHERE day < ?", arguments: [day])
            return db.changesCount
        }
    }

    /// Page views and visitors per day from `since` on: raw rows where they are still kept,
    /// the roll-up for older days.
    public func dailyTraffic(since day: String) async throws -> [DailyTraffic] {
        try await self.writer.read { db in
            var byDay: [String: DailyTraffic] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT day, page_views, visitors FROM page_view_daily WHERE day >= ?", arguments: [day]) {
                byDay[row["day"]] = DailyTraffic(day: row["day"], pageViews: row["page_views"], visitors: row["visitors"])
            }
            let raw = try Row.fetchAll(
                db, sql: "SELECT day, COUNT(*) AS views, COUNT(DISTINCT visitor) AS visitors FROM page_view WHERE day >= ? GROUP BY day",
                arguments: [day]
            )
            for row in raw {
                let rolled = byDay[row["day"]]
                byDay[row["day"]] = DailyTraffic(
                    day: row["day"], pageViews: (rolled?.pageViews ?? 0) + row["views"], visitors: (rolled?.visitors ?? 0) + row["visitors"]
                )
            }
            return byDay.values.sorted { $0.day < $1.day }
        }
    }

    /// Top pages, referrer hosts, countries, devices and screens from `since` on.
    public func trafficTop(since day: String) async throws -> TrafficTop {
        try await self.writer.read { db in
            var top = try Self.trafficTop(db, since: day, until: nil)
            for json in try String.fetchAll(db, sql: "SELECT top FROM page_view_daily WHERE day >= ?", arguments: [day]) {
                if let rolled = try? JSONDecoder().decode(TrafficTop.self, from: Data(json.utf8)) { top.add(rolled) }
            }
            return top
        }
    }

    static func trafficTop(_ db: Database, since: String, until: String?) throws -> TrafficTop {
        let range = until == nil ? "day >= ?" : "day BETWEEN ? AND ?"
        let arguments: StatementArguments = until.map { [since, $0] } ?? [since]
        func counts(_ expression: String) throws -> [String: Int] {
            let rows = try Row.fetchAll(
                db, sql: "SELECT \(expression) AS value, COUNT(*) AS n FROM page_view WHERE \(range) AND \(expression) IS NOT NULL GROUP BY value",
                arguments: arguments
            )
            return Dictionary(rows.map { ($0["value"] as String, $0["n"] as Int) }, uniquingKeysWith: +)
        }
        var top = TrafficTop()
        top.pages = try counts("path")
        top.referrers = try counts("referrer_host")
        top.countries = try counts("country")
        top.devices = try counts("device || COALESCE(' · ' || os, '')")
        top.screens = try counts("screen")
        return top
    }

    /// Sign-ups, generations, their outcomes and times, and credits spent per day from `since`.
    public func productFigures(since: Date) async throws -> ProductFigures {
        try await self.writer.read { db in
            var byDay: [String: DailyProduct] = [:]
            func update(_ day: String, _ change: (inout DailyProduct) -> Void) {
                var figures = byDay[day] ?? DailyProduct(day: day)
                change(&figures)
                byDay[day] = figures
            }
            let start = UTCDay.string(since)
            for row in try Row.fetchAll(
                db, sql: "SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS n FROM user WHERE created_at >= ? GROUP BY day", arguments: [start])
            {
                update(row["day"]) { $0.signUps = row["n"] }
            }
            let tasks = try Row.fetchAll(
                db,
                sql: """
                    SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS n,
                        SUM(status = 'succeeded') AS succeeded, SUM(status = 'failed') AS failed, SUM(credits_charged) AS credits
                    FROM generation_task WHERE created_at >= ? GROUP BY day
                    """,
                arguments: [start]
            )
            for row in tasks {
                update(row["day"]) {
                    $0.generations = row["n"]
                    $0.succeeded = row["succeeded"] ?? 0
                    $0.failed = row["failed"] ?? 0
                    $0.creditsSpent = row["credits"] ?? 0
                }
            }
            var durations: [String: [Double]] = [:]
            let finished = try Row.fetchAll(
                db,
                sql: """
                    SELECT substr(created_at, 1, 10) AS day, (julianday(finished_at) - julianday(created_at)) * 86400.0 AS seconds
                    FROM generation_task WHERE status = 'succeeded' AND created_at >= ?
                    """,
                arguments: [start]
            )
            for row in finished { durations[row["day"], default: []].append(max(0, row["seconds"] as Double)) }
            for (day, values) in durations {
                let sorted = values.sorted()
                update(day) {
                    $0.p50Seconds = percentile(sorted, 0.5)
                    $0.p95Seconds = percentile(sorted, 0.95)
                }
            }
            let all = durations.values.flatMap { $0 }.sorted()
            return ProductFigures(days: byDay.values.sorted { $0.day < $1.day }, p50Seconds: percentile(all, 0.5), p95Seconds: percentile(all, 0.95))
        }
    }

    /// Requests per day from `since` on: the raw log where kept, the roll-up before.
    public func dailyRequests(since day: String) async throws -> [DailyRequests] {
        try await self.writer.read { db in
            var result: [String: DailyRequests] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM request_log_daily WHERE day >= ?", arguments: [day]) {
                let top = (try? JSONDecoder().decode([String: Int].self, from: Data((row["top_paths"] as String).utf8))) ?? [:]
                result[row["day"]] = DailyRequests(
                    day: row["day"], requests: row["requests"], status2xx: row["status_2xx"], status3xx: row["status_3xx"],
                    status4xx: row["status_4xx"], status5xx: row["status_5xx"], p50MS: row["p50_ms"], p95MS: row["p95_ms"], topPaths: top
                )
            }
            for raw in try String.fetchAll(db, sql: "SELECT DISTINCT day FROM request_log WHERE day >= ?", arguments: [day]) where result[raw] == nil
            {
                result[raw] = try Self.requestSummary(db, day: raw)
            }
            return result.values.sorted { $0.day < $1.day }
        }
    }

    static func requestSummary(_ db: Database, day: String) throws -> DailyRequests {
        let counts = try Row.fetchOne(
            db,
            sql: """
                SELECT COUNT(*) AS n, SUM(status BETWEEN 200 AND 299) AS s2, SUM(status BETWEEN 300 AND 399) AS s3,
                    SUM(status BETWEEN 400 AND 499) AS s4, SUM(status >= 500) AS s5
                FROM request_log WHERE day = ?
                """,
            arguments: [day]
        )!
        let total: Int = counts["n"]
        // Nearest rank through the (day, duration_ms) index, without loading the day.
        func rank(_ q: Double) throws -> Double {
            guard total > 0 else { return 0 }
            let offset = max(0, Int((q * Double(total)).rounded(.up)) - 1)
            return try Double.fetchOne(
                db, sql: "SELECT duration_ms FROM request_log WHERE day = ? ORDER BY duration_ms LIMIT 1 OFFSET ?", arguments: [day, offset]
            ) ?? 0
        }
        let paths = try Row.fetchAll(
            db, sql: "SELECT path, COUNT(*) AS n FROM request_log WHERE day = ? GROUP BY path ORDER BY n DESC, path LIMIT 20", arguments: [day]
        )
        return DailyRequests(
            day: day, requests: total, status2xx: counts["s2"] ?? 0, status3xx: counts["s3"] ?? 0, status4xx: counts["s4"] ?? 0,
            status5xx: counts["s5"] ?? 0, p50MS: try rank(0.5), p95MS: try rank(0.95),
            topPaths: Dictionary(paths.map { ($0["path"] as String, $0["n"] as Int) }, uniquingKeysWith: +)
        )
    }
}
