import EaselStore
import Foundation
import Logging

/// Account rules: sign-up, verification, sign-in with throttling, sessions, password reset.
public struct AccountService: Sendable {
    public enum SignupMode: String, Sendable, CaseIterable { case open, invite, closed }

    public struct Settings: Sendable {
        public var signup: SignupMode
        /// Lowercased domains allowed to sign up; empty allows all.
        public var allowedDomains: [String]
        public var minimumAge: Int
        /// The policy version recorded at sign-up: EASEL_POLICY_VERSION, set by the composition root.
        public var termsVersion: String
        public var sessionIdle: TimeInterval
        public var sessionMax: TimeInterval
        /// Credits every new account starts with (EASEL_SIGNUP_CREDITS).
        public var signupCredits: Int

        public init(
            signup: SignupMode = .open, allowedDomains: [String] = [], minimumAge: Int = 13, termsVersion: String = PolicyFacts.shippedVersion,
            sessionIdle: TimeInterval = 7 * 86400, sessionMax: TimeInterval = 30 * 86400, signupCredits: Int = 0
        ) {
            self.signupCredits = signupCredits
            self.signup = signup
            self.allowedDomains = allowedDomains
            self.minimumAge = minimumAge
            self.termsVersion = termsVersion
            self.sessionIdle = sessionIdle
            self.sessionMax = sessionMax
        }
    }

    public struct SignUpRequest: Sendable {
        public var email: String
        public var password: String
        public var displayName: String
        public var ageConfirmed: Bool
        public var termsAccepted: Bool
        public var language: String?
        /// The visitor's theme (preferences cookie), kept in the new profile.
        public var theme: User.Theme
        /// The raw token of an admin's invitation, from the invitation link.
        public var invitation: String?

        public init(
            email: String, password: String, displayName: String, ageConfirmed: Bool, termsAccepted: Bool, language: String? = nil,
            theme: User.Theme = .system, invitation: String? = nil
        ) {
            self.email = email
            self.password = password
            self.displayName = displayName
            self.ageConfirmed = ageConfirmed
            self.termsAccepted = termsAccepted
            self.language = language
            self.theme = theme
            self.invitation = invitation
        }
    }

    public enum SignUpError: Error, Equatable {
        case invalidEmail
        case password(PasswordPolicy.Problem)
        case displayNameTooLong
        case ageNotConfirmed
        case termsNotAccepted
        case closed
        case inviteOnly
        case domainNotAllowed
        /// The invitation is unknown, used, expired, or made out to another address.
        case invitationInvalid
    }

    public enum SignInResult: Sendable, Equatable {
        case signedIn(User)
        /// Too many failures: try again after this many seconds.
        case throttled(retryAfter: Int)
        /// One answer for an unknown address and a wrong password.
        case invalid
        case unverified(User)
        case suspended
    }

    /// A new session: the token goes in the cookie, only its hash in the database.
    public struct NewSession: Sendable {
        public var token: String
        public var session: Session
    }

    public let settings: Settings
    private let database: AppDatabase
    private let hasher: PasswordHasher
    private let mails: AccountMails
    private let logger: Logger
    /// A hash to check wrong addresses against, so a miss takes as long as a wrong password.
    private let decoyHash: String

    public init(settings: Settings, database: AppDatabase, hasher: PasswordHasher, mails: AccountMails, logger: Logger) {
        self.settings = settings
        self.database = database
        self.hasher = hasher
        self.mails = mails
        self.logger = logger
        self.decoyHash = "$2b$\(String(format: "%02d", hasher.cost))$C6UzMDM.H6dfI/f/IKcEeO5Q6V8/XG9c7Y7U5LJHrrtE1Y9Bs3Hxa"
    }

    public static func normalizedEmail(_ raw: String) -> String? {
        let email = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
            email.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0 != "<" && $0 != ">" && $0 != "," && $0 != ";" && $0 != "\"" })
        else { return nil }
        return email
    }

    // MARK: Sign-up and verification

    /// Creates the account and queues its verification mail. For an address that already has an
    /// account, queues a notice to that address instead: the person signing up sees the same
    /// answer either way, so sign-up cannot be used to find out who has an account.
    public func signUp(_ request: SignUpRequest) async throws {
        // An admin's invitation works in every mode: inviting is the admin's deliberate choice.
        let invitation = request.invitation.flatMap { $0.isEmpty ? nil : $0 }
        if invitation == nil {
            switch self.settings.signup {
            case .closed: throw SignUpError.closed
            case .invite: throw SignUpError.inviteOnly
            case .open: break
            }
        }
        guard let email = Self.normalizedEmail(request.email) else { throw SignUpError.invalidEmail }
        if invitation == nil, !self.settings.allowedDomains.isEmpty, let domain = email.split(separator: "@").last,
            !self.settings.allowedDomains.contains(String(domain))
        {
            throw SignUpError.domainNotAllowed
        }
        if let problem = PasswordPolicy.check(request.password, email: email) { throw SignUpError.password(problem) }
        let name = request.displayName.trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.count <= 80 else { throw SignUpError.displayNameTooLong }
        guard request.ageConfirmed else { throw SignUpError.ageNotConfirmed }
        guard request.termsAccepted else { throw SignUpError.termsNotAccepted }

        let hash = await self.hasher.hash(request.password)
        let token = SecureToken.make()
        let code = SecureToken.sixDigitCode()
        let verification = NewEmailToken(
            purpose: .verifyEmail, tokenHash: SecureToken.hash(token), codeHash: SecureToken.hash(code),
            expiresAt: Date().addingTimeInterval(24 * 3600)
        )
        do {
            let user = try await self.database.createAccount(
                NewAccount(
                    email: email, passwordHash: hash, displayName: name, language: request.language, theme: request.theme,
                    termsVersion: self.settings.termsVersion, signupCredits: self.settings.signupCredits
                ),
                verification: verification,
                mail: self.mails.verification(to: email, name: name.isEmpty ? nil : name, token: token, code: code, language: Language(code: request.language) ?? .english),
                invitationTokenHash: invitation.map(SecureToken.hash)
            )
            self.logger.info("account created", metadata: ["user": "\(user.id ?? 0)", "role": "\(user.role.rawValue)"])
        } catch AccountStoreError.emailTaken {
            // The notice goes to the existing owner, in the language of their profile.
            let owner = try await self.database.user(email: email)
            try await self.database.queueMail(self.mails.alreadyRegistered(to: email, name: nil, language: owner?.preferredLanguage ?? .english))
        } catch InvitationError.invalid {
            throw SignUpError.invitationInvalid
        }
    }

    // MARK: Invitations

    public static let invitationLifetime: TimeInterval = 7 * 86400

    /// Mails a single-use invitation, valid for a week, to `email`.
    public func invite(email raw: String, role: User.Role, by admin: User) async throws {
        guard let email = Self.normalizedEmail(raw) else { throw SignUpError.invalidEmail }
        let token = SecureToken.make()
        _ = try await self.database.createInvitation(
            email: email, tokenHash: SecureToken.hash(token), role: role, invitedBy: admin.id!,
            expiresAt: Date().addingTimeInterval(Self.invitationLifetime),
            // The invitee has no profile yet: write in the inviting admin's language.
            mail: self.mails.invitation(
                to: email, from: admin.displayName.isEmpty ? admin.email : admin.displayName, token: token, language: admin.preferredLanguage
            )
        )
    }

    /// The invitation a link carries, while it can still be used.
    public func invitation(token: String) async throws -> Invitation? {
        try await self.database.usableInvitation(tokenHash: SecureToken.hash(token))
    }

    /// Follows the mailed link. Nil for an unknown, used or expired token.
    public func verify(token: String) async throws -> User? {
        try await self.database.verifyEmail(tokenHash: SecureToken.hash(token))
    }

    /// The 6-digit code, typed in; five tries per code.
    public func verify(email: String, code: String) async throws -> User? {
        guard let email = Self.normalizedEmail(email), let user = try await self.database.user(email: email), let id = user.id else {
            return nil
        }
        let digits = code.filter(\.isNumber)
        return try await self.database.verifyEmail(userID: id, codeHash: SecureToken.hash(digits), maxAttempts: 5)
    }

    /// Sends a fresh verification mail when the address has an unverified account; nothing otherwise.
    public func resendVerification(email: String) async throws {
        guard let email = Self.normalizedEmail(email), let user = try await self.database.user(email: email), let id = user.id,
            !user.isVerified
        else { return }
        let token = SecureToken.make()
        let code = SecureToken.sixDigitCode()
        try await self.database.issueEmailToken(
            NewEmailToken(purpose: .verifyEmail, tokenHash: SecureToken.hash(token), codeHash: SecureToken.hash(code), expiresAt: Date().addingTimeInterval(24 * 3600)),
            userID: id,
            mail: self.mails.verification(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, token: token, code: code, language: user.preferredLanguage)
        )
    }

    // MARK: Sign-in

    /// Checks the password, with throttling per account and per address (SECURITY.md: at most
    /// 100 failures an hour per account, growing delays after the fifth).
    public func signIn(email rawEmail: String, password: String, ip: String, now: Date = Date()) async throws -> SignInResult {
        let email = Self.normalizedEmail(rawEmail) ?? rawEmail.lowercased()
        if let wait = try await self.throttleDelay(email: email, ip: ip, now: now) {
            return .throttled(retryAfter: wait)
        }
        let user = try await self.database.user(email: email)
        let matches = await self.hasher.verify(password, hash: user?.passwordHash ?? self.decoyHash)
        guard let user, matches, user.passwordHash != nil else {
            try await self.database.recordLoginFailure(email: email, ip: ip, at: now)
            return .invalid
        }
        try await self.database.clearLoginFailures(email: email)
        if self.hasher.needsRehash(user.passwordHash!), let id = user.id {
            try await self.database.updatePasswordHash(userID: id, hash: await self.hasher.hash(password))
        }
        if user.status == .suspended { return .suspended }
        if !user.isVerified { return .unverified(user) }
        return .signedIn(user)
    }

    /// Seconds to wait before another try, or nil.
    public func throttleDelay(email: String, ip: String, now: Date = Date()) async throws -> Int? {
        let hourAgo = now.addingTimeInterval(-3600)
        let failures = try await self.database.loginFailures(email: email, ip: ip, since: hourAgo)
        guard let latest = failures.latest else { return nil }
        var delay: TimeInterval = 0
        if failures.account >= 100 {
            delay = 3600
        } else if failures.account >= 5 {
            delay = min(pow(2, Double(failures.account - 5)), 900)
        }
        if failures.ip >= 50 {
            delay = max(delay, min(pow(2, Double(failures.ip - 50)), 900))
        }
        let remaining = latest.addingTimeInterval(delay).timeIntervalSince(now)
        return remaining > 0 ? Int(remaining.rounded(.up)) : nil
    }

    /// A fresh session (a new token at every sign-in, never reused). A sign-in from a device
    /// (browser and system) not seen before on this account is mailed to its owner.
    public func startSession(for user: User, userAgent: String, ip: String, country: String? = nil, now: Date = Date()) async throws -> NewSession {
        let device = DeviceName(userAgent: userAgent)
        try await self.database.rememberDevice(
            userID: user.id!, fingerprint: SecureToken.hash(device.english),
            mail: self.mails.newDevice(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, device: device, ip: ip, at: now, language: user.preferredLanguage)
        )
        let token = SecureToken.make()
        let session = try await self.database.createSession(
            Session(
                id: nil, userID: user.id!, tokenHash: SecureToken.hash(token), csrfToken: SecureToken.make(), createdAt: now,
                lastSeenAt: now, expiresAt: now.addingTimeInterval(self.settings.sessionMax),
                userAgent: String(userAgent.prefix(300)), ip: ip, country: country
            )
        )
        return NewSession(token: token, session: session)
    }

    /// The signed-in person for a cookie's token, or nil when the session is unknown, idle too
    /// long, past its absolute limit, or the account is suspended.
    public func authenticate(token: String, now: Date = Date()) async throws -> (Session, User)? {
        guard let (session, user) = try await self.database.session(tokenHash: SecureToken.hash(token)) else { return nil }
        let idleFor = now.timeIntervalSince(session.lastSeenAt)
        guard session.expiresAt > now, idleFor < self.settings.sessionIdle, user.status == .active else {
            _ = try await self.database.deleteSession(id: session.id!, userID: user.id!)
            return nil
        }
        if idleFor > 60 { try await self.database.touchSession(id: session.id!, now: now) }
        return (session, user)
    }

    public func signOut(_ session: Session) async throws {
        _ = try await self.database.deleteSession(id: session.id!, userID: session.userID)
    }

    // MARK: Password change

    public enum ChangeError: Error, Equatable {
        case wrongPassword
        case password(PasswordPolicy.Problem)
    }

    /// Asks for the current password; optionally signs out every other session; mails a notice.
    public func changePassword(user: User, current: String, new: String, signOutOthers: Bool, keepingSession: Int64?) async throws {
        guard let hash = user.passwordHash, await self.hasher.verify(current, hash: hash) else { throw ChangeError.wrongPassword }
        if let problem = PasswordPolicy.check(new, email: user.email) { throw ChangeError.password(problem) }
        try await self.database.changePassword(
            userID: user.id!, hash: await self.hasher.hash(new), keepingSession: keepingSession, signOutOthers: signOutOthers,
            mail: self.mails.passwordChanged(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, signedOutOthers: signOutOthers, language: user.preferredLanguage)
        )
    }

    public enum EmailChangeError: Error, Equatable {
        case wrongPassword
        case invalidEmail
        case sameEmail
        case taken
        case invalidToken
    }

    /// Mails a confirmation link to the new address; the change happens when it is followed.
    public func requestEmailChange(user: User, newEmail raw: String, password: String) async throws {
        guard let hash = user.passwordHash, await self.hasher.verify(password, hash: hash) else { throw EmailChangeError.wrongPassword }
        guard let email = Self.normalizedEmail(raw) else { throw EmailChangeError.invalidEmail }
        guard email != user.email else { throw EmailChangeError.sameEmail }
        // Taken addresses get the same answer as free ones would not: the person is signed in and
        // proved their password, and the change would fail at confirmation anyway.
        guard try await self.database.user(email: email) == nil else { throw EmailChangeError.taken }
        let token = SecureToken.make()
        try await self.database.issueEmailToken(
            NewEmailToken(purpose: .changeEmail, tokenHash: SecureToken.hash(token), newEmail: email, expiresAt: Date().addingTimeInterval(24 * 3600)),
            userID: user.id!,
            mail: self.mails.confirmNewEmail(to: email, name: user.displayName.isEmpty ? nil : user.displayName, token: token, language: user.preferredLanguage)
        )
    }

    /// Follows the link mailed to the new address.
    public func confirmEmailChange(token: String) async throws -> User {
        let mails = self.mails
        do {
            guard
                let (_, updated) = try await self.database.confirmEmailChange(
                    tokenHash: SecureToken.hash(token),
                    notice: { old in mails.emailChanged(to: old.email, name: old.displayName.isEmpty ? nil : old.displayName, language: old.preferredLanguage) }
                )
            else { throw EmailChangeError.invalidToken }
            return updated
        } catch AccountStoreError.emailTaken {
            throw EmailChangeError.taken
        }
    }

    /// Creates a confirmed admin, or promotes an existing account (`easel admin create`).
    public func createAdmin(email rawEmail: String, password: String?) async throws -> (User, created: Bool) {
        guard let email = Self.normalizedEmail(rawEmail) else { throw SignUpError.invalidEmail }
        if let password, let problem = PasswordPolicy.check(password, email: email) { throw SignUpError.password(problem) }
        let hash: String? = if let password { await self.hasher.hash(password) } else { nil }
        return try await self.database.createOrPromoteAdmin(email: email, passwordHash: hash, termsVersion: self.settings.termsVersion)
    }

    // MARK: Password reset

    /// Queues a reset mail when the address has an account; the caller answers the same either way.
    public func requestPasswordReset(email rawEmail: String) async throws {
        guard let email = Self.normalizedEmail(rawEmail), let user = try await self.database.user(email: email), let id = user.id,
            user.status == .active
        else {
            // Spend about the time a real request spends, so timing does not tell either.
            _ = await self.hasher.verify("decoy", hash: self.decoyHash)
            return
        }
        _ = try await self.issuePasswordReset(for: user, id: id)
        _ = await self.hasher.verify("decoy", hash: self.decoyHash)
    }

    /// Queues a reset mail and returns its link (the CLI prints it for a new admin).
    @discardableResult
    public func issuePasswordReset(for user: User, id: Int64) async throws -> String {
        let token = SecureToken.make()
        try await self.database.issueEmailToken(
            NewEmailToken(purpose: .resetPassword, tokenHash: SecureToken.hash(token), expiresAt: Date().addingTimeInterval(3600)),
            userID: id,
            mail: self.mails.passwordReset(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, token: token, language: user.preferredLanguage)
        )
        return self.mails.link("/reset-password", token: token)
    }

    public enum ResetError: Error, Equatable {
        case invalidToken
        case password(PasswordPolicy.Problem)
    }

    /// Sets the new password when the token is valid; signs out every session.
    public func resetPassword(token: String, newPassword: String) async throws -> User {
        guard let pending = try await self.database.pendingEmailToken(tokenHash: SecureToken.hash(token), purpose: .resetPassword),
            let user = try await self.database.user(id: pending.userID)
        else { throw ResetError.invalidToken }
        if let problem = PasswordPolicy.check(newPassword, email: user.email) { throw ResetError.password(problem) }
        let hash = await self.hasher.hash(newPassword)
        let mails = self.mails
        guard
            let updated = try await self.database.resetPassword(
                tokenHash: SecureToken.hash(token), newPasswordHash: hash,
                mail: { user in mails.passwordChanged(to: user.email, name: user.displayName.isEmpty ? nil : user.displayName, signedOutOthers: true, language: user.preferredLanguage) }
            )
        else { throw ResetError.invalidToken }
        return updated
    }
}
