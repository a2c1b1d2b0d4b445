import Foundation
import GRDB

/// An account's sign-in identity at an OpenID Connect provider.
public struct LinkedIdentity: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "identity"

    public var id: Int64?
    public var userID: Int64
    public var issuer: String
    public var subject: String
    public var email: String?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, issuer, subject, email
        case userID = "user_id"
        case createdAt = "created_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

public enum IdentityStoreError: Error, Equatable {
    /// The provider account is already linked to another Easel account.
    case linkedElsewhere
    case emailTaken
    /// Unlinking would leave the account with no way to sign in.
    case lastWayIn
}

extension AppDatabase {
    /// The account linked to (issuer, subject), if any.
    public func user(issuer: String, subject: String) async throws -> User? {
        try await self.writer.read { db in
            guard let identity = try LinkedIdentity.filter(Column("issuer") == issuer && Column("subject") == subject).fetchOne(db) else {
                return nil
            }
            return try User.fetchOne(db, key: identity.userID)
        }
    }

    /// Creates an account from a provider's verified email, already confirmed, with its identity.
    public func createAccount(_ account: NewAccount, issuer: String, subject: String, now: Date = Date()) async throws -> User {
        try await self.writer.write { db in
            let hasAdmin = try User.filter(User.Columns.role == User.Role.admin.rawValue).fetchCount(db) > 0
            var user = User(
                id: nil, email: account.email, emailVerifiedAt: now, passwordHash: nil, displayName: account.displayName,
                avatarKey: nil, role: hasAdmin ? .member : .admin, status: .active, language: account.language, theme: account.theme,
                totpSecret: nil, totpEnabledAt: nil, totpLastStep: nil, ageConfirmedAt: now, termsVersion: account.termsVersion,
                termsAcceptedAt: now, createdAt: now, updatedAt: now
            )
            do {
                try user.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw IdentityStoreError.emailTaken
            }
            try Self.grantSignupCredits(db, userID: user.id!, amount: account.signupCredits, now: now)
            var identity = LinkedIdentity(id: nil, userID: user.id!, issuer: issuer, subject: subject, email: account.email, createdAt: now)
            do {
                try identity.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw IdentityStoreError.linkedElsewhere
            }
            return user
        }
    }

    /// Links a provider identity to a signed-in account.
    public func linkIdentity(userID: Int64, issuer: String, subject: String, email: String?, now: Date = Date()) async throws {
        try await self.writer.write { db in
            if let existing = try LinkedIdentity.filter(Column("issuer") == issuer && Column("subject") == subject).fetchOne(db) {
                guard existing.userID == userID else { throw IdentityStoreError.linkedElsewhere }
                return
            }
            var identity = LinkedIdentity(id: nil, userID: userID, issuer: issuer, subject: subject, email: email, createdAt: now)
            try identity.insert(db)
        }
    }

    public func identities(userID: Int64) async throws -> [LinkedIdentity] {
        try await self.writer.read { db in
            try LinkedIdentity.filter(Column("user_id") == userID).order(Column("created_at")).fetchAll(db)
        }
    }

    /// Unlinks an identity, unless it is the account's only way in (no password, no other identity).
    public func unlinkIdentity(id: Int64, userID: Int64) async throws {
        try await self.writer.write { db in
            guard let user = try User.fetchOne(db, key: userID),
                try LinkedIdentity.filter(key: id).filter(Column("user_id") == userID).fetchCount(db) == 1
            else { return }
            let others = try LinkedIdentity.filter(Column("user_id") == userID && Column("id") != id).fetchCount(db)
            guard user.passwordHash != nil || others > 0 else { throw IdentityStoreError.lastWayIn }
            try LinkedIdentity.filter(key: id).deleteAll(db)
        }
    }
}
