import Crypto
import EaselBlobs
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import Logging
import Testing

@Suite("Data keys and the master key file")
struct DataKeysTests {
    func makeUser(_ database: AppDatabase, email: String = "ada@example.org") async throws -> Int64 {
        let mails = AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded())
        let accounts = AccountService(settings: .init(), database: database, hasher: PasswordHasher(cost: 4), mails: mails, logger: Logger(label: "test"))
        try await accounts.signUp(.init(email: email, password: "correct horse battery", displayName: "Ada", ageConfirmed: true, termsAccepted: true))
        return try #require(try await database.user(email: email)?.id)
    }

    @Test("The master key file is made once with mode 0600, read back the same, and a damaged one is refused with a way out")
    func keyFile() throws {
        let folder = try TemporaryDirectory("easel-keys")
        defer { folder.remove() }
        let file = folder.url.appending(path: "master.key")
        let made = try MasterKeyFile.loadOrCreate(at: file)
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try MasterKeyFile.loadOrCreate(at: file)
        #expect(again.current.id == made.current.id)
        #expect(bytes(again.current.key) == bytes(made.current.key))

        // Missing while data keys exist: a new key would open none of them.
        let elsewhere = folder.url.appending(path: "moved.key")
        #expect { try MasterKeyFile.loadOrCreate(at: elsewhere, existingDataKeys: 3) } throws: { "\($0)".contains("is missing, but 3 people") }
        #expect(!FileManager.default.fileExists(atPath: elsewhere.path))

        try Data("mk-1 not-base64\n".utf8).write(to: file)
        #expect { try MasterKeyFile.load(at: file) } throws: { "\($0)".contains("line 1") && "\($0)".contains("restore") }
        try Data("# only a comment\n".utf8).write(to: file)
        #expect(throws: MasterKeyFile.Failure.self) { try MasterKeyFile.load(at: file) }
    }

    @Test("A person's key is made once, wrapped (never stored in the clear), and unwraps after a restart")
    func wrapping() async throws {
        let database = try AppDatabase.inMemory()
        let userID = try await self.makeUser(database)
        let ring = MasterKeyring(keys: [MasterKeyring.newKey()])
        let keys = DataKeys(database: database, masterKeys: ring)
        let first = try await keys.dataKey(forOwner: userID)
        #expect(try await keys.dataKey(forOwner: userID).id == first.id)
        let stored = try #require(try await database.dataKey(userID: userID))
        #expect(stored.masterKeyID == ring.current.id)
        let raw = first.key.withUnsafeBytes { Data($0) }
        #expect(stored.wrapped.range(of: raw) == nil)

        let restarted = DataKeys(database: database, masterKeys: ring)
        #expect(try await restarted.dataKey(id: first.id).map { bytes($0.key) } == bytes(first.key))
        // Another master key cannot open it.
        let stranger = DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))
        await #expect(throws: MasterKeyFile.Failure.self) { _ = try await stranger.dataKey(id: first.id) }
    }

    @Test("Secrets are sealed per person: another person's key cannot open them, and a destroyed key opens nothing")
    func secrets() async throws {
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        let bob = try await self.makeUser(database, email: "bob@example.org")
        let keys = DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))
        let sealed = try await keys.seal(secret: "JBSWY3DPEHPK3PXP", owner: ada)
        #expect(sealed.hasPrefix("enc1:"))
        #expect(!sealed.contains("JBSWY3DPEHPK3PXP"))
        #expect(try await keys.open(secret: sealed, owner: ada) == "JBSWY3DPEHPK3PXP")
        #expect(try await keys.open(secret: sealed, owner: bob) == nil)
        #expect(try await keys.open(secret: "PLAINFROMBEFORE", owner: ada) == "PLAINFROMBEFORE", "values stored before encryption still work")
        try await keys.destroy(userID: ada)
        #expect(try await database.dataKey(userID: ada) == nil)
        #expect(try await keys.open(secret: sealed, owner: ada) == nil)
    }

    @Test("A key destroyed by another process stops working here at once, cached or not")
    func destroyedElsewhere() async throws {
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        let ring = MasterKeyring(keys: [MasterKeyring.newKey()])
        let server = DataKeys(database: database, masterKeys: ring)
        let key = try await server.dataKey(forOwner: ada)
        #expect(try await server.dataKey(id: key.id) != nil)
        // `easel jobs run account-purge` in its own process, beside the server.
        try await DataKeys(database: database, masterKeys: ring).destroy(userID: ada)
        #expect(try await server.dataKey(id: key.id) == nil)
    }

    @Test("Sealing existing data seals TOTP secrets stored in the clear, once")
    func sealsOldSecrets() async throws {
        let folder = try TemporaryDirectory("easel-keys")
        defer { folder.remove() }
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        try await database.storePendingTOTPSecret(userID: ada, secret: "PLAINFROMBEFORE")
        let keys = DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))
        let signer = BlobURLSigner(baseURL: URL(string: "http://localhost")!, secret: Data(repeating: 1, count: 32))
        let blobs = EncryptedBlobStore(inner: try DiskBlobStore(root: folder.url, urlSigner: signer), keyring: keys, urlSigner: signer, personalFolders: ["images"])
        let sealed = try await keys.sealExisting(in: blobs)
        #expect(sealed.secrets == 1)
        let stored = try #require(try await database.user(id: ada)?.totpSecret)
        #expect(DataKeys.isSealed(stored))
        #expect(try await keys.open(secret: stored, owner: ada) == "PLAINFROMBEFORE")
        #expect(try await database.existingDataSealed())
        #expect(try await keys.sealExisting(in: blobs) == (0, 0))
    }

    @Test("No data key is made for an account whose purge has begun")
    func refusedWhilePurging() async throws {
        let database = try AppDatabase.inMemory()
        let userID = try await self.makeUser(database)
        _ = try await database.requestAccountDeletion(
            userID: userID, mail: MailDraft(kind: "test", toEmail: "ada@example.org", toName: nil, subject: "Bye", text: "Bye", html: nil, messageID: "<bye@example.org>"),
            outcome: "scheduled"
        )
        _ = try await database.beginPurge(userID: userID, newPseudonym: "deleted-x")
        let keys = DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))
        await #expect(throws: DataKeyRefusal.accountClosing(userID)) { _ = try await keys.dataKey(forOwner: userID) }
        await #expect(throws: DataKeyRefusal.accountClosing(999)) { _ = try await keys.dataKey(forOwner: 999) }
    }

    @Test("rotate-master re-wraps every data key under a new key, drops the old one, and everything still opens")
    func rotation() async throws {
        let folder = try TemporaryDirectory("easel-keys")
        defer { folder.remove() }
        let file = folder.url.appending(path: "master.key")
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        let bob = try await self.makeUser(database, email: "bob@example.org")
        let before = try MasterKeyFile.loadOrCreate(at: file)
        let keys = DataKeys(database: database, masterKeys: before)
        let adaKey = try await keys.dataKey(forOwner: ada)
        let bobKey = try await keys.dataKey(forOwner: bob)
        let sealed = try await keys.seal(secret: "secret of ada", owner: ada)

        let rotation = try await DataKeys.rotateMaster(database: database, keyFile: file)
        #expect(rotation.rewrapped == 2)
        #expect(rotation.retiredKeyIDs == [before.current.id])
        // The retired key is kept for older backups, private like the key file.
        let retired = try MasterKeyFile.load(at: rotation.retiredFile)
        #expect(retired.keys.map(\.id) == [before.current.id])
        #expect((try FileManager.default.attributesOfItem(atPath: rotation.retiredFile.path)[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let after = try MasterKeyFile.load(at: file)
        #expect(after.keys.map(\.id) == [rotation.newKeyID])
        #expect(after.key(id: before.current.id) == nil)
        #expect(try await database.allDataKeys().allSatisfy { $0.masterKeyID == rotation.newKeyID && $0.rewrappedAt != nil })

        let reopened = DataKeys(database: database, masterKeys: after)
        #expect(try await reopened.dataKey(id: adaKey.id).map { bytes($0.key) } == bytes(adaKey.key))
        #expect(try await reopened.dataKey(id: bobKey.id).map { bytes($0.key) } == bytes(bobKey.key))
        #expect(try await reopened.open(secret: sealed, owner: ada) == "secret of ada")
        // The old master key alone no longer opens anything.
        await #expect(throws: MasterKeyFile.Failure.self) { _ = try await DataKeys(database: database, masterKeys: before).dataKey(id: adaKey.id) }
        #expect(try await DataKeys.check(database: database, keyFile: file).unreadable.isEmpty)
    }

    @Test("A key file that lost the key in use is caught by the check, naming the accounts affected")
    func checkFindsUnreadable() async throws {
        let folder = try TemporaryDirectory("easel-keys")
        defer { folder.remove() }
        let file = folder.url.appending(path: "master.key")
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        _ = try await DataKeys(database: database, masterKeys: try MasterKeyFile.loadOrCreate(at: file)).dataKey(forOwner: ada)
        try MasterKeyFile.replace(at: file, with: MasterKeyring(keys: [MasterKeyring.newKey()]))
        let check = try await DataKeys.check(database: database, keyFile: file)
        #expect(check.dataKeys == 1)
        #expect(check.unreadable == [ada])
    }

    @Test("A rotation stopped after the new key was added leaves a file that opens keys under either")
    func interruptedRotation() async throws {
        let folder = try TemporaryDirectory("easel-keys")
        defer { folder.remove() }
        let file = folder.url.appending(path: "master.key")
        let database = try AppDatabase.inMemory()
        let ada = try await self.makeUser(database)
        let before = try MasterKeyFile.loadOrCreate(at: file)
        let adaKey = try await DataKeys(database: database, masterKeys: before).dataKey(forOwner: ada)
        // Step 1 done, step 2 not: the file has both keys, the rows still the old one.
        let widened = before.adding(MasterKeyring.newKey())
        try MasterKeyFile.replace(at: file, with: widened)
        let loaded = try MasterKeyFile.load(at: file)
        #expect(loaded.keys.count == 2)
        #expect(try await DataKeys(database: database, masterKeys: loaded).dataKey(id: adaKey.id).map { bytes($0.key) } == bytes(adaKey.key))
        // Running it again finishes the job.
        let rotation = try await DataKeys.rotateMaster(database: database, keyFile: file)
        #expect(rotation.rewrapped == 1)
        #expect(try MasterKeyFile.load(at: file).keys.count == 1)
        #expect(try await DataKeys.check(database: database, keyFile: file).unreadable.isEmpty)
    }
}

private func bytes(_ key: some ContiguousBytes) -> Data {
    key.withUnsafeBytes { Data($0) }
}
