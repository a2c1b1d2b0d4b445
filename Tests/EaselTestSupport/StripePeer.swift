import Foundation
import Logging

/// A stand-in for Stripe's API on 127.0.0.1 (`Tests/peers/stripe_api.py`, Flask): customers,
/// Checkout Sessions and billing portal sessions, with Stripe's form encoding, bearer key check,
/// parameter validation, idempotency (replays and `idempotency_error`) and error bodies.
public final class StripeAPIPeer: Sendable {
    /// "http://127.0.0.1:PORT": what EASEL_STRIPE_API_BASE would hold.
    public let baseURL: URL
    /// The only secret key the peer accepts.
    public let secretKey: String

    private let peer: PythonPeer
    private let logger: Logger

    public static func start(timeout: Duration = .seconds(60), logger: Logger = Logger(label: "easel.tests.stripe-api-peer")) async throws
        -> StripeAPIPeer
    {
        let (peer, line) = try await PythonPeer.start(script: "stripe_api.py", label: "Stripe API", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)),
            let baseURL = URL(string: announcement.baseURL)
        else {
            await peer.stop()
            throw TestPeerError("the Stripe API test peer announced something unexpected: \(line)")
        }
        logger.info("Stripe API peer started", metadata: ["base_url": .string(announcement.baseURL)])
        return StripeAPIPeer(baseURL: baseURL, secretKey: announcement.secretKey, peer: peer, logger: logger)
    }

    private init(baseURL: URL, secretKey: String, peer: PythonPeer, logger: Logger) {
        self.baseURL = baseURL
        self.secretKey = secretKey
        self.peer = peer
        self.logger = logger
    }

    /// Every request received so far, oldest first.
    public func requests() async throws -> [StripeAPIPeerRequest] {
        try await self.command(Command(command: "requests"), as: [StripeAPIPeerRequest].self)
    }

    /// The next `count` requests (only those whose Idempotency-Key starts with
    /// `idempotencyKeyPrefix`, when given, so tests running in parallel do not disturb each other)
    /// get `status` with Stripe's error body for it (`message`, `code` and `type` override the
    /// defaults), after `delay`. With `malformed`, a 200 whose body is HTML instead.
    public func failNext(
        count: Int = 1, status: Int, message: String? = nil, code: String? = nil, type: String? = nil, delay: Duration = .zero,
        idempotencyKeyPrefix: String? = nil, malformed: Bool = false
    ) async throws {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        let command = FailNext(
            count: count, status: status, message: message, code: code, type: type, delay: seconds,
            idempotencyKeyPrefix: idempotencyKeyPrefix, malformed: malformed
        )
        let reply = try await self.command(command, as: CommandReply.self)
        guard reply.ok else { throw TestPeerError("the Stripe API test peer refused fail_next: \(reply.error ?? "no reason")") }
    }

    /// A price the peer knows: then Checkout checks that the mode suits it (`recurring` only in
    /// subscription mode) and fills in `amount_total`. Other `price_…` ids are accepted as they are.
    public func addPrice(id: String, recurring: Bool, unitAmount: Int, currency: String = "usd") async throws {
        let reply = try await self.command(
            AddPrice(id: id, type: recurring ? "recurring" : "one_time", unitAmount: unitAmount, currency: currency), as: CommandReply.self
        )
        guard reply.ok else { throw TestPeerError("the Stripe API test peer refused add_price: \(reply.error ?? "no reason")") }
    }

    /// A customer that exists at the peer without a request (as one made earlier in the Dashboard).
    public func addCustomer(id: String? = nil, email: String? = nil) async throws -> String {
        let reply = try await self.command(AddCustomer(id: id, email: email), as: CommandReply.self)
        guard reply.ok, let id = reply.id else { throw TestPeerError("the Stripe API test peer refused add_customer: \(reply.error ?? "no reason")") }
        return id
    }

    public func stop() async {
        await self.peer.stop()
        self.logger.info("Stripe API peer stopped")
    }

    private func command<Answer: Decodable>(_ command: some Encodable, as: Answer.Type) async throws -> Answer {
        let line = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        let answer = try await self.peer.request(line)
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(answer.utf8))
        } catch {
            throw TestPeerError("the Stripe API test peer's answer to \(line) did not decode (\(error)): \(answer.prefix(2_000))")
        }
    }

    private struct Announcement: Decodable {
        var baseURL: String
        var secretKey: String

        enum CodingKeys: String, CodingKey {
            case baseURL = "base_url"
            case secretKey = "secret_key"
        }
    }

    private struct Command: Encodable {
        var command: String
    }

    private struct FailNext: Encodable {
        var command = "fail_next"
        var count: Int
        var status: Int
        var message: String?
        var code: String?
        var type: String?
        var delay: Double
        var idempotencyKeyPrefix: String?
        var malformed: Bool

        enum CodingKeys: String, CodingKey {
            case command, count, status, message, code, type, delay, malformed
            case idempotencyKeyPrefix = "idempotency_key_prefix"
        }
    }

    private struct AddPrice: Encodable {
        var command = "add_price"
        var id: String
        var type: String
        var unitAmount: Int
        var currency: String

        enum CodingKeys: String, CodingKey {
            case command, id, type, currency
            case unitAmount = "unit_amount"
        }
    }

    private struct AddCustomer: Encodable {
        var command = "add_customer"
        var id: String?
        var email: String?
    }

    private struct CommandReply: Decodable {
        var ok: Bool
        var error: String?
        var id: String?
    }
}

/// One request as the Stripe API peer saw it.
public struct StripeAPIPeerRequest: Decodable, Sendable {
    public var method: String
    public var path: String
    /// Lower-case names: authorization, content-type, idempotency-key, stripe-version, user-agent, accept.
    public var headers: [String: String]
    /// The form fields as sent, decoded and flat: `metadata[user_id]` → `7`.
    public var form: [String: String]
    /// The body exactly as sent.
    public var rawBody: String
    /// The status the peer answered.
    public var status: Int
    /// Whether the answer was a replay of an earlier one with the same idempotency key.
    public var replayed: Bool
    /// The peer's answer: the object's `id`, `url`, or `error.type`/`error.code`/`error.message`.
    public var answerID: String?
    public var answerURL: String?
    public var errorType: String?
    public var errorCode: String?
    public var errorMessage: String?

    public var idempotencyKey: String? { self.headers["idempotency-key"] }

    enum CodingKeys: String, CodingKey {
        case method, path, headers, form, status, replayed, answer
        case rawBody = "raw_body"
    }

    private struct Answer: Decodable {
        struct ErrorBody: Decodable {
            var type: String?
            var code: String?
            var message: String?
        }

        var id: String?
        var url: String?
        var error: ErrorBody?
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.method = try container.decode(String.self, forKey: .method)
        self.path = try container.decode(String.self, forKey: .path)
        self.headers = try container.decode([String: String].self, forKey: .headers)
        self.form = try container.decode([String: String].self, forKey: .form)
        self.rawBody = try container.decode(String.self, forKey: .rawBody)
        self.status = try container.decode(Int.self, forKey: .status)
        self.replayed = try container.decode(Bool.self, forKey: .replayed)
        let answer = try? container.decodeIfPresent(Answer.self, forKey: .answer)
        self.answerID = answer?.id
        self.answerURL = answer?.url
        self.errorType = answer?.error?.type
        self.errorCode = answer?.error?.code
        self.errorMessage = answer?.error?.message
    }
}

/// Signs (and verifies) webhook deliveries with the official `stripe` SDK
/// (`Tests/peers/stripe_sign.py`), one Python run per batch: starting Python and the SDK takes
/// far longer than signing.
public enum StripeSigner {
    /// One `Stripe-Signature` header per item, made by `stripe.WebhookSignature.generate_signature_header`;
    /// with several secrets, one header with one `v1` per secret, in order (as during a secret roll).
    public static func sign(_ items: [(payload: [UInt8], secrets: [String], timestamp: Date)]) async throws -> [String] {
        let input = items.map {
            SignItem(
                payloadBase64: Data($0.payload).base64EncodedString(), secrets: $0.secrets,
                timestamp: Int64($0.timestamp.timeIntervalSince1970.rounded(.down)))
        }
        let headers = try await self.run("sign", input, as: [String].self)
        guard headers.count == items.count else {
            throw TestPeerError("stripe_sign.py returned \(headers.count) headers for \(items.count) items")
        }
        return headers
    }

    /// What `stripe.Webhook.construct_event` says of one delivery.
    public struct Verdict: Decodable, Sendable {
        public var ok: Bool
        /// The event's id and type, when it was accepted.
        public var id: String?
        public var type: String?
        /// The SDK's message, when it was refused.
        public var error: String?
    }

    /// Checks each delivery with `stripe.Webhook.construct_event(payload, header, secret, tolerance)`.
    public static func verify(_ items: [(payload: [UInt8], header: String, secret: String)], tolerance: Int = 300) async throws -> [Verdict] {
        let input = items.map {
            VerifyItem(payloadBase64: Data($0.payload).base64EncodedString(), header: $0.header, secret: $0.secret, tolerance: tolerance)
        }
        let verdicts = try await self.run("verify", input, as: [Verdict].self)
        guard verdicts.count == items.count else {
            throw TestPeerError("stripe_sign.py returned \(verdicts.count) verdicts for \(items.count) items")
        }
        return verdicts
    }

    private struct SignItem: Encodable {
        var payloadBase64: String
        var secrets: [String]
        var timestamp: Int64

        enum CodingKeys: String, CodingKey {
            case secrets, timestamp
            case payloadBase64 = "payload_b64"
        }
    }

    private struct VerifyItem: Encodable {
        var payloadBase64: String
        var header: String
        var secret: String
        var tolerance: Int

        enum CodingKeys: String, CodingKey {
            case header, secret, tolerance
            case payloadBase64 = "payload_b64"
        }
    }

    private static func run<Output: Decodable>(_ mode: String, _ input: some Encodable, as: Output.Type) async throws -> Output {
        let python = Checkout.venv.appending(path: "bin/python")
        let script = Checkout.root.appending(path: "Tests/peers/stripe_sign.py")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestPeerError(
                "signing Stripe webhooks needs \(python.path), which does not exist. Run `make test` (it creates .venv from "
                    + "Tests/peers/requirements.txt), or: python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt"
            )
        }
        let stdin = try JSONEncoder().encode(input)
        let (status, stdout, stderr) = try await offThePool { try Self.runBlocking(python, [script.path, mode], stdin: stdin) }
        guard status == 0 else {
            throw TestPeerError("stripe_sign.py \(mode) exited with \(status): \(String(decoding: stderr.suffix(4_000), as: UTF8.self))")
        }
        do {
            return try JSONDecoder().decode(Output.self, from: stdout)
        } catch {
            throw TestPeerError(
                "stripe_sign.py \(mode) printed something unexpected (\(error)): \(String(decoding: stdout.prefix(2_000), as: UTF8.self))")
        }
    }

    private static func runBlocking(_ executable: URL, _ arguments: [String], stdin: Data) throws -> (Int32, Data, Data) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Write from another thread while this one reads, so neither side can stall on a full pipe.
        let writer = input.fileHandleForWriting
        Thread.detachNewThread {
            try? writer.write(contentsOf: stdin)
            try? writer.close()
        }
        let errorData = ErrorCollector(errors.fileHandleForReading)
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, outputData, errorData.finish())
    }

    /// Reads a pipe to its end on its own thread.
    private final class ErrorCollector: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var data = Data()

        init(_ handle: FileHandle) {
            Thread.detachNewThread {
                self.data = handle.readDataToEndOfFile()
                self.done.signal()
            }
        }

        func finish() -> Data {
            self.done.wait()
            return self.data
        }
    }
}
