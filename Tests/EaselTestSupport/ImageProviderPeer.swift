import Foundation
import Logging

/// A stand-in for the image providers of shared/PROVIDERS.md on 127.0.0.1
/// (`Tests/peers/image_provider_peer.py`, Flask): OpenAI's Images API under `openAIBaseURL` and
/// Evolink's task API under `evolinkBaseURL`, both checking the bearer key, returning real PNGs,
/// and misbehaving as scripted per prompt (so tests running in parallel do not disturb each other).
public final class ImageProviderPeer: Sendable {
    /// "http://127.0.0.1:PORT"; result URLs of Evolink tasks are served under it.
    public let baseURL: String
    /// The only key the peer accepts, for both providers.
    public let apiKey: String
    /// What an OpenAI base URL setting would hold ("…/openai"; "…/openai/v1" works as well).
    public let openAIBaseURL: String
    /// What an Evolink base URL setting would hold ("…/evolink").
    public let evolinkBaseURL: String

    private let peer: PythonPeer
    private let logger: Logger

    public static func start(timeout: Duration = .seconds(60), logger: Logger = Logger(label: "easel.tests.image-provider-peer")) async throws
        -> ImageProviderPeer
    {
        let (peer, line) = try await PythonPeer.start(script: "image_provider_peer.py", label: "image provider", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)) else {
            await peer.stop()
            throw TestPeerError("the image provider test peer announced something unexpected: \(line)")
        }
        logger.info("image provider peer started", metadata: ["base_url": .string(announcement.baseURL)])
        return ImageProviderPeer(announcement: announcement, peer: peer, logger: logger)
    }

    private init(announcement: Announcement, peer: PythonPeer, logger: Logger) {
        self.baseURL = announcement.baseURL
        self.apiKey = announcement.apiKey
        self.openAIBaseURL = announcement.openAIBaseURL
        self.evolinkBaseURL = announcement.evolinkBaseURL
        self.peer = peer
        self.logger = logger
    }

    /// OpenAI requests with `prompt` get these steps, one per request; the last one repeats.
    public func script(prompt: String, openAI steps: [ImageProviderPeerStep]) async throws {
        try await self.send(OpenAIScript(prompt: prompt, openai: steps))
    }

    /// How Evolink treats tasks submitted with `prompt`.
    public func script(prompt: String, evolink: EvolinkPeerScript) async throws {
        try await self.send(EvolinkScriptCommand(prompt: prompt, evolink: evolink))
    }

    /// Sends one raw command line (see the peer's docstring), for anything the typed calls lack;
    /// returns the answer line.
    @discardableResult
    public func command(json line: String) async throws -> String {
        try await self.peer.request(line)
    }

    /// Every request seen so far (with `prompt`, if given), oldest first.
    public func requests(prompt: String? = nil) async throws -> [ImageProviderPeerRequest] {
        try await self.command(Query(command: "requests", prompt: prompt), as: [ImageProviderPeerRequest].self)
    }

    /// The Evolink tasks created so far (for `prompt`, if given).
    public func tasks(prompt: String? = nil) async throws -> [EvolinkPeerTask] {
        try await self.command(Query(command: "tasks", prompt: prompt), as: [EvolinkPeerTask].self)
    }

    public func stop() async {
        await self.peer.stop()
        self.logger.info("image provider peer stopped")
    }

    private func send(_ command: some Encodable) async throws {
        let reply = try await self.command(command, as: CommandReply.self)
        guard reply.ok else { throw TestPeerError("the image provider test peer refused a command: \(reply.error ?? "no reason")") }
    }

    private func command<Answer: Decodable>(_ command: some Encodable, as: Answer.Type) async throws -> Answer {
        let line = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        let answer = try await self.peer.request(line)
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(answer.utf8))
        } catch {
            throw TestPeerError("the image provider test peer's answer to \(line) did not decode (\(error)): \(answer.prefix(2_000))")
        }
    }

    private struct Announcement: Decodable {
        var baseURL: String
        var apiKey: String
        var openAIBaseURL: String
        var evolinkBaseURL: String

        enum CodingKeys: String, CodingKey {
            case baseURL = "base_url"
            case apiKey = "api_key"
            case openAIBaseURL = "openai_base_url"
            case evolinkBaseURL = "evolink_base_url"
        }
    }

    private struct OpenAIScript: Encodable {
        var command = "script"
        var prompt: String
        var openai: [ImageProviderPeerStep]
    }

    private struct EvolinkScriptCommand: Encodable {
        var command = "script"
        var prompt: String
        var evolink: EvolinkPeerScript
    }

    private struct Query: Encodable {
        var command: String
        var prompt: String?
    }

    private struct CommandReply: Decodable {
        var ok: Bool
        var error: String?
    }
}

/// What the peer does with one request: answer normally, fail with a status, wait, or answer
/// something malformed. Build with the static helpers: `.ok`, `.status(429, retryAfter: 2)`,
/// `.status(400, code: "moderation_blocked")`, `.delay(5)`, `.malformed()`.
public struct ImageProviderPeerStep: Encodable, Sendable {
    public var ok: Bool?
    /// The HTTP status to answer with the provider's error body (≥ 300).
    public var status: Int?
    /// The provider's error code (`moderation_blocked`, `insufficient_quota`, …). Evolink's
    /// default is the status as a number.
    public var code: String?
    public var message: String?
    /// Retry-After in seconds.
    public var retryAfter: Double?
    /// Retry-After as an HTTP date this many seconds ahead.
    public var retryAfterDate: Double?
    /// OpenAI's `retry-after-ms` header.
    public var retryAfterMs: Double?
    /// Seconds to wait before answering (for timeouts).
    public var delay: Double?
    /// `non_json` (200 with HTML), `empty_data`, `bad_base64`, `truncated`, `no_id` (Evolink submit).
    public var malformed: String?
    /// OpenAI: answer this many images instead of `n`.
    public var images: Int?
    /// A raw body for an error status, instead of the provider's error JSON.
    public var body: String?
    public var contentType: String?

    public init(
        ok: Bool? = nil, status: Int? = nil, code: String? = nil, message: String? = nil, retryAfter: Double? = nil,
        retryAfterDate: Double? = nil, retryAfterMs: Double? = nil, delay: Double? = nil, malformed: String? = nil,
        images: Int? = nil, body: String? = nil, contentType: String? = nil
    ) {
        self.ok = ok
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.retryAfterDate = retryAfterDate
        self.retryAfterMs = retryAfterMs
        self.delay = delay
        self.malformed = malformed
        self.images = images
        self.body = body
        self.contentType = contentType
    }

    public static let ok = ImageProviderPeerStep(ok: true)

    public static func status(
        _ status: Int, code: String? = nil, retryAfter: Double? = nil, retryAfterDate: Double? = nil, retryAfterMs: Double? = nil
    ) -> ImageProviderPeerStep {
        ImageProviderPeerStep(status: status, code: code, retryAfter: retryAfter, retryAfterDate: retryAfterDate, retryAfterMs: retryAfterMs)
    }

    public static func delay(_ seconds: Double) -> ImageProviderPeerStep {
        ImageProviderPeerStep(delay: seconds)
    }

    public static func malformed(_ kind: String = "non_json") -> ImageProviderPeerStep {
        ImageProviderPeerStep(malformed: kind)
    }

    enum CodingKeys: String, CodingKey {
        case ok, status, code, message, delay, malformed, images, body
        case retryAfter = "retry_after"
        case retryAfterDate = "retry_after_date"
        case retryAfterMs = "retry_after_ms"
        case contentType = "content_type"
    }
}

/// How the Evolink side of the peer treats tasks of one prompt.
public struct EvolinkPeerScript: Encodable, Sendable {
    public enum Outcome: Encodable, Sendable {
        case completed
        /// A task error code such as `content_policy_violation`.
        case failed(String)

        public func encode(to encoder: any Encoder) throws {
            switch self {
            case .completed:
                var container = encoder.singleValueContainer()
                try container.encode("completed")
            case .failed(let code):
                var container = encoder.singleValueContainer()
                try container.encode(["failed": code])
            }
        }
    }

    public enum Callback: String, Encodable, Sendable {
        case none, normal, duplicate
        case beforeFirstPoll = "before_first_poll"
    }

    public enum Result: String, Encodable, Sendable {
        case ok
        case notFound = "404"
        /// 410, like a result URL after its 24 hours.
        case expired
    }

    /// Steps for `POST /v1/images/generations`.
    public var submit: [ImageProviderPeerStep]?
    /// Steps for `GET /v1/tasks/{id}`.
    public var poll: [ImageProviderPeerStep]?
    /// Answered polls before the outcome (default 2: pending, processing, then the outcome).
    public var pollsUntilDone: Int?
    public var outcome: Outcome?
    public var result: Result?
    /// Default `.normal` when the submit carries a callback URL.
    public var callback: Callback?
    /// The task also ends by itself this many seconds after submit (default 0.5 with a normal or
    /// duplicate callback, otherwise only polls end it).
    public var completeAfter: Double?
    /// Waits before the retries of a callback that failed (default 1, 2, 4 s as documented).
    public var callbackRetryDelays: [Double]?

    public init(
        submit: [ImageProviderPeerStep]? = nil, poll: [ImageProviderPeerStep]? = nil, pollsUntilDone: Int? = nil,
        outcome: Outcome? = nil, result: Result? = nil, callback: Callback? = nil, completeAfter: Double? = nil,
        callbackRetryDelays: [Double]? = nil
    ) {
        self.submit = submit
        self.poll = poll
        self.pollsUntilDone = pollsUntilDone
        self.outcome = outcome
        self.result = result
        self.callback = callback
        self.completeAfter = completeAfter
        self.callbackRetryDelays = callbackRetryDelays
    }

    enum CodingKeys: String, CodingKey {
        case submit, poll, outcome, result, callback
        case pollsUntilDone = "polls_until_done"
        case completeAfter = "complete_after"
        case callbackRetryDelays = "callback_retry_delays"
    }
}

/// One request as the image provider peer saw it.
public struct ImageProviderPeerRequest: Decodable, Sendable {
    /// `openai`, `evolink` or `results` (nil for unknown routes).
    public var provider: String?
    public var method: String
    public var path: String
    public var prompt: String?
    public var model: String?
    public var n: Int?
    public var size: String?
    public var quality: String?
    public var outputFormat: String?
    public var user: String?
    /// OpenAI edits: how many `image[]` parts came, their content types and filenames.
    public var images: Int?
    public var imageContentTypes: [String]?
    public var imageFilenames: [String]?
    /// Evolink submits.
    public var imageURLs: [String]?
    public var callbackURL: String?
    /// Evolink submits (the task created) and task queries.
    public var taskID: String?
    /// Whether the bearer key was right.
    public var authorized: Bool?
    /// The status the peer answered.
    public var status: Int

    enum CodingKeys: String, CodingKey {
        case provider, method, path, prompt, model, n, size, quality, user, images, authorized, status
        case outputFormat = "output_format"
        case imageContentTypes = "image_content_types"
        case imageFilenames = "image_filenames"
        case imageURLs = "image_urls"
        case callbackURL = "callback_url"
        case taskID = "task_id"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.provider = try container.decodeIfPresent(String.self, forKey: .provider)
        self.method = try container.decode(String.self, forKey: .method)
        self.path = try container.decode(String.self, forKey: .path)
        self.prompt = try? container.decodeIfPresent(String.self, forKey: .prompt)
        self.model = try? container.decodeIfPresent(String.self, forKey: .model)
        self.n = try? container.decodeIfPresent(Int.self, forKey: .n)
        self.size = try? container.decodeIfPresent(String.self, forKey: .size)
        self.quality = try? container.decodeIfPresent(String.self, forKey: .quality)
        self.outputFormat = try? container.decodeIfPresent(String.self, forKey: .outputFormat)
        self.user = try? container.decodeIfPresent(String.self, forKey: .user)
        self.images = try container.decodeIfPresent(Int.self, forKey: .images)
        self.imageContentTypes = try container.decodeIfPresent([String].self, forKey: .imageContentTypes)
        self.imageFilenames = try container.decodeIfPresent([String].self, forKey: .imageFilenames)
        self.imageURLs = try? container.decodeIfPresent([String].self, forKey: .imageURLs)
        self.callbackURL = try? container.decodeIfPresent(String.self, forKey: .callbackURL)
        self.taskID = try container.decodeIfPresent(String.self, forKey: .taskID)
        self.authorized = try container.decodeIfPresent(Bool.self, forKey: .authorized)
        self.status = try container.decode(Int.self, forKey: .status)
    }
}

/// One Evolink task at the peer.
public struct EvolinkPeerTask: Decodable, Sendable {
    public struct CallbackAttempt: Decodable, Sendable {
        /// 1, or 2 for the second delivery of a duplicate.
        public var delivery: Int
        public var attempt: Int
        /// The status the callback URL answered, or `error` when it could not be reached.
        public var status: Int?
        public var error: String?
    }

    public var id: String
    public var prompt: String?
    /// pending, processing, completed or failed.
    public var status: String
    public var progress: Int
    /// Queries of this task, answered or not.
    public var polls: Int
    /// Tasks created so far with this task's prompt: more than 1 means a resubmit.
    public var submitCount: Int
    public var callbackURL: String?
    public var callbacks: [CallbackAttempt]

    enum CodingKeys: String, CodingKey {
        case id, prompt, status, progress, polls, callbacks
        case submitCount = "submit_count"
        case callbackURL = "callback_url"
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records what is POSTed to it and answers with a fixed
/// status: stands in for Easel's callback endpoint when a test checks what a provider calls back.
/// One connection at a time, `Content-Length` bodies only, each connection closed after its answer.
///
/// `@unchecked Sendable`: `received` and `stopped` are only touched under `lock`; the socket is
/// only closed once.
public final class CallbackReceiver: @unchecked Sendable {
    public struct Received: Sendable {
        public var method: String
        public var path: String
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: Data
    }

    /// "http://127.0.0.1:PORT".
    public let baseURL: String
    /// The status each request is answered with.
    public let status: Int

    private let socketFD: Int32
    private let lock = NSLock()
    private var receivedRequests: [Received] = []
    private var stopped = false

    public static func start(status: Int = 200) throws -> CallbackReceiver {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestPeerError("could not open a socket for the callback receiver") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestPeerError("could not listen on 127.0.0.1 for the callback receiver")
        }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let receiver = CallbackReceiver(socketFD: fd, port: Int(UInt16(bigEndian: address.sin_port)), status: status)
        Thread.detachNewThread { receiver.acceptLoop() }
        return receiver
    }

    private init(socketFD: Int32, port: Int, status: Int) {
        self.socketFD = socketFD
        self.baseURL = "http://127.0.0.1:\(port)"
        self.status = status
    }

    /// Everything received so far, oldest first.
    public var received: [Received] {
        self.lock.withLock { self.receivedRequests }
    }

    /// Waits until `count` requests to `path` (any path if nil) have come, and returns them;
    /// throws after `timeout`.
    public func waitForRequests(count: Int = 1, path: String? = nil, timeout: Duration = .seconds(30)) async throws -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let matching = self.received.filter { path == nil || $0.path == path }
            if matching.count >= count { return matching }
            guard ContinuousClock.now < deadline else {
                throw TestPeerError("the callback receiver got \(matching.count) of \(count) requests to \(path ?? "any path") within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    public func stop() {
        let first = self.lock.withLock {
            defer { self.stopped = true }
            return !self.stopped
        }
        guard first else { return }
        shutdown(self.socketFD, Int32(SHUT_RDWR))
        close(self.socketFD)
    }

    private func acceptLoop() {
        while true {
            let client = accept(self.socketFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if let request = Self.read(client) {
                self.lock.withLock { self.receivedRequests.append(request) }
            }
            let reason = self.status < 300 ? "OK" : "Error"
            let answer = "HTTP/1.1 \(self.status) \(reason)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            _ = answer.utf8CString.withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
            close(client)
        }
    }

    private static func read(_ client: Int32) -> Received? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let separator = Data("\r\n\r\n".utf8)
        func fill() -> Bool {
            let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return false }
            data.append(contentsOf: buffer[0..<count])
            return true
        }
        while data.range(of: separator) == nil {
            guard data.count < 1024 * 1024, fill() else { return nil }
        }
        guard let end = data.range(of: separator) else { return nil }
        let head = String(decoding: data[data.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while data.count - (end.upperBound - data.startIndex) < length {
            guard fill() else { return nil }
        }
        let bodyStart = end.upperBound
        let body = Data(data[bodyStart..<(bodyStart + length)])
        return Received(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body)
    }
}
