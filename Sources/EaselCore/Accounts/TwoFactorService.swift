import EaselStore
import Foundation
import HummingbirdOTP

/// TOTP two-factor (RFC 6238: 30 s steps, 6 digits, HMAC-SHA1) with hashed one-time recovery codes.
public struct TwoFactorService: Sendable {
    public static let recoveryCodeCount = 10

    private let database: AppDatabase
    private let mails: AccountMails
    private let issuer: String
    /// Seals the TOTP secret under the person's data key before it is stored.
    private let secrets: DataKeys

    public init(database: AppDatabase, mails: AccountMails, issuer: String, secrets: DataKeys) {
        self.database = database
        self.mails = mails
        self.issuer = issuer
        self.secrets = secrets
    }

    public struct Setup: Sendable {
        /// For typing into an authenticator app by hand.
        public var base32Secret: String
        /// otpauth://totp/… for a QR code or a tap on a phone.
        public var uri: String
    }

    /// Starts (or restarts) setup with a new secret that is kept until confirmed by a code.
    public func beginSetup(for user: User) async throws -> Setup {
        // The OTP library keys HMAC with the secret's UTF-8 bytes: 32 random alphanumerics give
        // a 256-bit key with about 190 bits of entropy (RFC 6238 asks for at least 160).
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        let secret = String((0..<32).map { _ in alphabet.randomElement(using: &generator)! })
        try await self.database.storePendingTOTPSecret(userID: user.id!, secret: try await self.secrets.seal(secret: secret, owner: user.id!))
        return self.setup(secret: secret, email: user.email)
    }

    func setup(secret: String, email: String) -> Setup {
        let uri = TOTP(secret: secret).createAuthenticatorURL(label: "\(self.issuer):\(email)", issuer: self.issuer)
        let base32 = URLComponents(string: uri)?.queryItems?.first { $0.name == "secret" }?.value ?? ""
        return Setup(base32Secret: base32, uri: uri)
    }

    /// The setup of the secret waiting for confirmation, to show the page again.
    public func pendingSetup(for user: User) async throws -> Setup? {
        guard !user.hasTwoFactor, let secret = try await self.secret(of: user) else { return nil }
        return self.setup(secret: secret, email: user.email)
    }

    /// The person's TOTP secret, unsealed.
    private func secret(of user: User) async throws -> String? {
        guard let stored = user.totpSecret, let id = user.id else { return nil }
        return try await self.secrets.open(secret: stored, owner: id)
    }

    /// Confirms setup with a code from the app; returns the recovery codes to show once, or nil
    /// when the code is wrong.
    public func confirmSetup(for user: User, code: String, now: Date = Date()) async throws -> [String]? {
        guard !user.hasTwoFactor, let secret = try await self.secret(of: user), let step = Self.matchingStep(secret: secret, code: code, now: now) else {
            return nil
        }
        let codes = (0..<Self.recoveryCodeCount).map { _ in Self.recoveryCode() }
        try await self.database.enableTwoFactor(
            userID: user.id!, step: step, recoveryCodeHashes: codes.map { SecureToken.hash(Self.normalizeRecovery($0)) },
            mail: self.mails.twoFactorChanged(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, enabled: true, language: user.preferredLanguage)
        )
        return codes
    }

    /// Checks a code at sign-in: a TOTP code of the current or previous step, never one
    /// accepted before, or an unused recovery code (used up by this).
    public func verify(user: User, code: String, now: Date = Date()) async throws -> Bool {
        guard user.hasTwoFactor, let secret = try await self.secret(of: user), let id = user.id else { return false }
        let digits = code.filter(\.isNumber)
        if digits.count == 6, code.filter({ !$0.isWhitespace }).count == 6, let step = Self.matchingStep(secret: secret, code: digits, now: now) {
            return try await self.database.claimTOTPStep(userID: id, step: step)
        }
        return try await self.database.useRecoveryCode(userID: id, codeHash: SecureToken.hash(Self.normalizeRecovery(code)))
    }

    public func disable(for user: User) async throws {
        try await self.database.disableTwoFactor(
            userID: user.id!,
            mail: self.mails.twoFactorChanged(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, enabled: false, language: user.preferredLanguage)
        )
    }

    /// The time step whose code matches: the current one or the one before (clock drift).
    static func matchingStep(secret: String, code: String, now: Date) -> Int64? {
        let digits = code.filter(\.isNumber)
        guard digits.count == 6, let value = Int(digits) else { return nil }
        let totp = TOTP(secret: secret)
        let current = Int64(now.timeIntervalSince1970) / 30
        for step in [current, current - 1] where totp.compute(date: Date(timeIntervalSince1970: Double(step * 30))) == value {
            return step
        }
        return nil
    }

    /// "k7q2-m9xp-4hdw": 60 bits from an alphabet without look-alike characters.
    static func recoveryCode() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        let chars = (0..<12).map { _ in alphabet.randomElement(using: &generator)! }
        return stride(from: 0, to: 12, by: 4).map { String(chars[$0..<$0 + 4]) }.joined(separator: "-")
    }

    static func normalizeRecovery(_ code: String) -> String {
        code.lowercased().filter { $0.isLetter || $0.isNumber }
    }
}
