import EaselStore
import Foundation
import HummingbirdOTP
import Logging
import Testing

@testable import EaselCore

@Suite("Two-factor sign-in (TOTP)")
struct TwoFactorTests {
    func makeUser(_ database: AppDatabase) async throws -> User {
        let mails = AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded())
        let accounts = AccountService(settings: .init(), database: database, hasher: PasswordHasher(cost: 4), mails: mails, logger: Logger(label: "test"))
        try await accounts.signUp(.init(email: "ada@example.org", password: "correct horse battery", displayName: "Ada", ageConfirmed: true, termsAccepted: true))
        return try #require(try await database.user(email: "ada@example.org"))
    }

    static let masterKeys = MasterKeyring(keys: [MasterKeyring.newKey()])

    func service(_ database: AppDatabase) throws -> TwoFactorService {
        TwoFactorService(
            database: database, mails: AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded()),
            issuer: "Easel", secrets: DataKeys(database: database, masterKeys: Self.masterKeys)
        )
    }

    /// The code an authenticator app shows; the secret is stored sealed, so it is opened first.
    func code(_ user: User, at date: Date, in database: AppDatabase) async throws -> String {
        let secret = try await DataKeys(database: database, masterKeys: Self.masterKeys).open(secret: try #require(user.totpSecret), owner: user.id!)
        return String(format: "%06d", TOTP(secret: try #require(secret)).compute(date: date))
    }

    @Test("Setup gives an otpauth URI with a base32 key of at least 160 bits, and needs a right code")
    func setup() async throws {
        let database = try AppDatabase.inMemory()
        let twoFactor = try self.service(database)
        var user = try await self.makeUser(database)
        let setup = try await twoFactor.beginSetup(for: user)
        #expect(setup.uri.hasPrefix("otpauth://totp/"))
        #expect(setup.uri.contains("issuer=Easel"))
        #expect(setup.base32Secret.count * 5 >= 160)
        user = try #require(try await database.user(id: user.id!))
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let wrong = try await self.code(user, at: now, in: database) == "000000" ? "111111" : "000000"
        #expect(try await twoFactor.confirmSetup(for: user, code: wrong, now: now) == nil)
        #expect(try await database.user(id: user.id!)?.hasTwoFactor == false)
        let codes = try #require(try await twoFactor.confirmSetup(for: user, code: try await self.code(user, at: now, in: database), now: now))
        #expect(codes.count == 10)
        #expect(Set(codes).count == 10)
        #expect(try await database.user(id: user.id!)?.hasTwoFactor == true)
        #expect(try await database.recentMails().first?.kind == "two_factor_on")
    }

    @Test("A code is accepted for the current or previous step only, and never twice")
    func codesAreSingleUse() async throws {
        let database = try AppDatabase.inMemory()
        let twoFactor = try self.service(database)
        var user = try await self.makeUser(database)
        _ = try await twoFactor.beginSetup(for: user)
        user = try #require(try await database.user(id: user.id!))
        let t0 = Date(timeIntervalSince1970: 1_800_000_010)
        _ = try #require(try await twoFactor.confirmSetup(for: user, code: try await self.code(user, at: t0, in: database), now: t0))
        user = try #require(try await database.user(id: user.id!))

        // The code that turned it on cannot sign in.
        #expect(try await twoFactor.verify(user: user, code: try await self.code(user, at: t0, in: database), now: t0) == false)
        let t1 = t0.addingTimeInterval(30)
        let next = try await self.code(user, at: t1, in: database)
        // Accepted 30 s late (previous step), then never again.
        #expect(try await twoFactor.verify(user: user, code: next, now: t1.addingTimeInterval(30)) == true)
        #expect(try await twoFactor.verify(user: user, code: next, now: t1.addingTimeInterval(30)) == false)
        // Two steps old is too old.
        let t3 = t0.addingTimeInterval(90)
        #expect(try await twoFactor.verify(user: user, code: try await self.code(user, at: t3, in: database), now: t3.addingTimeInterval(60)) == false)
    }

    @Test("Recovery codes work once each, in any case and spacing")
    func recoveryCodes() async throws {
        let database = try AppDatabase.inMemory()
        let twoFactor = try self.service(database)
        var user = try await self.makeUser(database)
        _ = try await twoFactor.beginSetup(for: user)
        user = try #require(try await database.user(id: user.id!))
        let now = Date()
        let codes = try #require(try await twoFactor.confirmSetup(for: user, code: try await self.code(user, at: now, in: database), now: now))
        user = try #require(try await database.user(id: user.id!))
        #expect(try await twoFactor.verify(user: user, code: codes[3].uppercased().replacingOccurrences(of: "-", with: " ")) == true)
        #expect(try await twoFactor.verify(user: user, code: codes[3]) == false)
        #expect(try await twoFactor.verify(user: user, code: "aaaa-bbbb-cccc") == false)
        #expect(try await database.unusedRecoveryCodeCount(userID: user.id!) == 9)
        try await twoFactor.disable(for: user)
        #expect(try await database.user(id: user.id!)?.hasTwoFactor == false)
        #expect(try await database.unusedRecoveryCodeCount(userID: user.id!) == 0)
    }

    @Test("bcrypt runs at cost 12 by default and passwords longer than 72 bytes are refused")
    func passwordHashing() async throws {
        let hasher = PasswordHasher()
        #expect(hasher.cost >= 12)
        let hash = await hasher.hash("correct horse battery")
        #expect(hash.hasPrefix("$2b$12$") || hash.hasPrefix("$2a$12$") || hash.hasPrefix("$2y$12$"))
        #expect(await hasher.verify("correct horse battery", hash: hash))
        #expect(await hasher.verify("correct horse batterY", hash: hash) == false)
        #expect(PasswordHasher(cost: 13).needsRehash(hash))
        #expect(PasswordPolicy.check(String(repeating: "a", count: 73), email: "x@example.org") == .tooLong)
        #expect(PasswordPolicy.check(String(repeating: "ab", count: 36), email: "x@example.org") == nil)
    }
}
