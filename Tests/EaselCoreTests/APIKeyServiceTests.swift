import Crypto
import EaselStore
import Foundation
import GRDB
import Testing

@testable import EaselCore

@Suite("API keys")
struct APIKeyServiceTests {
    /// A confirmed (or, when asked, unconfirmed) account, made through the store.
    func makeUser(_ database: AppDatabase, email: String = "ada@example.org", verified: Bool = true) async throws -> User {
        let user = try await database.createAccount(
            NewAccount(email: email, passwordHash: nil, displayName: "Ada", language: nil, termsVersion: "test"),
            verification: NewEmailToken(purpose: .verifyEmail, tokenHash: Data("token \(email)".utf8), expiresAt: Date().addingTimeInterval(3600)),
            mail: MailDraft(
                kind: "verify_email",
                toEmail: email,
                toName: nil,
                subject: "Confirm",
                text: "Confirm",
                html: nil,
                messageID: "<\(email)>"
            )
        )
        guard verified else { return user }
        return try #require(try await database.verifyEmail(tokenHash: Data("token \(email)".utf8)))
    }

    @Test("A key is easel_ + 8-character id + _ + 43 base62 characters (over 128 bits), drawn from the whole alphabet")
    func keyFormatAndEntropy() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        let new = try await service.create(for: user, name: "script", scopes: [.read], expiresAt: nil)
        #expect(new.secret.wholeMatch(of: /easel_[a-z0-9]{8}_[A-Za-z0-9]{43}/) != nil, "\(new.secret)")
        #expect(new.secret.hasPrefix(new.key.prefix + "_"))
        #expect(new.key.prefix.count == "easel_".count + 8)
        let secretPart = try #require(new.secret.split(separator: "_").last)
        #expect(Double(secretPart.count) * log2(62) >= 128)

        // Many keys: all distinct, and every one of the 62 characters turns up in the secrets
        // (a generator drawing from a smaller alphabet, or a fixed one, fails this).
        let generated = (0..<300).map { _ in APIKeyService.generate() }
        #expect(Set(generated.map(\.key)).count == 300)
        #expect(Set(generated.map(\.prefix)).count == 300)
        let seen = Set(generated.flatMap { $0.key.split(separator: "_").last! })
        #expect(seen.count == 62)
        #expect(generated.allSatisfy { APIKeyService.prefix(of: $0.key) == $0.prefix })
    }

    @Test("Only the prefix and the SHA-256 of the whole key are stored; the key itself appears nowhere in the database")
    func storesHashOnly() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        let new = try await service.create(for: user, name: "script", scopes: [.generate, .read], expiresAt: nil)
        let fetched: Row? = try database.writer.read { db in try Row.fetchOne(db, sql: "SELECT * FROM api_key") }
        let row = try #require(fetched)
        #expect(row["secret_hash"] as Data == Data(SHA256.hash(data: Data(new.secret.utf8))))
        #expect(row["prefix"] as String == new.key.prefix)
        #expect(row["scopes"] as String == "generate,read")
        let secretPart = String(new.secret.split(separator: "_").last!)
        for column in row.columnNames {
            let text = row[column].map { "\($0)" } ?? ""
            #expect(!text.contains(secretPart), "column \(column) holds the secret")
        }
    }

    @Test("authenticate answers the owner and key for the right key only")
    func authenticatesTheRightKeyOnly() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        let new = try await service.create(for: user, name: "script", scopes: [.read, .account], expiresAt: nil)
        let found = try #require(try await service.authenticate(bearer: new.secret))
        #expect(found.user.id == user.id)
        #expect(found.key.id == new.key.id)
        #expect(found.scopes == [.read, .account])

        // Same prefix, one character of the secret changed.
        var forged = Array(new.secret)
        forged[forged.count - 1] = forged.last == "a" ? "b" : "a"
        #expect(try await service.authenticate(bearer: String(forged)) == nil)
        #expect(try await service.authenticate(bearer: new.key.prefix) == nil)
        #expect(try await service.authenticate(bearer: new.secret + "x") == nil)
        #expect(try await service.authenticate(bearer: "") == nil)
    }

    @Test("An expired key stops working at its expiry")
    func expiry() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        // Whole seconds: SQLite keeps dates to the millisecond, so the boundary is exact.
        let now = Date(timeIntervalSince1970: (Date().timeIntervalSince1970).rounded(.down))
        let expiresAt = try #require(try APIKeyService.expiry(days: 1, from: now))
        #expect(expiresAt.timeIntervalSince(now) == 86400)
        let new = try await service.create(for: user, name: "short-lived", scopes: [.read], expiresAt: expiresAt, now: now)
        #expect(try await service.authenticate(bearer: new.secret, now: now.addingTimeInterval(3600)) != nil)
        #expect(try await service.authenticate(bearer: new.secret, now: now.addingTimeInterval(86400 - 0.001)) != nil)
        #expect(try await service.authenticate(bearer: new.secret, now: now.addingTimeInterval(86400)) == nil)
        #expect(try await service.authenticate(bearer: new.secret, now: now.addingTimeInterval(2 * 86400)) == nil)
        // Expiries outside 1…3650 days, or in the past, are refused.
        #expect(throws: APIKeyService.CreateError.invalidExpiry) { try APIKeyService.expiry(days: 0) }
        #expect(throws: APIKeyService.CreateError.invalidExpiry) { try APIKeyService.expiry(days: 3651) }
        await #expect(throws: APIKeyService.CreateError.invalidExpiry) {
            try await service.create(for: user, name: "past", scopes: [.read], expiresAt: now.addingTimeInterval(-1), now: now)
        }
    }

    @Test("A revoked key stops working at once; only its owner can revoke it")
    func revocation() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let ada = try await self.makeUser(database)
        let eve = try await self.makeUser(database, email: "eve@example.org")
        let new = try await service.create(for: ada, name: "script", scopes: [.read], expiresAt: nil)
        #expect(try await service.revoke(keyID: new.key.id!, for: eve) == false)
        #expect(try await service.authenticate(bearer: new.secret) != nil)
        #expect(try await service.revoke(keyID: new.key.id!, for: ada) == true)
        #expect(try await service.authenticate(bearer: new.secret) == nil)
        #expect(try await service.revoke(keyID: new.key.id!, for: ada) == false, "already revoked")
        #expect(try await service.keys(for: ada).isEmpty, "revoked keys leave the list")
    }

    @Test("A suspended account's keys do not authenticate, and come back when it is restored")
    func suspendedUser() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        let new = try await service.create(for: user, name: "script", scopes: [.read], expiresAt: nil)
        try await database.writer.write { db in try db.execute(sql: "UPDATE user SET status = 'suspended' WHERE id = ?", arguments: [user.id!]) }
        #expect(try await service.authenticate(bearer: new.secret) == nil)
        try await database.writer.write { db in try db.execute(sql: "UPDATE user SET status = 'active' WHERE id = ?", arguments: [user.id!]) }
        #expect(try await service.authenticate(bearer: new.secret) != nil)
        // A suspended account cannot make keys either.
        let suspended = try #require(try await database.user(id: user.id!)).with { $0.status = .suspended }
        await #expect(throws: APIKeyService.CreateError.accountNotActive) {
            try await service.create(for: suspended, name: "x", scopes: [.read], expiresAt: nil)
        }
    }

    @Test("Names, scopes, confirmation and the number of active keys are checked")
    func validation() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database, maximumActiveKeys: 2)
        let user = try await self.makeUser(database)
        await #expect(throws: APIKeyService.CreateError.nameMissing) {
            try await service.create(for: user, name: "  ", scopes: [.read], expiresAt: nil)
        }
        await #expect(throws: APIKeyService.CreateError.nameTooLong) {
            try await service.create(for: user, name: String(repeating: "n", count: 61), scopes: [.read], expiresAt: nil)
        }
        _ = try await service.create(for: user, name: String(repeating: "n", count: 60), scopes: [.read], expiresAt: nil)
        await #expect(throws: APIKeyService.CreateError.noScopes) { try await service.create(for: user, name: "x", scopes: [], expiresAt: nil) }
        #expect(throws: APIKeyService.CreateError.unknownScope("paint")) { try APIScope.parse("read,paint") }
        #expect(try APIScope.parse(" Generate, read ") == [.generate, .read])

        let second = try await service.create(for: user, name: "second", scopes: [.read], expiresAt: nil)
        await #expect(throws: APIKeyService.CreateError.tooManyKeys(limit: 2)) {
            try await service.create(for: user, name: "third", scopes: [.read], expiresAt: nil)
        }
        // A revoked key frees its place.
        _ = try await service.revoke(keyID: second.key.id!, for: user)
        _ = try await service.create(for: user, name: "third", scopes: [.read], expiresAt: nil)

        let unconfirmed = try await self.makeUser(database, email: "new@example.org", verified: false)
        await #expect(throws: APIKeyService.CreateError.accountNotActive) {
            try await service.create(for: unconfirmed, name: "x", scopes: [.read], expiresAt: nil)
        }
    }

    @Test("Use is recorded, at most once a minute")
    func lastUsedAtMostOnceAMinute() async throws {
        let database = try AppDatabase.inMemory()
        let service = APIKeyService(database: database)
        let user = try await self.makeUser(database)
        let t0 = Date(timeIntervalSinceReferenceDate: 800_000_000)
        let new = try await service.create(for: user, name: "script", scopes: [.read], expiresAt: nil, now: t0)
        #expect(new.key.lastUsedAt == nil)
        _ = try await service.authenticate(bearer: new.secret, now: t0.addingTimeInterval(10))
        #expect(try await service.keys(for: user).first?.lastUsedAt == t0.addingTimeInterval(10))
        _ = try await service.authenticate(bearer: new.secret, now: t0.addingTimeInterval(40))
        #expect(try await service.keys(for: user).first?.lastUsedAt == t0.addingTimeInterval(10))
        // The store itself refuses a second write within the minute, whoever calls it.
        try await database.touchAPIKey(id: new.key.id!, now: t0.addingTimeInterval(50))
        #expect(try await service.keys(for: user).first?.lastUsedAt == t0.addingTimeInterval(10))
        _ = try await service.authenticate(bearer: new.secret, now: t0.addingTimeInterval(75))
        #expect(try await service.keys(for: user).first?.lastUsedAt == t0.addingTimeInterval(75))
    }
}

extension User {
    fileprivate func with(_ change: (inout User) -> Void) -> User {
        var copy = self
        change(&copy)
        return copy
    }
}
