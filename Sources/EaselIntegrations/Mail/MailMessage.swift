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
    /// Extra headers such as List-Unsubscribe; names that are not plain tokens, and names of
    /// headers set from the fields above, are dropped when the mail is rendered.
    public var headers: [String: String]

    public init(
        from: MailAddress, to: [MailAddress], replyTo: MailAddress? = nil, subject: String, text: String, html: String? = nil, messageID: String, date: Date,
        headers: [String: String] = [:]
    ) {
        self.headers = headers
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

extension MailMessage {
    /// The extra headers that may be sent, sorted by name: names of letters, digits and '-',
    /// never one Easel sets itself.
    public var allowedExtraHeaders: [(name: String, value: String)] {
        let reserved: Set<String> = [
            "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version", "content-type",
            "content-transfer-encoding", "sender", "return-path",
        ]
        return self.headers.filter { name, _ in
            !name.isEmpty && name.count <= 64 && !reserved.contains(name.lowercased())
                && name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" }
        }.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
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
