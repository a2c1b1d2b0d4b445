import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where and how to reach Resend's HTTP API. EaselApp fills it from the EASEL_RESEND_* settings.
public struct ResendConfiguration: Sendable, CustomStringConvertible {
    public static let defaultBaseURL = "https://api.resend.com"

    public var apiKey: String
    /// Scheme, host and optional path prefix; "/emails" is appended.
    public var baseURL: String
    /// For the whole request, connection to the last byte of the answer.
    public var timeout: Duration

    public init(apiKey: String, baseURL: String = ResendConfiguration.defaultBaseURL, timeout: Duration = .seconds(30)) {
        self.apiKey = apiKey
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// Safe to log: the key is never shown.
    public var description: String {
        "resend \(self.baseURL) api_key=\(self.apiKey.isEmpty ? "<unset>" : "<set>")"
    }
}

/// Sends mail through Resend's `POST /emails` (https://resend.com/docs/api-reference/emails/send-email).
///
/// Each message carries an `Idempotency-Key` made from its Message-ID, so when an answer is lost
/// and the outbox retries, Resend returns the first result instead of sending again.
public struct ResendTransport: MailTransport {
    public var name: String { "resend" }
    public let configuration: ResendConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Answers are small JSON objects; anything bigger is not Resend.
    private static let maximumAnswerBytes = 64 * 1024

    public init(configuration: ResendConfiguration, httpClient: HTTPClient, logger: Logger = Logger(label: "easel.mail.resend")) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public func send(_ message: MailMessage) async throws(MailDeliveryError) {
        let url = self.endpoint
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(self.configuration.apiKey)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "easel")
        request.headers.add(name: "Idempotency-Key", value: Self.idempotencyKey(for: message.messageID))
        do {
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(SendEmailRequest(message))))
        } catch {
            throw MailDeliveryError(permanent: true, "could not encode message \(message.messageID) for Resend: \(error)")
        }

        let status: HTTPResponseStatus
        let answer: ByteBuffer
        do {
            let deadline = NIODeadline.now() + TimeAmount(self.configuration.timeout)
            let response = try await self.httpClient.execute(request, deadline: deadline, logger: self.logger)
            status = response.status
            answer = try await response.body.collect(upTo: Self.maximumAnswerBytes)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw MailDeliveryError(
                permanent: false,
                "Resend (\(url)) did not answer within \(self.configuration.timeout); gave up. "
                    + "The retry carries the same idempotency key, so it cannot send twice."
            )
        } catch {
            throw MailDeliveryError(
                permanent: false,
                "could not reach Resend at \(url) (\(error)). Check the network, and EASEL_RESEND_BASE_URL if it is set."
            )
        }

        guard (200..<300).contains(status.code) else {
            throw self.failure(status: status, answer: answer, messageID: message.messageID)
        }
        let id = try? JSONDecoder().decode(SendEmailResponse.self, from: Data(buffer: answer)).id
        self.logger.info(
            "mail accepted by Resend",
            metadata: ["message_id": .string(message.messageID), "resend_id": .string(id ?? "(none in answer)")]
        )
    }

    /// The same Message-ID always gives the same key: a retried send is recognised.
    static func idempotencyKey(for messageID: String) -> String {
        let digest = SHA256.hash(data: Data(messageID.utf8))
        return "easel-" + digest.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    private var endpoint: String {
        var base = self.configuration.baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/emails"
    }

    private func failure(status: HTTPResponseStatus, answer: ByteBuffer, messageID: String) -> MailDeliveryError {
        let error = try? JSONDecoder().decode(ResendError.self, from: Data(buffer: answer))
        let name = error?.name ?? "unknown"
        let detail = error?.message ?? String(String(buffer: answer).prefix(300))
        let said = "\(status.code) \(name): \(detail)"
        switch status.code {
        case 401, 403:
            return MailDeliveryError(permanent: false, "Resend refused the API key (\(said)). Check EASEL_RESEND_API_KEY.")
        case 429:
            return MailDeliveryError(permanent: false, "Resend is limiting the sending rate (\(said)); the message will be retried.")
        case 409 where name == "concurrent_idempotent_requests":
            return MailDeliveryError(permanent: false, "Resend is still handling an earlier try of \(messageID) (\(said)).")
        case 400..<500:
            return MailDeliveryError(permanent: true, "Resend refused message \(messageID): \(said)")
        default:
            return MailDeliveryError(permanent: false, "Resend failed to take message \(messageID) (\(said)); it will be retried.")
        }
    }
}

/// The JSON body of `POST /emails`.
struct SendEmailRequest: Encodable {
    var from: String
    var to: [String]
    var subject: String
    var text: String
    var html: String?
    var replyTo: String?
    var headers: [String: String]

    init(_ message: MailMessage) {
        self.from = MIMEHeader.displayForm(message.from)
        self.to = message.to.map(MIMEHeader.displayForm)
        // Resend turns these into headers, so they get the same care as in MIMEMessage.
        self.subject = MIMEHeader.sanitize(message.subject)
        self.text = message.text
        self.html = message.html
        self.replyTo = message.replyTo.map(MIMEHeader.displayForm)
        self.headers = ["Message-ID": MIMEHeader.messageID(message.messageID)]
        for extra in message.allowedExtraHeaders {
            self.headers[extra.name] = MIMEHeader.sanitize(extra.value)
        }
    }

    enum CodingKeys: String, CodingKey {
        case from, to, subject, text, html, headers
        case replyTo = "reply_to"
    }
}

struct SendEmailResponse: Decodable {
    var id: String
}

/// Resend's error body: {"statusCode": 422, "name": "validation_error", "message": "…"}.
struct ResendError: Decodable {
    var statusCode: Int?
    var name: String?
    var message: String?
}
