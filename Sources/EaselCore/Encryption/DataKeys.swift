import Crypto
import EaselBlobs
import EaselStore
import Foundation
import Synchronization

/// Each person's data key: made on first use, wrapped by the master key in the database, and
/// destroyed first when the account is purged. Seals their objects (through
/// `EncryptedBlobStore`) and their secrets in the database.
///
/// Unwrapped keys are cached, but every use first reads the key's row (one indexed read), so a
/// key destroyed by any process, this one or `easel jobs run account-purge` beside a running
/// server, stops working everywhere at once.
public final class DataKeys: BlobKeyring {
    private let database: AppDatabase
    private let masterKeys: MasterKeyring
    /// Unwrapped keys by id, with the wrapped bytes they came from.
    private let cache = Mutex<[Int64: (key: BlobDataKey, wrapped: Data)]>([:])

    public init(database: AppDatabase, masterKeys: MasterKeyring) {
        self.database = database
        self.masterKeys = masterKeys
    }

    public var masterKeyID: String { self.masterKeys.current.id }

    public func dataKey(forOwner owner: Int64) async throws -> BlobDataKey {
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
        guard let stored = try await self.database.dataKey(id: id) else { return nil }
        return try self.remember(stored)
    }

    /// The unwrapped key of a row just read: from the cache when the row is the one it was
    /// unwrapped from, else unwrapped afresh.
    private func remember(_ stored: WrappedDataKey) throws -> BlobDataKey {
        if let cached = self.cache.withLock({ $0[stored.id!] }), cached.key.owner == stored.userID, cached.wrapped == stored.wrapped {
            return cached.key
        }
        let key = BlobDataKey(id: stored.id!, owner: stored.userID, key: try Self.unwrap(stored, ring: self.masterKeys))
        self.cache.withLock { $0[key.id] = (key, stored.wrapped) }
        return key
    }

    /// Crypto-shredding: deletes the person's key, so every copy of what it sealed (bucket
    /// versions, backups, a stolen disk) stays unreadable. The purge calls this before it
    /// deletes anything else.
    public func destroy(userID: Int64) async throws {
        try await self.database.destroyDataKey(userID: userID)
        self.cache.withLock { cache in cache = cache.filter { $0.value.key.owner != userID } }
    }

    // MARK: Secrets in the database

    static let secretPrefix = "enc1:"

    /// A small secret (a TOTP secret) sealed under its owner's data key, as stored text.
    public func seal(secret: String, owner: Int64) async throws -> String {
        let dataKey = try await self.dataKey(forOwner: owner)
        let box = try AES.GCM.seal(Data(secret.utf8), using: Self.secretKey(dataKey), authenticating: Data("easel secret v1 u\(owner)".utf8))
        return Self.secretPrefix + "\(dataKey.id):" + box.combined!.base64EncodedString()
    }

    /// The secret sealed by `seal`; a value stored before encryption comes back as it is. Nil
    /// when the key was destroyed or the value does not open (altered, or another person's).
    public func open(secret stored: String, owner: Int64) async throws -> String? {
        guard Self.isSealed(stored) else { return stored }
        let fields = stored.dropFirst(Self.secretPrefix.count).split(separator: ":", maxSplits: 1)
        guard fields.count == 2, let id = Int64(fields[0]), let combined = Data(base64Encoded: String(fields[1])),
            let dataKey = try await self.dataKey(id: id), dataKey.owner == owner,
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plain = try? AES.GCM.open(box, using: Self.secretKey(dataKey), authenticating: Data("easel secret v1 u\(owner)".utf8))
        else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }

    /// Secrets get their own subkey of the data key, apart from the objects' keys.
    private static func secretKey(_ dataKey: BlobDataKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: dataKey.key, info: Data("easel secret v1".utf8), outputByteCount: 32)
    }

    /// Whether a stored secret is sealed (false for one stored before encryption).
    public static func isSealed(_ stored: String) -> Bool {
        stored.hasPrefix(Self.secretPrefix)
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
        /// Where the retired keys are kept, for backups made before the rotation.
        public var retiredFile: URL
    }

    /// Adds a new master key to the file, re-wraps every data key under it in one transaction
    /// (made durable), checks that every key now opens with the new key alone, keeps the old
    /// keys in `<file>.retired-<id>` (backups made before need them), and only then removes
    /// them from the file. A crash at any point leaves a file that opens every data key, and
    /// running it again finishes the job.
    public static func rotateMaster(database: AppDatabase, keyFile: URL, now: Date = Date()) async throws -> Rotation {
        let ring = try MasterKeyFile.load(at: keyFile)
        let new = MasterKeyring.newKey(now: now)
        let widened = ring.adding(new)
        let newOnly = widened.keeping(only: new.id)
        try MasterKeyFile.replace(at: keyFile, with: widened)
        var count = 0
        // Another process may have made a key under the old master key meanwhile: go again.
        for _ in 0..<3 {
            count += try await database.rewrapDataKeys(to: new.id, now: now) { stored in
                try Self.wrap(try Self.unwrap(stored, ring: widened), owner: stored.userID, with: new)
            }
            let keys = try await database.allDataKeys()
            if keys.allSatisfy({ $0.masterKeyID == new.id && (try? Self.unwrap($0, ring: newOnly)) != nil }) {
                let retired = keyFile.deletingLastPathComponent().appending(path: "\(keyFile.lastPathComponent).retired-\(ring.current.id)")
                try MasterKeyFile.replace(at: retired, with: ring)
                try MasterKeyFile.replace(at: keyFile, with: newOnly)
                return Rotation(retiredKeyIDs: ring.keys.map(\.id), newKeyID: new.id, rewrapped: count, retiredFile: retired)
            }
        }
        throw MasterKeyFile.Failure(description: "data keys kept appearing under the old master key: stop every easel process using this data folder, then run it again")
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

    // MARK: Sealing what was stored before encryption

    /// Seals every object and TOTP secret stored before encryption existed, then records that
    /// it is done and makes `blobs` refuse unsealed objects from then on. A no-op after the
    /// first run (only the refusal is switched on). Returns how many objects and secrets it sealed.
    public func sealExisting(in blobs: EncryptedBlobStore, now: Date = Date()) async throws -> (objects: Int, secrets: Int) {
        if try await self.database.existingDataSealed() {
            blobs.refuseUnsealedObjects()
            return (0, 0)
        }
        let objects = try await blobs.sealExisting()
        var secrets = 0
        for (userID, secret) in try await self.database.unsealedTOTPSecrets(sealedPrefix: Self.secretPrefix) {
            try await self.database.replaceTOTPSecret(userID: userID, from: secret, to: try await self.seal(secret: secret, owner: userID))
            secrets += 1
        }
        try await self.database.markExistingDataSealed(now: now)
        blobs.refuseUnsealedObjects()
        return (objects, secrets)
    }
}

