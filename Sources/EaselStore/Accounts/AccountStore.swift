import Foundation
import GRDB

/// What sign-up writes, decided and hashed by the caller (EaselCore).
public struct NewAccount: Sendable {
    public var email: String
    public var passwordHash: String?
    public var displayName: String
    public var language: String?
    /// The theme the person was seeing as a visitor (their preferences cookie), kept so that
    /// signing up changes nothing they chose.
    public var theme: User.Theme
    public var termsVersion: String
    /// Welcome credits, granted in the same transaction (EASEL_SIGNUP_CREDITS).
    public var signupCredits: Int

    public init(
        email: String, passwordHash: String?, displayName: String, language: String?, theme: User.Theme = .system, termsVersion: String,
        signupCredits: Int = 0
    ) {
        self.email = email
        self.passwordHash = passwordHash
        self.displayName = displayName
        self.language = language
        self.theme = theme
        self.termsVersion = termsVersion
        self.signupCredits = signupCredits
    }
}

/// A token to store hashed; the raw value only ever travels in the mail.
public struct NewEmailToken: Sendable {
    public var purpose: EmailToken.Purpose
    public var tokenHash: Data
    public var codeHash: Data?
    public var newEmail: String?
    public var expiresAt: Date

    public init(purpose: EmailToken.Purpose, tokenHash: Data, codeHash: Data? = nil, newEmail: String? = nil, expiresAt: Date) {
        self.purpose = purpose
        self.tokenHash = tokenHash
        self.codeHash = codeHash
        self.newEmail = newEmail
        self.expiresAt = expiresAt
    }
}

public enum AccountStoreError: Error, Equatable {
    case emailTaken
    /// The account was deleted in the meantime.
    case noSuchAccount
}

extension AppDatabase {
    /// Creates an account with its verification token and mail, in one transaction. While no
    /// admin exists, the new account is the admin (the first person to sign up runs the place).
    /// With `invitationTokenHash`, the invitation (made out to this address) is used up in the
    /// same transaction and decides the role; the address counts as confirmed, since the
    /// invitation was mailed to it.
    public func createAccount(_ account: NewAccount, verification: NewEmailToken, mail: MailDraft, invitationTokenHash: Data? = nil, now: Date = Date()) async throws -> User {
        try await self.writer.write { db in
            let hasAdmin = try User.filter(User.Columns.role == User.Role.admin.rawValue).fetchCount(db) > 0
            var role: User.Role = hasAdmin ? .member : .admin
            var verifiedAt: Date?
            if let invitationTokenHash {
                let invited = try Self.consumeInvitation(db, tokenHash: invitationTokenHash, email: account.email, now: now)
                if invited == .admin { role = .admin }
                verifiedAt = now
            }
            var user = User(
                id: nil, email: account.email, emailVerifiedAt: verifiedAt, passwordHash: account.passwordHash,
                displayName: account.displayName, avatarKey: nil, role: role, status: .active,
                language: account.language, theme: account.theme, totpSecret: nil, totpEnabledAt: nil, totpLastStep: nil,
                ageConfirmedAt: now, termsVersion: account.termsVersion, termsAcceptedAt: now, createdAt: now, updatedAt: now
            )
            do {
                try user.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw AccountStoreError.emailTaken
            }
            try Self.grantSignupCredits(db, userID: user.id!, amount: account.signupCredits, now: now)
            if verifiedAt == nil {
                try Self.insertToken(verification, userID: user.id!, db: db, now: now)
                try Self.enqueue(mail, db: db, now: now)
            }
            return user
        }
    }

    /// True once an admin has confirmed their email address.
    public func hasConfirmedAdmin() async throws -> Bool {
        try await self.writer.read { db in
            try User.filter(User.Columns.role == User.Role.admin.rawValue && Column("email_verified_at") != nil).fetchCount(db) > 0
        }
    }

    public func user(id: Int64) async throws -> User? {
        try await self.writer.read { db in try User.fetchOne(db, key: id) }
    }

    public func user(email: String) async throws -> User? {
        try await self.writer.read { db in try User.filter(User.Columns.email == email.lowercased()).fetchOne(db) }
    }

    /// Queues a mail on its own (for mails not tied to another change, like "you already have an account").
    public func queueMail(_ mail: MailDraft, now: Date = Date()) async throws {
        try await self.writer.write { db in try Self.enqueue(mail, db: db, now: now) }
    }

    /// Replaces any unused token of the same purpose and queues its mail, in one transaction.
    public func issueEmailToken(_ token: NewEmailToken, userID: Int64, mail: MailDraft, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try EmailToken.filter(Column("user_id") == userID && Column("purpose") == token.purpose.rawValue && Column("used_at") == nil)
                .deleteAll(db)
            try Self.insertToken(token, userID: userID, db: db, now: now)
            // To the new address, when the address is changing: still the person's mail.
            try Self.enqueue(mail, db: db, now: now, userID: userID)
        }
    }

    /// Marks the email verified when the link's token is valid; single use. Returns the user.
    public func verifyEmail(tokenHash: Data, now: Date = Date()) async throws -> User? {
        try await self.writer.write { db in
            guard var token = try Self.usableToken(db, tokenHash: tokenHash, purpose: .verifyEmail, now: now) else { return nil }
            token.usedAt = now
            try token.update(db)
            return try Self.markVerified(userID: token.userID, db: db, now: now)
        }
    }

    /// The 6-digit alternative: at most `maxAttempts` tries per code, then a new mail is needed.
    public func verifyEmail(userID: Int64, codeHash: Data, maxAttempts: Int, now: Date = Date()) async throws -> User? {
        try await self.writer.write { db in
            guard
                var token = try EmailToken
                    .filter(Column("user_id") == userID && Column("purpose") == EmailToken.Purpose.verifyEmail.rawValue)
                    .filter(Column("used_at") == nil && Column("expires_at") > now)
                    .order(Column("id").desc).fetchOne(db),
                token.attempts < maxAttempts
            else { return nil }
            token.attempts += 1
            guard token.codeHash == codeHash else {
                try token.update(db)
                return nil
            }
            token.usedAt = now
            try token.update(db)
            return try Self.markVerified(userID: userID, db: db, now: now)
        }
    }

    /// Sets a new password hash when the reset token is valid (single use) and signs the person
    /// out everywhere. Returns the user, or nil for an unknown, used or expired token.
    public func resetPassword(tokenHash: Data, newPasswordHash: String, mail: @escaping @Sendable (User) -> MailDraft?, now: Date = Date()) async throws -> User? {
        try await self.writer.write { db in
            guard var token = try Self.usableToken(db, tokenHash: tokenHash, purpose: .resetPassword, now: now),
                var user = try User.fetchOne(db, key: token.userID)
            else { return nil }
            token.usedAt = now
            try token.update(db)
            user.passwordHash = newPasswordHash
            // Whoever could read the mail has proved they own the address.
            if user.emailVerifiedAt == nil { user.emailVerifiedAt = now }
            user.updatedAt = now
            try user.update(db)
            try Session.filter(Column("user_id") == user.id!).deleteAll(db)
            if let draft = mail(user) { try Self.enqueue(draft, db: db, now: now) }
            return user
        }
    }

    /// Replaces the password hash (on login after a cost increase, or a password change).
    public func updatePasswordHash(userID: Int64, hash: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).updateAll(db, Column("password_hash").set(to: hash), Column("updated_at").set(to: now))
        }
    }

    // MARK: Sessions

    public func createSession(_ session: Session) async throws -> Session {
        try await self.writer.write { db in
            var session = session
            try session.insert(db)
            return session
        }
    }

    /// The session with this token hash and its user, if both exist.
    public func session(tokenHash: Data) async throws -> (Session, User)? {
        try await self.writer.read { db in
            guard let session = try Session.filter(Column("token_hash") == tokenHash).fetchOne(db),
                let user = try User.fetchOne(db, key: session.userID)
            else { return nil }
            return (session, user)
        }
    }

    /// Records activity; callers do this at most once a minute per session to spare the writer.
    public func touchSession(id: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try Session.filter(key: id).updateAll(db, Column("last_seen_at").set(to: now))
        }
    }

    public func sessions(userID: Int64) async throws -> [Session] {
        try await self.writer.read { db in
            try Session.filter(Column("user_id") == userID).order(Column("last_seen_at").desc).fetchAll(db)
        }
    }

    /// Deletes one of the user's sessions; false when there was none.
    @discardableResult
    public func deleteSession(id: Int64, userID: Int64) async throws -> Bool {
        try await self.writer.write { db in
            try Session.filter(key: id).filter(Column("user_id") == userID).deleteAll(db) > 0
        }
    }

    /// Signs the user out everywhere except `keeping`.
    @discardableResult
    public func deleteSessions(userID: Int64, keeping: Int64?) async throws -> Int {
        try await self.writer.write { db in
            var request = Session.filter(Column("user_id") == userID)
            if let keeping { request = request.filter(Column("id") != keeping) }
            return try request.deleteAll(db)
        }
    }

    /// Removes sessions past their absolute expiry or idle for longer than `idle`.
    @discardableResult
    public func deleteExpiredSessions(now: Date = Date(), idle: TimeInterval) async throws -> Int {
        try await self.writer.write { db in
            try Session.filter(Column("expires_at") <= now || Column("last_seen_at") <= now.addingTimeInterval(-idle)).deleteAll(db)
        }
    }

    // MARK: Sign-in throttling

    public func recordLoginFailure(email: String, ip: String, at date: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(sql: "INSERT INTO login_failure (email, ip, at) VALUES (?, ?, ?)", arguments: [email.lowercased(), ip, date])
        }
    }

    /// Failures since `since` for the account and for the address, with the newest failure's time.
    public func loginFailures(email: String, ip: String, since: Date) async throws -> (account: Int, ip: Int, latest: Date?) {
        try await self.writer.read { db in
            let account = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM login_failure WHERE email = ? AND at > ?", arguments: [email.lowercased(), since]) ?? 0
            let byIP = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM login_failure WHERE ip = ? AND at > ?", arguments: [ip, since]) ?? 0
            let latest = try Date.fetchOne(db, sql: "SELECT MAX(at) FROM login_failure WHERE (email = ? OR ip = ?) AND at > ?", arguments: [email.lowercased(), ip, since])
            return (account, byIP, latest)
        }
    }

    /// A successful sign-in forgives the account's earlier failures.
    public func clearLoginFailures(email: String) async throws {
        try await self.writer.write { db in
            try db.execute(sql: "DELETE FROM login_failure WHERE email = ?", arguments: [email.lowercased()])
        }
    }

    @discardableResult
    public func pruneLoginFailures(before: Date) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(sql: "DELETE FROM login_failure WHERE at < ?", arguments: [before])
            return db.changesCount
        }
    }

    // MARK: Helpers inside a transaction

    static func grantSignupCredits(_ db: Database, userID: Int64, amount: Int, now: Date) throws {
        guard amount > 0 else { return }
        try Self.appendLedgerEntry(db, userID: userID, kind: .grant, amount: amount, reason: "welcome credits", now: now)
    }

    static func insertToken(_ token: NewEmailToken, userID: Int64, db: Database, now: Date) throws {
        var row = EmailToken(
            id: nil, userID: userID, purpose: token.purpose, tokenHash: token.tokenHash, codeHash: token.codeHash,
            newEmail: token.newEmail, attempts: 0, createdAt: now, expiresAt: token.expiresAt, usedAt: nil
        )
        try row.insert(db)
    }

    static func usableToken(_ db: Database, tokenHash: Data, purpose: EmailToken.Purpose, now: Date) throws -> EmailToken? {
        try EmailToken.filter(Column("token_hash") == tokenHash && Column("purpose") == purpose.rawValue)
            .filter(Column("used_at") == nil && Column("expires_at") > now)
            .fetchOne(db)
    }

    static func markVerified(userID: Int64, db: Database, now: Date) throws -> User? {
        guard var user = try User.fetchOne(db, key: userID) else { return nil }
        if user.emailVerifiedAt == nil {
            user.emailVerifiedAt = now
            user.updatedAt = now
            try user.update(db)
        }
        return user
    }

    /// Queues a mail in the caller's transaction. It is tied to `userID`, or else to the account
    /// that has its address now.
    static func enqueue(_ draft: MailDraft, db: Database, now: Date, userID: Int64? = nil) throws {
        var mail = OutboxMail(
            id: nil, kind: draft.kind, toEmail: draft.toEmail, toName: draft.toName, subject: draft.subject,
            textBody: draft.text, htmlBody: draft.html, messageID: draft.messageID, status: .queued, attempts: 0,
            nextAttemptAt: now, lastError: nil, transport: nil, createdAt: now, sentAt: nil
        )
        if !draft.headers.isEmpty {
            mail.headers = String(decoding: try JSONEncoder().encode(draft.headers), as: UTF8.self)
        }
        mail.userID = try userID ?? Int64.fetchOne(db, sql: "SELECT id FROM user WHERE email = ?", arguments: [draft.toEmail.lowercased()])
        try mail.insert(db)
    }
}

extension AppDatabase {
    /// A token that is unused and unexpired, without using it (to check a link before showing its form).
    public func pendingEmailToken(tokenHash: Data, purpose: EmailToken.Purpose, now: Date = Date()) async throws -> EmailToken? {
        try await self.writer.read { db in try Self.usableToken(db, tokenHash: tokenHash, purpose: purpose, now: now) }
    }
}
