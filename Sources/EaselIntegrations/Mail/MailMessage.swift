import Foundation

/// A mailbox: an address and an optional display name.
public struct MailAddress: Sendable, Equatable, Codable, CustomStringConvertible {
    public var email: String
    public var name: String?

    public init(_ email: String, name: String? = nil) {
        self.email = email
        self.name = name
    }

    public var description: String { self.name.map { "\($0) <\(self.email)>" } ?? self.email }
}

/// One transactional mail, as every transport receives it.
public struct MailMessage: Sendable, Equatable, Codable {
    public var from: MailAddress
    public var to: [MailAddress]
    public var replyTo: MailAddress?
    public var subject: String
    /// The plain-text body; always present.
    public var text: String
    /// The HTML body, sent as the second part of multipart/alternative when present.
    public var html: String?
    /// "<unique@host>", angle brackets included; fixed when the mail is queued, so a retried
    /// delivery carries the same id.
    public var messageID: String
    public var date: Date

    public init(from: MailAddress, to: [MailAddress], replyTo: MailAddress? = nil, subject: String, text: String, html: String? = nil, messageID: String, date: Date) {
        self.from = from
        self.to = to
        self.replyTo = replyTo
        self.subject = subject
        self.text = text
        self.html = html
        self.messageID = messageID
        self.date = date
    }
}

/// Why a delivery failed, and whether trying again could help.
public struct MailDeliveryError: Error, Sendable, CustomStringConvertible {
    /// True when retrying cannot help (a 5xx SMTP reply to the recipient, a 4xx API answer
    /// other than rate limiting, bad credentials stay temporary: an operator can fix them).
    public var isPermanent: Bool
    public var description: String

    public init(permanent: Bool, _ description: String) {
        self.isPermanent = permanent
        self.description = description
    }
}

/// Sends mail somewhere: an SMTP server, the Resend API. One live implementation each.
public protocol MailTransport: Sendable {
    /// "smtp", "resend": for logs and the admin mailbox.
    var name: String { get }
    func send(_ message: MailMessage) async throws(MailDeliveryError)
}
