import Crypto
import EaselBlobs
import EaselStore
import Foundation
import Synchronization

/// Each person's data key: made on first use, wrapped by the master key in the database, kept
/// unwrapped in memory while the process runs, and destroyed first when the account is purged.
/// Seals their objects (through `EncryptedBlobStore`) and their secrets in the database.
public final class DataKeys: BlobKeyring {
    private let database: AppDatabase
    private let masterKeys: MasterKeyring
    private let cache = Mutex<[Int64: BlobDataKey]>([:])

    public init(database: AppDatabase, masterKeys: MasterKeyring) {
        self.database = database
        self.masterKeys = masterKeys
    }

    public var masterKeyID: String { self.masterKeys.current.id }

    public func dataKey(forOwner owner: Int64) async throws -> BlobDataKey {
        if let cached = self.cache.withLock({ $0.values.first { $0.owner == owner } }) { return cached }
        let stored: WrappedDataKey
        if let existing = try await self.database.dataKey(userID: owner) {
            stored = existing
        } else {
            let master = self.masterKeys.current
            let fresh = SymmetricKey(size: .bits256)
            stored = try await self.database.createDataKey(
                WrappedDataKey(userID: owner, masterKeyID: master.id, wrapped: try Self.wrap(fresh, owner: owner, with: master), createdAt: Date())
            )
        }
        return try self.remember(stored)
    }

    public func dataKey(id: Int64) async throws -> BlobDataKey? {
        if let cached = self.cache.withLock({ $0[id] }) { return cached }
        guard let stored = try await self.database.dataKey(id: id) else { return nil }
        return try self.remember(stored)
    }

    private func remember(_ stored: WrappedDataKey) throws -> BlobDataKey {
        let key = BlobDataKey(id: stored.id!, owner: stored.userID, key: try Self.unwrap(stored, ring: self.masterKeys))
        self.cache.withLock { $0[key.id] = key }
        return key
    }

    /// Crypto-shredding: deletes the person's key, so every copy of what it sealed (bucket
    /// versions, backups, a stolen disk) stays unreadable. The purge calls this before it
    /// deletes anything else.
    public func destroy(userID: Int64) async throws {
        try await self.database.destroyDataKey(userID: userID)
        self.cache.withLock { cache in cache = cache.filter { $0.value.owner != userID } }
    }

    // MARK: Secrets in the database

    static let secretPrefix = "enc1:"

    /// A small secret (a TOTP secret) sealed under its owner's data key, as stored text.
    public func seal(secret: String, owner: Int64) async throws -> String {
        let dataKey = try await self.dataKey(forOwner: owner)
        let box = try AES.GCM.seal(Data(secret.utf8), using: dataKey.key, authenticating: Data("easel secret v1 u\(owner)".utf8))
        return Self.secretPrefix + "\(dataKey.id):" + box.combined!.base64EncodedString()
    }

    /// The secret sealed by `seal`; a value stored before encryption comes back as it is. Nil
    /// when the key was destroyed or the value does not open (altered, or another person's).
    public func open(secret stored: String, owner: Int64) async throws -> String? {
        guard stored.hasPrefix(Self.secretPrefix) else { return stored }
        let fields = stored.dropFirst(Self.secretPrefix.count).split(separator: ":", maxSplits: 1)
        guard fields.count == 2, let id = Int64(fields[0]), let combined = Data(base64Encoded: String(fields[1])),
            let dataKey = try await self.dataKey(id: id), dataKey.owner == owner,
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plain = try? AES.GCM.open(box, using: dataKey.key, authenticating: Data("easel secret v1 u\(owner)".utf8))
        else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }

    // MARK: Wrapping

    static func wrap(_ key: SymmetricKey, owner: Int64, with master: MasterKeyring.Key) throws -> Data {
        let bytes = key.withUnsafeBytes { Data($0) }
        return try AES.GCM.seal(bytes, using: master.key, authenticating: Self.wrapContext(owner: owner)).combined!
    }

    static func unwrap(_ stored: WrappedDataKey, ring: MasterKeyring) throws -> SymmetricKey {
        guard let master = ring.key(id: stored.masterKeyID) else {
            throw MasterKeyFile.Failure(
                description:
                    "the data key of account \(stored.userID) is wrapped by master key \(stored.masterKeyID), which is not in the master key file: restore the file from your copy"
            )
        }
        do {
            let box = try AES.GCM.SealedBox(combined: stored.wrapped)
            return SymmetricKey(data: try AES.GCM.open(box, using: master.key, authenticating: Self.wrapContext(owner: stored.userID)))
        } catch {
            throw MasterKeyFile.Failure(
                description: "the data key of account \(stored.userID) does not open with master key \(stored.masterKeyID): the key file or the database was altered"
            )
        }
    }

    private static func wrapContext(owner: Int64) -> Data {
        Data("easel data key v1 u\(owner)".utf8)
    }

    // MARK: Rotation and checks (offline: `easel keys …` with the server stopped)

    public struct Rotation: Sendable {
        public var retiredKeyIDs: [String]
        public var newKeyID: String
        public var rewrapped: Int
    }

    /// Adds a new master key to the file, re-wraps every data key under it in one transaction,
    /// then removes the old keys from the file. A crash at any point leaves a file that opens
    /// every data key, and running it again finishes the job.
    public static func rotateMaster(database: AppDatabase, keyFile: URL, now: Date = Date()) async throws -> Rotation {
        let ring = try MasterKeyFile.load(at: keyFile)
        let new = MasterKeyring.newKey(now: now)
        let widened = ring.adding(new)
        try MasterKeyFile.replace(at: keyFile, with: widened)
        let count = try await database.rewrapDataKeys(now: now) { stored in
            (new.id, try Self.wrap(try Self.unwrap(stored, ring: widened), owner: stored.userID, with: new))
        }
        try MasterKeyFile.replace(at: keyFile, with: widened.keeping(only: new.id))
        return Rotation(retiredKeyIDs: ring.keys.map(\.id), newKeyID: new.id, rewrapped: count)
    }

    public struct Check: Sendable {
        public var masterKeyIDs: [String]
        public var dataKeys: Int
        /// Accounts whose data key does not open with the key file as it is.
        public var unreadable: [Int64]
    }

    public static func check(database: AppDatabase, keyFile: URL) async throws -> Check {
        let ring = try MasterKeyFile.load(at: keyFile)
        let keys = try await database.allDataKeys()
        let unreadable = keys.filter { (try? Self.unwrap($0, ring: ring)) == nil }.map(\.userID)
        return Check(masterKeyIDs: ring.keys.map(\.id), dataKeys: keys.count, unreadable: unreadable)
    }
}
