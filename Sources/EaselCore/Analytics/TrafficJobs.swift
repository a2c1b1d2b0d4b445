import EaselStore
import Foundation

extension MaintenanceJobs {
    /// Hourly: request-log rows older than `logDays` and page views older than `analyticsDays`
    /// are rolled up into one row per day and deleted; unused beacon tokens are forgotten.
    /// Whole UTC days only, so a day is rolled up once, complete.
    public static func trafficRetention(
        database: AppDatabase, logDays: Int, analyticsDays: Int, interval: Duration = .seconds(3600), now: @escaping @Sendable () -> Date = Date.init
    ) -> Job {
        Job(
            name: "traffic-retention",
            summary:
                "Roll up request logs older than \(logDays) days and analytics older than \(analyticsDays) days into daily totals, then delete them",
            interval: interval
        ) {
            try await self.applyTrafficRetention(database: database, logDays: logDays, analyticsDays: analyticsDays, now: now())
        }
    }

    /// What the job does, with the time given (tests pass their own clock).
    public static func applyTrafficRetention(database: AppDatabase, logDays: Int, analyticsDays: Int, now: Date) async throws {
        // Days strictly before the cutoff go: with 90, today and the 89 days before it are kept.
        try await database.rollUpRequestLog(before: UTCDay.string(now, minusDays: max(0, logDays - 1)))
        try await database.rollUpPageViews(before: UTCDay.string(now, minusDays: max(0, analyticsDays - 1)), now: now)
    }
}
