import Foundation
import GRDB

/// A person's data key, wrapped (AES-GCM) by one of the instance's master keys. Deleting the
/// row is what makes the person's encrypted objects unreadable everywhere (crypto-shredding).
public struct WrappedDataKey: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "data_key"

    public var id: Int64?
    public var userID: Int64
    /// The id of the master key in the key file that wrapped it.
    public var masterKeyID: String
    /// Nonce, ciphertext and tag of the 32-byte key.
    public var wrapped: Data
    public var createdAt: Date
    public var rewrappedAt: Date?

    public init(id: Int64? = nil, userID: Int64, masterKeyID: String, wrapped: Data, createdAt: Date, rewrappedAt: Date? = nil) {
        self.id = id
        self.userID = userID
        self.masterKeyID = masterKeyID
        self.wrapped = wrapped
        self.createdAt = createdAt
        self.rewrappedAt = rewrappedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, wrapped
        case userID = "user_id"
        case masterKeyID = "master_key_id"
        case createdAt = "created_at"
        case rewrappedAt = "rewrapped_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// Why no data key could be made.
public enum DataKeyRefusal: Error, Equatable, CustomStringConvertible {
    /// The account is gone, or its purge has begun: nothing new may be stored for it.
    case accountClosing(Int64)

    public var description: String {
        switch self {
        case .accountClosing(let id): "account \(id) is being deleted: nothing new can be stored for it"
        }
    }
}

extension AppDatabase {
    static func createDataKeyTable(_ db: Database) throws {
        try db.create(table: "data_key") { t in
            t.autoIncrementedPrimaryKey("id")
            // One key per person; the purge deletes it before anything else.
            t.column("user_id", .integer).notNull().unique().references("user", onDelete: .cascade)
            t.column("master_key_id", .text).notNull()
            t.column("wrapped", .blob).notNull().check(sql: "length(wrapped) = 60")
            t.column("created_at", .datetime).notNull()
            t.column("rewrapped_at", .datetime)
        }
    }

    public func dataKey(userID: Int64) async throws -> WrappedDataKey? {
        try await self.writer.read { db in try WrappedDataKey.filter(Column("user_id") == userID).fetchOne(db) }
    }

    public func dataKey(id: Int64) async throws -> WrappedDataKey? {
        try await self.writer.read { db in try WrappedDataKey.fetchOne(db, key: id) }
    }

    /// Stores a new data key for a person, or returns theirs when another writer made it
    /// first. Refused once their purge has begun, so nothing is sealed after the key is gone.
    public func createDataKey(_ key: WrappedDataKey) async throws -> WrappedDataKey {
        try await self.writer.write { db in
            if let existing = try WrappedDataKey.filter(Column("user_id") == key.userID).fetchOne(db) { return existing }
            let closing = try Bool.fetchOne(
                db,
                sql: """
                    SELECT NOT EXISTS (SELECT 1 FROM user WHERE id = ?)
                        OR EXISTS (SELECT 1 FROM account_privacy WHERE user_id = ? AND purge_started_at IS NOT NULL)
                    """,
                arguments: [key.userID, key.userID]
            )
            guard closing == false else { throw DataKeyRefusal.accountClosing(key.userID) }
            var key = key
            try key.insert(db)
            return key
        }
    }

    /// Crypto-shredding: after this, nothing sealed with the person's key can be read.
    @discardableResult
    public func destroyDataKey(userID: Int64) async throws -> Bool {
        try await self.writer.write { db in
            try WrappedDataKey.filter(Column("user_id") == userID).deleteAll(db) > 0
        }
    }

    /// Re-wraps every data key not yet under `masterKeyID`, in one transaction: either all
    /// move or none do (`rewrap` throws for a key it cannot unwrap, which cancels the whole
    /// change). Then checkpoints the WAL into the database file, so the change survives a
    /// power loss before the old master key is thrown away.
    public func rewrapDataKeys(to masterKeyID: String, now: Date = Date(), _ rewrap: @Sendable (WrappedDataKey) throws -> Data) async throws -> Int {
        let count = try await self.writer.write { db in
            var count = 0
            for var key in try WrappedDataKey.filter(Column("master_key_id") != masterKeyID).fetchAll(db) {
                key.wrapped = try rewrap(key)
                key.masterKeyID = masterKeyID
                key.rewrappedAt = now
                try key.update(db)
                count += 1
            }
            return count
        }
        try await self.writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(FULL)")
        }
        return count
    }

    public func dataKeyCount() async throws -> Int {
        try await self.writer.read { db in try WrappedDataKey.fetchCount(db) }
    }

    /// Every data key, for a check that each still unwraps (`easel keys status`).
    public func allDataKeys() async throws -> [WrappedDataKey] {
        try await self.writer.read { db in try WrappedDataKey.fetchAll(db) }
    }

    // MARK: Sealing what was stored before encryption

    static func createSealingStateTable(_ db: Database) throws {
        // One row once every object and secret stored before encryption has been sealed.
        try db.create(table: "sealing_state") { t in
            t.primaryKey("id", .integer).check(sql: "id = 1")
            t.column("existing_sealed_at", .datetime).notNull()
        }
    }

    public func existingDataSealed() async throws -> Bool {
        try await self.writer.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM sealing_state)") ?? false }
    }

    public func markExistingDataSealed(now: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO sealing_state (id, existing_sealed_at) VALUES (1, ?)", arguments: [now])
        }
    }

    /// TOTP secrets stored before encryption: (account, stored value).
    public func unsealedTOTPSecrets(sealedPrefix: String) async throws -> [(userID: Int64, secret: String)] {
        try await self.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT id, totp_secret FROM user WHERE totp_secret IS NOT NULL AND substr(totp_secret, 1, ?) <> ?", arguments: [sealedPrefix.count, sealedPrefix])
                .map { ($0["id"], $0["totp_secret"]) }
        }
    }

    /// Replaces a stored TOTP secret by its sealed form, unless it changed meanwhile.
    public func replaceTOTPSecret(userID: Int64, from old: String, to new: String) async throws {
        try await self.writer.write { db in
            try db.execute(sql: "UPDATE user SET totp_secret = ? WHERE id = ? AND totp_secret = ?", arguments: [new, userID, old])
        }
    }
}
