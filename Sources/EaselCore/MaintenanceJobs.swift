import EaselStore
import Foundation

/// The jobs every instance runs, whatever features are configured.
public enum MaintenanceJobs {
    /// `wal_checkpoint(TRUNCATE)` and `PRAGMA optimize`, nightly; also trims job history.
    public static func databaseUpkeep(database: AppDatabase, interval: Duration = .seconds(24 * 3600)) -> Job {
        Job(name: "database-upkeep", summary: "Checkpoint the WAL, optimize SQLite, trim old job runs", interval: interval) {
            try await database.checkpointAndOptimize()
            try await database.pruneJobRuns(keepingPerJob: 200)
        }
    }

    /// A verified snapshot of the database in the blob store, keeping the newest N.
    public static func backup(service: BackupService, interval: Duration) -> Job {
        Job(name: "backup", summary: "Back up the database to the blob store and keep the newest N", interval: interval) {
            try await service.backUp()
        }
    }
}
