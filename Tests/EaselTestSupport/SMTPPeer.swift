import Foundation
import Logging

/// A real SMTP server for tests: aiosmtpd on 127.0.0.1, run by `Tests/peers/smtp_peer.py` with
/// the repository's `.venv` (which `make test` creates).
///
/// It listens five times: STARTTLS required with AUTH PLAIN and LOGIN, the same with AUTH LOGIN
/// only, TLS from the first byte with PLAIN and LOGIN, plain without TLS or AUTH, and a port that
/// accepts and never answers.
/// Its certificate is signed by a throwaway CA (`caFile`) for "localhost" and 127.0.0.1. Any
/// recipient at `rejectedDomain` is refused with a 550. Start one per test suite and stop it
/// when the suite is done; if the test process dies, the peer sees its stdin close and exits.
public final class SMTPPeer: Sendable {
    public let host: String
    public let startTLSPort: Int
    /// Like `startTLSPort`, offering AUTH LOGIN only.
    public let startTLSLoginOnlyPort: Int
    public let implicitTLSPort: Int
    public let plainPort: Int
    /// Accepts connections and never says a word: for timeout tests.
    public let silentPort: Int
    /// A port where nothing listens.
    public let unusedPort: Int
    /// PEM of the CA that signed the server certificate.
    public let caFile: String
    public let username: String
    public let password: String
    public let rejectedDomain: String

    private let peer: PythonPeer
    private let logger: Logger

    /// Starts the peer and waits (up to `timeout`) for it to say where it listens.
    public static func start(timeout: Duration = .seconds(60), logger: Logger = Logger(label: "easel.tests.smtp-peer")) async throws -> SMTPPeer {
        let (peer, line) = try await PythonPeer.start(script: "smtp_peer.py", label: "SMTP", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)) else {
            await peer.stop()
            throw TestPeerError("the SMTP test peer announced something unexpected: \(line)")
        }
        logger.info("SMTP peer started", metadata: ["starttls_port": .stringConvertible(announcement.starttlsPort)])
        return SMTPPeer(announcement, peer: peer, logger: logger)
    }

    private init(_ announcement: Announcement, peer: PythonPeer, logger: Logger) {
        self.host = announcement.host
        self.startTLSPort = announcement.starttlsPort
        self.startTLSLoginOnlyPort = announcement.starttlsLoginPort
        self.implicitTLSPort = announcement.tlsPort
        self.plainPort = announcement.plainPort
        self.silentPort = announcement.silentPort
        self.unusedPort = announcement.unusedPort
        self.caFile = announcement.caFile
        self.username = announcement.username
        self.password = announcement.password
        self.rejectedDomain = announcement.rejectedDomain
        self.peer = peer
        self.logger = logger
    }

    /// Every message delivered so far, on any listener, oldest first.
    public func deliveredMessages() async throws -> [DeliveredMail] {
        let answer = try await self.peer.request("messages")
        do {
            return try JSONDecoder().decode([DeliveredMail].self, from: Data(answer.utf8))
        } catch {
            throw TestPeerError("the SMTP test peer's message list did not decode (\(error)): \(answer.prefix(2_000))")
        }
    }

    /// The messages whose Message-ID header is `messageID` (angle brackets included).
    public func messages(withID messageID: String) async throws -> [DeliveredMail] {
        try await self.deliveredMessages().filter { $0.parsed.messageID == messageID }
    }

    /// Closes the peer's stdin (it then exits) and waits for it, ending it after five seconds.
    public func stop() async {
        await self.peer.stop()
        self.logger.info("SMTP peer stopped")
    }

    private struct Announcement: Decodable {
        var host: String
        var starttlsPort: Int
        var starttlsLoginPort: Int
        var tlsPort: Int
        var plainPort: Int
        var silentPort: Int
        var unusedPort: Int
        var caFile: String
        var username: String
        var password: String
        var rejectedDomain: String

        enum CodingKeys: String, CodingKey {
            case host, username, password
            case starttlsPort = "starttls_port"
            case starttlsLoginPort = "starttls_login_port"
            case tlsPort = "tls_port"
            case plainPort = "plain_port"
            case silentPort = "silent_port"
            case unusedPort = "unused_port"
            case caFile = "ca_file"
            case rejectedDomain = "rejected_domain"
        }
    }
}

/// One message as the SMTP peer received it, and as Python's `email` package reads it.
public struct DeliveredMail: Decodable, Sendable {
    /// "starttls", "starttls_login", "tls" or "plain": the listener that took it.
    public var server: String
    public var mailFrom: String
    public var rcptTos: [String]
    /// The user that logged in, if any.
    public var authLogin: String?
    /// "PLAIN" or "LOGIN" when the client logged in.
    public var authMechanism: String?
    /// The message as received, after the server removed dot-stuffing.
    public var data: String
    /// The longest line of `data` in bytes, CRLF excluded.
    public var longestLine: Int
    public var parsed: Parsed

    public struct Parsed: Decodable, Sendable {
        /// Header values decoded (RFC 2047 words turned back into text).
        public var subject: String?
        public var from: String?
        public var to: String?
        public var replyTo: String?
        public var messageID: String?
        public var date: String?
        public var contentType: String
        /// Every header name in order, as in the message.
        public var headerNames: [String]
        /// Problems Python's parser found in the message (its class names); empty when clean.
        public var defects: [String]
        public var parts: [Part]

        enum CodingKeys: String, CodingKey {
            case subject, from, to, date, defects, parts
            case replyTo = "reply_to"
            case messageID = "message_id"
            case contentType = "content_type"
            case headerNames = "header_names"
        }
    }

    public struct Part: Decodable, Sendable {
        public var contentType: String
        public var charset: String?
        public var transferEncoding: String?
        /// Decoded text, line ends as "\n".
        public var content: String

        enum CodingKeys: String, CodingKey {
            case charset, content
            case contentType = "content_type"
            case transferEncoding = "transfer_encoding"
        }
    }

    enum CodingKeys: String, CodingKey {
        case server, data, parsed
        case mailFrom = "mail_from"
        case rcptTos = "rcpt_tos"
        case authLogin = "auth_login"
        case authMechanism = "auth_mechanism"
        case longestLine = "longest_line"
    }
}
