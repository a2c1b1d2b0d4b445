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
        try await database.rollUpRequestLog(before: UTCDay.string(now, minusDays: logDays))
        try await database.rollUpPageViews(before: UTCDay.string(now, minusDays: analyticsDays), now: now)
    }
}
