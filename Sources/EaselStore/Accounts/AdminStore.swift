import Foundation
import GRDB

public enum AdminStoreError: Error, Equatable {
    /// An admin may not suspend or demote themselves: the instance would lose its last way in.
    case notOnYourself
    case notFound
}

extension AppDatabase {
    /// Users whose email or name contains `query` (all when empty), newest first.
    public func searchUsers(_ query: String, limit: Int = 100) async throws -> [User] {
        try await self.writer.read { db in
            var request = User.all()
            let trimmed = query.trimmingCharacters(in: .whitespaces)
            if !trimmed.isEmpty {
                let pattern = "%\(trimmed.replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_"))%"
                request = request.filter(sql: "email LIKE ? ESCAPE '\\' OR display_name LIKE ? ESCAPE '\\'", arguments: [pattern, pattern])
            }
            return try request.order(Column("created_at").desc, Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    /// Email addresses by user id, for admin lists that show whose a row is.
    public func emails(userIDs: Set<Int64>) async throws -> [Int64: String] {
        guard !userIDs.isEmpty else { return [:] }
        return try await self.writer.read { db in
            let rows = try Row.fetchAll(db, User.select(Column("id"), Column("email")).filter(userIDs.contains(Column("id"))))
            return Dictionary(rows.map { ($0["id"] as Int64, $0["email"] as String) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Suspends (signing them out everywhere) or restores an account.
    public func setStatus(_ status: User.Status, userID: Int64, by adminID: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            guard userID != adminID else { throw AdminStoreError.notOnYourself }
            guard try User.filter(key: userID).updateAll(db, Column("status").set(to: status.rawValue), Column("updated_at").set(to: now)) == 1 else {
                throw AdminStoreError.notFound
            }
            if status == .suspended { try Session.filter(Column("user_id") == userID).deleteAll(db) }
        }
    }

    public func setRole(_ role: User.Role, userID: Int64, by adminID: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            guard userID != adminID else { throw AdminStoreError.notOnYourself }
            guard try User.filter(key: userID).updateAll(db, Column("role").set(to: role.rawValue), Column("updated_at").set(to: now)) == 1 else {
                throw AdminStoreError.notFound
            }
        }
    }

    /// Creates a confirmed admin account, or makes an existing account an admin (`easel admin create`).
    /// Returns the user and whether it was created.
    public func createOrPromoteAdmin(email: String, passwordHash: String?, termsVersion: String, now: Date = Date()) async throws -> (User, created: Bool) {
        try await self.writer.write { db in
            if var existing = try User.filter(User.Columns.email == email).fetchOne(db) {
                existing.role = .admin
                existing.status = .active
                if existing.emailVerifiedAt == nil { existing.emailVerifiedAt = now }
                if let passwordHash { existing.passwordHash = passwordHash }
                existing.updatedAt = now
                try existing.update(db)
                return (existing, false)
            }
            var user = User(
                id: nil, email: email, emailVerifiedAt: now, passwordHash: passwordHash, displayName: "", avatarKey: nil, role: .admin,
                status: .active, language: nil, theme: .system, totpSecret: nil, totpEnabledAt: nil, totpLastStep: nil,
                ageConfirmedAt: now, termsVersion: termsVersion, termsAcceptedAt: now, createdAt: now, updatedAt: now
            )
            try user.insert(db)
            return (user, true)
        }
    }
}
