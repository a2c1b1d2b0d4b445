import Foundation
import GRDB

/// A personal API key. Only its prefix and the SHA-256 of the whole key are kept: the key
/// itself is shown once, when it is made.
public struct APIKey: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "api_key"

    public var id: Int64?
    public var userID: Int64
    public var name: String
    /// "easel_ab12cd34": shown in lists, and how an incoming key is found.
    public var prefix: String
    public var secretHash: Data
    /// Comma-separated scope names ("generate,read"); EaselCore knows what they mean.
    public var scopes: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var lastUsedAt: Date?
    public var revokedAt: Date?

    public init(
        id: Int64? = nil,
        userID: Int64,
        name: String,
        prefix: String,
        secretHash: Data,
        scopes: String,
        createdAt: Date,
        expiresAt: Date?,
        lastUsedAt: Date? = nil,
        revokedAt: Date? = nil
    ) {
        self.id = id
        self.userID = userID
        self.name = name
        self.prefix = prefix
        self.secretHash = secretHash
        self.scopes = scopes
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, scopes
        case userID = "user_id"
        case secretHash = "secret_hash"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case lastUsedAt = "last_used_at"
        case revokedAt = "revoked_at"
    }

    public enum Columns {
        public static let userID = Column(CodingKeys.userID)
        public static let prefix = Column(CodingKeys.prefix)
        public static let expiresAt = Column(CodingKeys.expiresAt)
        public static let lastUsedAt = Column(CodingKeys.lastUsedAt)
        public static let revokedAt = Column(CodingKeys.revokedAt)
    }

    /// Not revoked and not past its expiry.
    public func isActive(at now: Date) -> Bool {
        self.revokedAt == nil && (self.expiresAt.map { $0 > now } ?? true)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

public enum APIKeyStoreError: Error, Equatable {
    /// The user already has `limit` keys that are neither revoked nor expired.
    case tooManyKeys(limit: Int)
    /// Another key has the same prefix (astronomically rare: the caller draws a new one).
    case prefixTaken
}

extension DerivableRequest<APIKey> {
    /// Keys that are neither revoked nor expired at `now`.
    func active(at now: Date) -> Self {
        self.filter(APIKey.Columns.revokedAt == nil).filter(APIKey.Columns.expiresAt == nil || APIKey.Columns.expiresAt > now)
    }
}

extension AppDatabase {
    /// Stores a new key unless the user already has `activeLimit` active keys; the count and
    /// the insert share one transaction, so two requests at once cannot pass the limit.
    public func createAPIKey(_ key: APIKey, activeLimit: Int) async throws -> APIKey {
        try await self.writer.write { db in
            let active = try APIKey.filter(APIKey.Columns.userID == key.userID).active(at: key.createdAt).fetchCount(db)
            guard active < activeLimit else { throw APIKeyStoreError.tooManyKeys(limit: activeLimit) }
            var key = key
            do {
                try key.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw APIKeyStoreError.prefixTaken
            }
            return key
        }
    }

    /// The user's keys that were not revoked (expired ones included), newest first.
    public func apiKeys(userID: Int64) async throws -> [APIKey] {
        try await self.writer.read { db in
            try APIKey.filter(APIKey.Columns.userID == userID).filter(APIKey.Columns.revokedAt == nil)
                .order(Column("created_at").desc, Column("id").desc).fetchAll(db)
        }
    }

    /// The key with this prefix and its owner, whatever its state (the caller checks it).
    public func apiKey(prefix: String) async throws -> (APIKey, User)? {
        try await self.writer.read { db in
            guard let key = try APIKey.filter(APIKey.Columns.prefix == prefix).fetchOne(db),
                let user = try User.fetchOne(db, key: key.userID)
            else { return nil }
            return (key, user)
        }
    }

    /// Records that the key was used. Writes at most once a minute per key, whoever calls, so a
    /// busy client does not keep the single writer busy.
    public func touchAPIKey(id: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            _ = try APIKey.filter(key: id)
                .filter(APIKey.Columns.lastUsedAt == nil || APIKey.Columns.lastUsedAt <= now.addingTimeInterval(-60))
                .updateAll(db, APIKey.Columns.lastUsedAt.set(to: now))
        }
    }

    /// Revokes one of the user's keys; false when they have no such key, or it was revoked already.
    @discardableResult
    public func revokeAPIKey(id: Int64, userID: Int64, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            try APIKey.filter(key: id).filter(APIKey.Columns.userID == userID).filter(APIKey.Columns.revokedAt == nil)
                .updateAll(db, APIKey.Columns.revokedAt.set(to: now)) > 0
        }
    }
}
