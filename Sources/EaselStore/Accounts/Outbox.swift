import Foundation
import GRDB

extension AppDatabase {
    /// Mails whose time to be tried has come, oldest first.
    public func dueMails(now: Date = Date(), limit: Int = 20) async throws -> [OutboxMail] {
        try await self.writer.read { db in
            try OutboxMail.filter(Column("status") == OutboxMail.Status.queued.rawValue && Column("next_attempt_at") <= now)
                .order(Column("next_attempt_at"), Column("id")).limit(limit).fetchAll(db)
        }
    }

    public func markMailSent(id: Int64, transport: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try OutboxMail.filter(key: id).filter(Column("status") == OutboxMail.Status.queued.rawValue).updateAll(
                db,
                Column("status").set(to: OutboxMail.Status.sent.rawValue), Column("sent_at").set(to: now),
                Column("transport").set(to: transport), Column("attempts").set(to: Column("attempts") + 1),
                Column("last_error").set(to: nil)
            )
        }
    }

    /// Records a failed attempt: tried again at `retryAt`, or given up when `retryAt` is nil.
    public func markMailAttemptFailed(id: Int64, error: String, retryAt: Date?, transport: String) async throws {
        try await self.writer.write { db in
            var assignments = [
                Column("attempts").set(to: Column("attempts") + 1), Column("last_error").set(to: String(error.prefix(1000))),
                Column("transport").set(to: transport),
            ]
            if let retryAt {
                assignments.append(Column("next_attempt_at").set(to: retryAt))
            } else {
                assignments.append(Column("status").set(to: OutboxMail.Status.failed.rawValue))
            }
            try OutboxMail.filter(key: id).filter(Column("status") == OutboxMail.Status.queued.rawValue).updateAll(db, assignments)
        }
    }

    /// The newest mails, for the admin mailbox.
    public func recentMails(limit: Int = 100) async throws -> [OutboxMail] {
        try await self.writer.read { db in
            try OutboxMail.order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    public func mail(id: Int64) async throws -> OutboxMail? {
        try await self.writer.read { db in try OutboxMail.fetchOne(db, key: id) }
    }
}
