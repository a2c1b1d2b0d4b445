import EaselBlobs
import EaselStore
import Foundation
import Logging

/// The jobs every instance runs, whatever features are configured.
public enum MaintenanceJobs {
    /// How long payment records are kept (accounting law): 7 years.
    public static let paymentRetention: TimeInterval = 7 * 365.25 * 86400

    /// Nightly: drops expired sessions, old sign-in failures and payment records past their
    /// 7 years, trims job history, then `wal_checkpoint(TRUNCATE)` and `PRAGMA optimize`.
    public static func databaseUpkeep(database: AppDatabase, sessionIdle: TimeInterval, interval: Duration = .seconds(24 * 3600)) -> Job {
        Job(name: "database-upkeep", summary: "Drop expired sessions, trim history, checkpoint the WAL, optimize SQLite", interval: interval) {
            try await database.deleteExpiredSessions(idle: sessionIdle)
            try await database.pruneLoginFailures(before: Date().addingTimeInterval(-86400))
            try await database.deletePayments(createdBefore: Date().addingTimeInterval(-Self.paymentRetention))
            try await database.pruneJobRuns(keepingPerJob: 200)
            try await database.checkpointAndOptimize()
        }
    }

    /// Sends queued mail; also woken at once whenever a mail is queued.
    public static func mail(dispatcher: MailDispatcher, interval: Duration = .seconds(30)) -> Job {
        Job(name: "mail", summary: "Send queued mail (\(dispatcher.transportName)), retrying with backoff", interval: interval, quiet: true) {
            try await dispatcher.sendDue()
        }
    }

    /// Once: encrypts what an earlier Easel stored unencrypted (docs/encryption.md); after that
    /// each start only switches on the refusal of unencrypted objects.
    public static func sealExisting(dataKeys: DataKeys, blobs: EncryptedBlobStore, logger: Logger, interval: Duration = .seconds(24 * 3600)) -> Job {
        Job(name: "seal-existing", summary: "Encrypt images, uploads and 2FA secrets stored before encryption (once)", interval: interval) {
            let sealed = try await dataKeys.sealExisting(in: blobs)
            if sealed.objects + sealed.secrets > 0 {
                logger.notice("sealed what was stored before encryption", metadata: ["objects": "\(sealed.objects)", "secrets": "\(sealed.secrets)"])
            }
        }
    }

    /// A verified snapshot of the database in the blob store, keeping the newest N.
    public static func backup(service: BackupService, interval: Duration) -> Job {
        Job(name: "backup", summary: "Back up the database to the blob store and keep the newest N", interval: interval) {
            try await service.backUp()
        }
    }
}
