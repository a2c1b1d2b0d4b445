import Foundation
import GRDB

/// An admin's single-use, expiring invitation to create an account.
public struct Invitation: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "invitation"

    public var id: Int64?
    public var email: String
    public var tokenHash: Data
    public var role: User.Role
    public var invitedBy: Int64?
    public var createdAt: Date
    public var expiresAt: Date
    public var usedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, email, role
        case tokenHash = "token_hash"
        case invitedBy = "invited_by"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case usedAt = "used_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

public enum InvitationError: Error, Equatable {
    /// Unknown, used, expired, or made out to another address.
    case invalid
}

extension AppDatabase {
    /// Records an invitation and queues its mail, in one transaction; an earlier pending
    /// invitation to the same address is replaced.
    public func createInvitation(email: String, tokenHash: Data, role: User.Role, invitedBy: Int64, expiresAt: Date, mail: MailDraft, now: Date = Date()) async throws -> Invitation {
        try await self.writer.write { db in
            try Invitation.filter(Column("email") == email && Column("used_at") == nil).deleteAll(db)
            var invitation = Invitation(id: nil, email: email, tokenHash: tokenHash, role: role, invitedBy: invitedBy, createdAt: now, expiresAt: expiresAt, usedAt: nil)
            try invitation.insert(db)
            try Self.enqueue(mail, db: db, now: now)
            return invitation
        }
    }

    /// Invitations not used yet (expired ones included, so an admin sees them lapse), newest first.
    public func pendingInvitations() async throws -> [Invitation] {
        try await self.writer.read { db in
            try Invitation.filter(Column("used_at") == nil).order(Column("created_at").desc).fetchAll(db)
        }
    }

    public func revokeInvitation(id: Int64) async throws {
        try await self.writer.write { db in
            _ = try Invitation.filter(key: id).filter(Column("used_at") == nil).deleteAll(db)
        }
    }

    /// A usable invitation for this token (to prefill the sign-up form).
    public func usableInvitation(tokenHash: Data, now: Date = Date()) async throws -> Invitation? {
        try await self.writer.read { db in
            try Invitation.filter(Column("token_hash") == tokenHash && Column("used_at") == nil && Column("expires_at") > now).fetchOne(db)
        }
    }

    /// Inside the account's transaction: uses up the invitation and returns the role it grants.
    static func consumeInvitation(_ db: Database, tokenHash: Data, email: String, now: Date) throws -> User.Role {
        guard var invitation = try Invitation.filter(Column("token_hash") == tokenHash && Column("used_at") == nil && Column("expires_at") > now).fetchOne(db),
            invitation.email.lowercased() == email.lowercased()
        else { throw InvitationError.invalid }
        invitation.usedAt = now
        try invitation.update(db)
        return invitation.role
    }
}
