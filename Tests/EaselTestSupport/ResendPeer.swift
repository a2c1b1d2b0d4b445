import Foundation
import Logging

/// A stand-in for Resend's HTTP API on 127.0.0.1 (`Tests/peers/resend_peer.py`, Flask), following
/// its documented `POST /emails`: bearer key check, validation, idempotency keys, and
/// Resend-shaped errors. Faults (429, 422, 500, …) are set per recipient, so tests running in
/// parallel do not disturb each other.
public final class ResendPeer: Sendable {
    /// "http://127.0.0.1:PORT": what EASEL_RESEND_BASE_URL would hold.
    public let baseURL: String
    /// The only key the peer accepts.
    public let apiKey: String

    private let peer: PythonPeer
    private let logger: Logger

    public static func start(timeout: Duration = .seconds(60), logger: Logger = Logger(label: "easel.tests.resend-peer")) async throws -> ResendPeer {
        let (peer, line) = try await PythonPeer.start(script: "resend_peer.py", label: "Resend", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)) else {
            await peer.stop()
            throw TestPeerError("the Resend test peer announced something unexpected: \(line)")
        }
        logger.info("Resend peer started", metadata: ["base_url": .string(announcement.baseURL)])
        return ResendPeer(baseURL: announcement.baseURL, apiKey: announcement.apiKey, peer: peer, logger: logger)
    }

    private init(baseURL: String, apiKey: String, peer: PythonPeer, logger: Logger) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.peer = peer
        self.logger = logger
    }

    /// Every request received so far, oldest first.
    public func requests() async throws -> [ResendRequest] {
        try await self.command(["command": "requests"], as: [ResendRequest].self)
    }

    /// The emails the peer accepted, each once however often it was retried.
    public func emails() async throws -> [ResendEmail] {
        try await self.command(["command": "emails"], as: [ResendEmail].self)
    }

    /// The next `count` requests with `recipient` among their `to` get `status` with Resend's
    /// error body, after `delay` (a slow server, for timeout tests).
    public func failNextRequests(to recipient: String, count: Int = 1, status: Int, delay: Duration = .zero) async throws {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        let reply = try await self.command(FailNext(to: recipient, count: count, status: status, delay: seconds), as: CommandReply.self)
        guard reply.ok else { throw TestPeerError("the Resend test peer refused the fault command") }
    }

    public func stop() async {
        await self.peer.stop()
        self.logger.info("Resend peer stopped")
    }

    private func command<Answer: Decodable>(_ command: some Encodable, as: Answer.Type) async throws -> Answer {
        let line = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        let answer = try await self.peer.request(line)
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(answer.utf8))
        } catch {
            throw TestPeerError("the Resend test peer's answer to \(line) did not decode (\(error)): \(answer.prefix(2_000))")
        }
    }

    private struct Announcement: Decodable {
        var baseURL: String
        var apiKey: String

        enum CodingKeys: String, CodingKey {
            case baseURL = "base_url"
            case apiKey = "api_key"
        }
    }

    private struct FailNext: Encodable {
        var command = "fail_next"
        var to: String
        var count: Int
        var status: Int
        var delay: Double
    }

    private struct CommandReply: Decodable {
        var ok: Bool
    }
}

/// One request as the Resend peer saw it.
public struct ResendRequest: Decodable, Sendable {
    public var method: String
    public var path: String
    /// Header names in lower case.
    public var headers: [String: String]
    public var json: ResendEmailBody?
    /// The status the peer answered.
    public var status: Int
}

/// One email the Resend peer accepted.
public struct ResendEmail: Decodable, Sendable {
    public var id: String
    public var json: ResendEmailBody
    public var idempotencyKey: String?

    enum CodingKeys: String, CodingKey {
        case id, json
        case idempotencyKey = "idempotency_key"
    }
}

/// The fields of `POST /emails` that Easel sends.
public struct ResendEmailBody: Decodable, Sendable, Equatable {
    public var from: String?
    public var to: [String]?
    public var subject: String?
    public var text: String?
    public var html: String?
    public var replyTo: String?
    public var headers: [String: String]?

    public init(
        from: String?,
        to: [String]?,
        subject: String?,
        text: String?,
        html: String?,
        replyTo: String?,
        headers: [String: String]?
    ) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.replyTo = replyTo
        self.headers = headers
    }

    enum CodingKeys: String, CodingKey {
        case from, to, subject, text, html, headers
        case replyTo = "reply_to"
    }
}
