import Foundation
import GRDB

/// A person's account.
public struct User: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "user"

    public enum Role: String, Codable, Sendable, CaseIterable { case admin, member }
    public enum Status: String, Codable, Sendable { case active, suspended }
    public enum Theme: String, Codable, Sendable, CaseIterable { case light, dark, system }

    public var id: Int64?
    public var email: String
    public var emailVerifiedAt: Date?
    public var passwordHash: String?
    public var displayName: String
    public var avatarKey: String?
    public var role: Role
    public var status: Status
    public var language: String?
    public var theme: Theme
    public var totpSecret: String?
    public var totpEnabledAt: Date?
    public var totpLastStep: Int64?
    public var ageConfirmedAt: Date
    public var termsVersion: String
    public var termsAcceptedAt: Date
    public var createdAt: Date
    public var updatedAt: Date

    public var isVerified: Bool { self.emailVerifiedAt != nil }
    public var hasTwoFactor: Bool { self.totpEnabledAt != nil }

    enum CodingKeys: String, CodingKey {
        case id, email, role, status, language, theme
        case emailVerifiedAt = "email_verified_at"
        case passwordHash = "password_hash"
        case displayName = "display_name"
        case avatarKey = "avatar_key"
        case totpSecret = "totp_secret"
        case totpEnabledAt = "totp_enabled_at"
        case totpLastStep = "totp_last_step"
        case ageConfirmedAt = "age_confirmed_at"
        case termsVersion = "terms_version"
        case termsAcceptedAt = "terms_accepted_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    public enum Columns {
        public static let email = Column(CodingKeys.email)
        public static let role = Column(CodingKeys.role)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A signed-in browser or device.
public struct Session: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "session"

    public var id: Int64?
    public var userID: Int64
    public var tokenHash: Data
    public var csrfToken: String
    public var createdAt: Date
    public var lastSeenAt: Date
    public var expiresAt: Date
    public var userAgent: String
    public var ip: String
    public var country: String?

    public init(id: Int64?, userID: Int64, tokenHash: Data, csrfToken: String, createdAt: Date, lastSeenAt: Date, expiresAt: Date, userAgent: String, ip: String, country: String?) {
        self.id = id
        self.userID = userID
        self.tokenHash = tokenHash
        self.csrfToken = csrfToken
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
        self.expiresAt = expiresAt
        self.userAgent = userAgent
        self.ip = ip
        self.country = country
    }

    enum CodingKeys: String, CodingKey {
        case id, ip, country
        case userID = "user_id"
        case tokenHash = "token_hash"
        case csrfToken = "csrf_token"
        case createdAt = "created_at"
        case lastSeenAt = "last_seen_at"
        case expiresAt = "expires_at"
        case userAgent = "user_agent"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A single-use, expiring token sent by mail (verification, password reset, email change).
public struct EmailToken: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "email_token"

    public enum Purpose: String, Codable, Sendable {
        case verifyEmail = "verify_email"
        case resetPassword = "reset_password"
        case changeEmail = "change_email"
    }

    public var id: Int64?
    public var userID: Int64
    public var purpose: Purpose
    public var tokenHash: Data
    public var codeHash: Data?
    public var newEmail: String?
    public var attempts: Int
    public var createdAt: Date
    public var expiresAt: Date
    public var usedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, purpose, attempts
        case userID = "user_id"
        case tokenHash = "token_hash"
        case codeHash = "code_hash"
        case newEmail = "new_email"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case usedAt = "used_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A mail waiting to be sent, or the record of one sent (the dev mailbox shows these).
public struct OutboxMail: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "mail_outbox"

    public enum Status: String, Codable, Sendable { case queued, sent, failed }

    public var id: Int64?
    public var kind: String
    public var toEmail: String
    public var toName: String?
    public var subject: String
    public var textBody: String
    public var htmlBody: String?
    public var messageID: String
    public var status: Status
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastError: String?
    public var transport: String?
    public var createdAt: Date
    public var sentAt: Date?
    /// Extra headers as a JSON object (List-Unsubscribe on non-essential mail); nil for none.
    public var headers: String? = nil
    /// The person it was written to or about, kept when their address changes, so a purge
    /// removes mail to earlier addresses too; nil for mail to someone without an account.
    public var userID: Int64? = nil

    /// `headers` decoded; empty when there are none.
    public var extraHeaders: [String: String] {
        guard let headers, let decoded = try? JSONDecoder().decode([String: String].self, from: Data(headers.utf8)) else { return [:] }
        return decoded
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, subject, status, attempts, transport, headers
        case userID = "user_id"
        case toEmail = "to_email"
        case toName = "to_name"
        case textBody = "text_body"
        case htmlBody = "html_body"
        case messageID = "message_id"
        case nextAttemptAt = "next_attempt_at"
        case lastError = "last_error"
        case createdAt = "created_at"
        case sentAt = "sent_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A mail to queue in the same transaction as the change that causes it.
public struct MailDraft: Sendable, Equatable {
    public var kind: String
    public var toEmail: String
    public var toName: String?
    public var subject: String
    public var text: String
    public var html: String?
    public var messageID: String
    /// Extra headers (List-Unsubscribe and List-Unsubscribe-Post on non-essential mail).
    public var headers: [String: String]

    public init(
        kind: String, toEmail: String, toName: String?, subject: String, text: String, html: String?, messageID: String, headers: [String: String] = [:]
    ) {
        self.kind = kind
        self.toEmail = toEmail
        self.toName = toName
        self.subject = subject
        self.text = text
        self.html = html
        self.messageID = messageID
        self.headers = headers
    }
}
