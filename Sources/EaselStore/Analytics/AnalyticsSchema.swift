import GRDB

extension AppDatabase {
    /// First-party analytics and request logs. No table here has a column for a full IP
    /// address: requests keep only the /24 (IPv4) or /48 (IPv6) network, page views keep none,
    /// only a visitor hash made with a salt that lives in memory for one UTC day. Raw rows are
    /// rolled up into one row per day and deleted after their retention window.
    static func createAnalyticsTables(_ db: Database) throws {
        // The person's own "do not count my visits" (Settings → Privacy, /cookies).
        try db.alter(table: "user") { t in
            t.add(column: "analytics_opt_out", .boolean).notNull().defaults(to: false)
        }

        try db.create(table: "page_view") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("at", .datetime).notNull()
            // The UTC day ("2026-11-28"), for grouping and for rolling up whole days.
            t.column("day", .text).notNull()
            // Without the query string, which can hold anything.
            t.column("path", .text).notNull()
            // SHA-256(daily salt ‖ network ‖ user agent): counts visitors within one day only.
            t.column("visitor", .blob).notNull().check(sql: "length(visitor) = 32")
            t.column("referrer_host", .text)
            t.column("country", .text).check(sql: "country IS NULL OR length(country) = 2")
            t.column("region", .text)
            t.column("device", .text).notNull().check(sql: "device IN ('desktop', 'mobile', 'tablet')")
            t.column("os", .text)
            t.column("browser", .text)
            // A width bucket from the beacon, sent only by visitors who accepted analytics.
            t.column("screen", .text)
            // Lets that one beacon find its page view; cleared when used or after an hour.
            t.column("beacon_token", .text)
        }
        try db.create(index: "page_view_by_day", on: "page_view", columns: ["day"])
        try db.execute(sql: "CREATE UNIQUE INDEX page_view_beacon ON page_view(beacon_token) WHERE beacon_token IS NOT NULL")

        // Page views of days past the retention window: totals and the top values as JSON.
        try db.create(table: "page_view_daily") { t in
            t.primaryKey("day", .text)
            t.column("page_views", .integer).notNull().check(sql: "page_views >= 0")
            t.column("visitors", .integer).notNull().check(sql: "visitors >= 0")
            t.column("top", .text).notNull()
        }

        try db.create(table: "request_log") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("at", .datetime).notNull()
            t.column("day", .text).notNull()
            // "203.0.113.0" or "2001:db8:1::": the network, never the address.
            t.column("network", .text).notNull()
            t.column("method", .text).notNull()
            t.column("path", .text).notNull()
            t.column("status", .integer).notNull().check(sql: "status BETWEEN 100 AND 599")
            t.column("duration_ms", .double).notNull().check(sql: "duration_ms >= 0")
            t.column("user_agent", .text).notNull()
            t.column("referrer_host", .text)
        }
        try db.create(index: "request_log_by_day", on: "request_log", columns: ["day", "duration_ms"])

        try db.create(table: "request_log_daily") { t in
            t.primaryKey("day", .text)
            t.column("requests", .integer).notNull()
            t.column("status_2xx", .integer).notNull()
            t.column("status_3xx", .integer).notNull()
            t.column("status_4xx", .integer).notNull()
            t.column("status_5xx", .integer).notNull()
            t.column("p50_ms", .double).notNull()
            t.column("p95_ms", .double).notNull()
            // The most requested paths of the day as a JSON object.
            t.column("top_paths", .text).notNull()
        }
    }
}
