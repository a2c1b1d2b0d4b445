import Foundation
import GRDB

extension AppDatabase {
    /// Keeps a new, not yet confirmed TOTP secret (replacing an unconfirmed one).
    public func storePendingTOTPSecret(userID: Int64, secret: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).filter(Column("totp_enabled_at") == nil)
                .updateAll(db, Column("totp_secret").set(to: secret), Column("updated_at").set(to: now))
        }
    }

    /// Turns two-factor on with the confirmed secret, the step of the code that confirmed it,
    /// and fresh hashed recovery codes; queues the notice mail. One transaction.
    public func enableTwoFactor(userID: Int64, step: Int64, recoveryCodeHashes: [Data], mail: MailDraft, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).filter(Column("totp_secret") != nil).updateAll(
                db, Column("totp_enabled_at").set(to: now), Column("totp_last_step").set(to: step), Column("updated_at").set(to: now)
            )
            try db.execute(sql: "DELETE FROM recovery_code WHERE user_id = ?", arguments: [userID])
            for hash in recoveryCodeHashes {
                try db.execute(sql: "INSERT INTO recovery_code (user_id, code_hash) VALUES (?, ?)", arguments: [userID, hash])
            }
            try Self.enqueue(mail, db: db, now: now)
        }
    }

    /// Turns two-factor off and forgets the secret and recovery codes; queues the notice mail.
    public func disableTwoFactor(userID: Int64, mail: MailDraft?, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).updateAll(
                db, Column("totp_secret").set(to: nil), Column("totp_enabled_at").set(to: nil), Column("totp_last_step").set(to: nil),
                Column("updated_at").set(to: now)
            )
            try db.execute(sql: "DELETE FROM recovery_code WHERE user_id = ?", arguments: [userID])
            if let mail { try Self.enqueue(mail, db: db, now: now) }
        }
    }

    /// Accepts a TOTP step only if it is newer than the last accepted one, atomically: the same
    /// code (or an older one) is never accepted twice, even by two requests at once.
    public func claimTOTPStep(userID: Int64, step: Int64) async throws -> Bool {
        try await self.writer.write { db in
            try db.execute(
                sql: "UPDATE user SET totp_last_step = ? WHERE id = ? AND totp_enabled_at IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?)",
                arguments: [step, userID, step]
            )
            return db.changesCount == 1
        }
    }

    /// Uses up a recovery code; false when it is unknown or was used.
    public func useRecoveryCode(userID: Int64, codeHash: Data, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            try db.execute(
                sql: "UPDATE recovery_code SET used_at = ? WHERE id = (SELECT id FROM recovery_code WHERE user_id = ? AND code_hash = ? AND used_at IS NULL LIMIT 1)",
                arguments: [now, userID, codeHash]
            )
            return db.changesCount == 1
        }
    }

    public func unusedRecoveryCodeCount(userID: Int64) async throws -> Int {
        try await self.writer.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM recovery_code WHERE user_id = ? AND used_at IS NULL", arguments: [userID]) ?? 0
        }
    }
}
