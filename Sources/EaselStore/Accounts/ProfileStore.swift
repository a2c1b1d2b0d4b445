import Foundation
import GRDB

/// Changes people make to their own account: profile, password, email, known devices.
extension AppDatabase {
    /// Moves the account to the new address of a valid change token (single use), marks it
    /// confirmed, and queues the notice to the old address. Throws `emailTaken` when someone
    /// took the address in the meantime. Returns the old and new user, or nil for a bad token.
    public func confirmEmailChange(tokenHash: Data, notice: @escaping @Sendable (_ old: User) -> MailDraft, now: Date = Date()) async throws -> (old: User, new: User)? {
        try await self.writer.write { db in
            guard var token = try Self.usableToken(db, tokenHash: tokenHash, purpose: .changeEmail, now: now),
                let newEmail = token.newEmail, let old = try User.fetchOne(db, key: token.userID)
            else { return nil }
            token.usedAt = now
            try token.update(db)
            var user = old
            user.email = newEmail
            user.emailVerifiedAt = now
            user.updatedAt = now
            do {
                try user.update(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw AccountStoreError.emailTaken
            }
            try Self.enqueue(notice(old), db: db, now: now, userID: old.id)
            return (old, user)
        }
    }

    /// Remembers the device; when it is new and the person has signed in elsewhere before,
    /// queues `mail` in the same transaction. Returns whether the device was new.
    @discardableResult
    public func rememberDevice(userID: Int64, fingerprint: Data, mail: MailDraft, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            let known = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM known_device WHERE user_id = ?", arguments: [userID]) ?? 0
            try db.execute(
                sql: "INSERT OR IGNORE INTO known_device (user_id, fingerprint, first_seen_at) VALUES (?, ?, ?)",
                arguments: [userID, fingerprint, now]
            )
            let isNew = db.changesCount == 1
            if isNew, known > 0 { try Self.enqueue(mail, db: db, now: now) }
            return isNew
        }
    }

    /// Saves profile fields the person edits themselves.
    public func updateProfile(userID: Int64, displayName: String, language: String?, theme: User.Theme, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).updateAll(
                db, Column("display_name").set(to: displayName), Column("language").set(to: language), Column("theme").set(to: theme.rawValue),
                Column("updated_at").set(to: now)
            )
        }
    }

    /// Points the account at a new avatar blob (or none) and returns the key it replaces, which
    /// the caller deletes after the commit. Nil when there was none; throws when the account is gone.
    @discardableResult
    public func replaceAvatar(userID: Int64, key: String?, now: Date = Date()) async throws -> String? {
        try await self.writer.write { db in
            guard let user = try User.fetchOne(db, key: userID) else { throw AccountStoreError.noSuchAccount }
            try User.filter(key: userID).updateAll(db, Column("avatar_key").set(to: key), Column("updated_at").set(to: now))
            return user.avatarKey
        }
    }

    /// Sets a new password hash, optionally signing out every other session, and queues the notice.
    public func changePassword(userID: Int64, hash: String, keepingSession: Int64?, signOutOthers: Bool, mail: MailDraft, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).updateAll(db, Column("password_hash").set(to: hash), Column("updated_at").set(to: now))
            if signOutOthers {
                var request = Session.filter(Column("user_id") == userID)
                if let keepingSession { request = request.filter(Column("id") != keepingSession) }
                try request.deleteAll(db)
            }
            try Self.enqueue(mail, db: db, now: now)
        }
    }
}
