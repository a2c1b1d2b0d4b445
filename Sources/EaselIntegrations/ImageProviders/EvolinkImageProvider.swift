import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where and how to reach Evolink's task API.
public struct EvolinkConfiguration: Sendable, CustomStringConvertible {
    public static let defaultBaseURL = "https://api.evolink.ai"

    public var apiKey: String
    /// Scheme, host and optional path prefix; "/v1/…" is appended (not doubled if the base ends in "/v1").
    public var baseURL: String
    /// For each call (submit or status): they answer at once, the generation runs upstream.
    public var timeout: Duration

    public init(apiKey: String, baseURL: String = EvolinkConfiguration.defaultBaseURL, timeout: Duration = .seconds(30)) {
        self.apiKey = apiKey
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// Safe to log: the key is never shown.
    public var description: String {
        "evolink \(self.baseURL) timeout=\(self.timeout) api_key=\(self.apiKey.isEmpty ? "<unset>" : "<set>")"
    }

    var submitURL: String { ProviderHTTP.endpoint(base: self.baseURL, path: "/images/generations") }

    func taskURL(_ id: String) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        return ProviderHTTP.endpoint(base: self.baseURL, path: "/tasks/" + (id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id))
    }
}

/// Generates images through Evolink's asynchronous tasks: `submit` posts the task and returns its
/// id at once; `status` (or the callback body, through `parseTaskBody`) tells how it ends.
///
/// A failed task is final for that provider task: every task error code maps to a kind that is
/// not retried (the task fails and is refunded); the provider's code is kept in `code`.
public struct EvolinkImageProvider: AsynchronousImageProvider {
    public let configuration: EvolinkConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Task bodies are small JSON objects.
    static let maximumAnswerBytes = 1024 * 1024
    /// When a 429 or 503 comes without Retry-After, Evolink's docs say how long to wait.
    static let defaultRateLimitWait: Duration = .seconds(60)
    static let defaultUnavailableWait: Duration = .seconds(30)

    public init(configuration: EvolinkConfiguration, httpClient: HTTPClient, logger: Logger = Logger(label: "easel.providers.evolink")) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public func submit(_ generation: ProviderGenerationRequest, callbackURL: String?) async throws(ProviderError) -> ProviderTaskStatus {
        var imageURLs: [String] = []
        for (index, reference) in generation.references.enumerated() {
            guard let url = reference.url, !url.isEmpty else {
                throw ProviderError(
                    .invalidRequest,
                    "reference image \(index + 1) (\(reference.filename)) has no URL; Evolink downloads reference images itself"
                )
            }
            imageURLs.append(url)
        }
        let url = self.configuration.submitURL
        var request = self.request(url: url, method: .POST)
        request.headers.add(name: "Content-Type", value: "application/json")
        do {
            let body = SubmitBody(generation, imageURLs: imageURLs, callbackURL: callbackURL)
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
        } catch {
            throw ProviderError(.invalidRequest, "could not encode the task for Evolink: \(error)")
        }
        let metadata: Logger.Metadata = [
            "model": .string(generation.model), "size": .string(generation.size), "quality": .string(generation.quality),
            "n": .stringConvertible(generation.count), "references": .stringConvertible(imageURLs.count),
        ]

        let answer: ProviderHTTP.Answer
        do throws(ProviderError) {
            answer = try await self.execute(request)
            guard (200..<300).contains(answer.status.code) else {
                throw Self.failure(status: answer.status, headers: answer.headers, body: answer.body, taskID: nil)
            }
        } catch {
            self.logger.info("Evolink refused a task", metadata: metadata.merging(["error": .string(error.description)]) { $1 })
            throw error
        }
        // Once an id came back the task exists (and is charged): an unknown status word must not
        // turn it into an error that invites a second submit, so it reads as pending.
        let status: ProviderTaskStatus
        do {
            status = try Self.parseTask(Data(buffer: answer.body), unknownStateIsPending: true)
        } catch {
            self.logger.warning(
                "Evolink answered a submit with 2xx but no readable task id: the task may exist (and be charged) upstream unknown to Easel",
                metadata: metadata.merging(["error": .string(error.description)]) { $1 }
            )
            throw error
        }
        self.logger.info(
            "Evolink task submitted",
            metadata: metadata.merging(["provider_task": .string(status.id), "state": .string(status.state.rawValue)]) { $1 }
        )
        return status
    }

    public func status(of providerTaskID: String) async throws(ProviderError) -> ProviderTaskStatus {
        let request = self.request(url: self.configuration.taskURL(providerTaskID), method: .GET)
        do throws(ProviderError) {
            let answer = try await self.execute(request)
            guard (200..<300).contains(answer.status.code) else {
                throw Self.failure(status: answer.status, headers: answer.headers, body: answer.body, taskID: providerTaskID)
            }
            let status = try Self.parseTaskBody(Data(buffer: answer.body))
            guard status.id == providerTaskID else {
                throw ProviderError(.malformedResponse, "Evolink answered the query for task \(providerTaskID) with task \(status.id)")
            }
            self.logger.debug(
                "Evolink task status",
                metadata: [
                    "provider_task": .string(providerTaskID), "state": .string(status.state.rawValue),
                    "progress": .stringConvertible(status.progress),
                ]
            )
            return status
        } catch {
            self.logger.info(
                "Evolink task query failed",
                metadata: ["provider_task": .string(providerTaskID), "error": .string(error.description)]
            )
            throw error
        }
    }

    /// Reads a task body: the answer to `GET /v1/tasks/{id}`, and what a callback POSTs (the same
    /// body). A body without an id, or with a state that is not one of Evolink's four, is
    /// `malformedResponse`. A failed task comes back as a status with `state == .failed` and
    /// `error` sorted into a kind, not as a thrown error.
    public static func parseTaskBody(_ data: Data) throws(ProviderError) -> ProviderTaskStatus {
        try self.parseTask(data, unknownStateIsPending: false)
    }

    // MARK: Requests

    private func request(url: String, method: HTTPMethod) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(self.configuration.apiKey)")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "easel")
        return request
    }

    private func execute(_ request: HTTPClientRequest) async throws(ProviderError) -> ProviderHTTP.Answer {
        try await ProviderHTTP.execute(
            request, client: self.httpClient, timeout: self.configuration.timeout,
            maximumBytes: Self.maximumAnswerBytes, provider: "Evolink", logger: self.logger
        )
    }

    /// The JSON body of `POST /v1/images/generations`.
    struct SubmitBody: Encodable {
        var model: String
        var prompt: String
        var size: String
        /// Evolink takes low, medium or high; "auto" is left out (the provider's default).
        var quality: String?
        var n: Int
        var imageURLs: [String]?
        var callbackURL: String?

        init(_ generation: ProviderGenerationRequest, imageURLs: [String], callbackURL: String?) {
            self.model = generation.model
            self.prompt = generation.prompt
            self.size = generation.size
            self.quality = generation.quality == "auto" ? nil : generation.quality
            self.n = generation.count
            self.imageURLs = imageURLs.isEmpty ? nil : imageURLs
            self.callbackURL = callbackURL
        }

        enum CodingKeys: String, CodingKey {
            case model, prompt, size, quality, n
            case imageURLs = "image_urls"
            case callbackURL = "callback_url"
        }
    }

    // MARK: Answers

    /// A task body, read leniently field by field so one odd field does not hide the rest.
    struct TaskBody: Decodable {
        var id: String?
        var status: String?
        var progress: Int?
        var results: [String]
        var error: ErrorDetail?

        enum CodingKeys: String, CodingKey { case id, status, progress, results, error }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.id = try? container.decodeIfPresent(String.self, forKey: .id)
            self.status = try? container.decodeIfPresent(String.self, forKey: .status)
            if let whole = try? container.decodeIfPresent(Int.self, forKey: .progress) {
                self.progress = whole
            } else if let fraction = try? container.decodeIfPresent(Double.self, forKey: .progress), fraction.isFinite {
                self.progress = Int(fraction.rounded())
            } else {
                self.progress = nil
            }
            self.results = ((try? container.decodeIfPresent([ResultURL].self, forKey: .results)) ?? nil)?.compactMap(\.url) ?? []
            self.error = try? container.decodeIfPresent(ErrorDetail.self, forKey: .error)
        }
    }

    /// A result: a URL string (documented), or an object with a `url`.
    struct ResultURL: Decodable {
        var url: String?

        enum CodingKeys: String, CodingKey { case url }

        init(from decoder: any Decoder) throws {
            if let string = try? decoder.singleValueContainer().decode(String.self) {
                self.url = string
            } else {
                self.url = try? decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .url)
            }
        }
    }

    /// `{code, message, type}`: the code a string or a number, depending on the docs.
    struct ErrorDetail: Decodable {
        var code: String?
        var message: String?
        var type: String?

        enum CodingKeys: String, CodingKey { case code, message, type }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.code = (try? container.decodeIfPresent(ProviderHTTP.FlexibleCode.self, forKey: .code))?.value
            self.message = try? container.decodeIfPresent(String.self, forKey: .message)
            self.type = try? container.decodeIfPresent(String.self, forKey: .type)
        }
    }

    struct ErrorBody: Decodable {
        var error: ErrorDetail?
    }

    static func parseTask(_ data: Data, unknownStateIsPending: Bool) throws(ProviderError) -> ProviderTaskStatus {
        let body: TaskBody
        do {
            body = try JSONDecoder().decode(TaskBody.self, from: data)
        } catch {
            throw ProviderError(
                .malformedResponse,
                "Evolink answered with something that is not a task: \(ProviderHTTP.snippet(ByteBuffer(data: data)))"
            )
        }
        guard let id = body.id, !id.isEmpty else {
            throw ProviderError(
                .malformedResponse,
                "Evolink's task body has no id: \(ProviderHTTP.snippet(ByteBuffer(data: data)))"
            )
        }
        let progress = min(100, max(0, body.progress ?? 0))
        let state = body.status?.lowercased()
        switch state {
        case "pending":
            return ProviderTaskStatus(id: id, state: .pending, progress: progress)
        case "processing":
            return ProviderTaskStatus(id: id, state: .processing, progress: progress)
        case "completed":
            guard !body.results.isEmpty else {
                return ProviderTaskStatus(
                    id: id, state: .failed, progress: progress,
                    error: ProviderError(.failed, "Evolink reported task \(id) completed without any result URL", code: "no_results")
                )
            }
            return ProviderTaskStatus(id: id, state: .completed, progress: 100, resultURLs: body.results)
        case "failed", "cancelled", "canceled":
            let code = body.error?.code ?? (state == "failed" ? nil : "request_cancelled")
            let message = body.error?.message ?? "Evolink reported task \(id) \(body.status ?? "failed") without a reason"
            return ProviderTaskStatus(id: id, state: .failed, progress: progress, error: Self.taskFailure(code: code, message: message))
        default:
            if unknownStateIsPending {
                return ProviderTaskStatus(id: id, state: .pending, progress: progress)
            }
            throw ProviderError(.malformedResponse, "Evolink's task \(id) is in an unknown state \(body.status.map { "\"\($0)\"" } ?? "(none)")")
        }
    }

    /// Sorts a failed task's error code. None of these is retried for the same provider task.
    static func taskFailure(code: String?, message: String) -> ProviderError {
        let said = "Evolink: \(message)"
        switch code {
        case "content_policy_violation":
            return ProviderError(.moderation, said, code: code)
        case "invalid_parameters", "image_dimension_mismatch", "image_processing_error":
            return ProviderError(.invalidRequest, said, code: code)
        case "quota_exceeded", "resource_exhausted", "insufficient_quota":
            return ProviderError(.providerQuota, said, code: code)
        default:
            // service_error, service_unavailable, generation_timeout, request_cancelled,
            // generation_failed_no_content, unknown_error and anything new.
            return ProviderError(.failed, said, code: code)
        }
    }

    /// Sorts a non-2xx answer (Evolink's docs: 400, 401, 402, 403, 404, 413, 429, 500, 502, 503).
    static func failure(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, taskID: String?) -> ProviderError {
        let error = (try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: body)))?.error
        let code = error?.code
        let detail = error?.message ?? ProviderHTTP.snippet(body)
        // Codes are often just the status again ({"code": 429}): not worth repeating.
        let shownCode = code.flatMap { $0 == String(status.code) ? nil : " \($0)" } ?? ""
        let said = "Evolink answered \(status.code)\(shownCode): \(detail)"
        let retryAfter = ProviderHTTP.retryAfter(headers)
        let quotaCodes: Set<String> = ["insufficient_quota", "quota_exceeded", "resource_exhausted"]
        switch status.code {
        case 400:
            if code == "content_policy_violation" {
                return ProviderError(.moderation, said, code: code)
            }
            if let code, quotaCodes.contains(code) {
                return ProviderError(.providerQuota, said, code: code)
            }
            return ProviderError(.invalidRequest, said, code: code)
        case 401, 403:
            return ProviderError(.unauthorized, said + " (check the Evolink API key)", code: code)
        case 402:
            return ProviderError(.providerQuota, said + " (the operator's Evolink account is out of credit)", code: code)
        case 404 where taskID != nil:
            return ProviderError(.failed, "Evolink does not know task \(taskID ?? ""): unknown task (\(said))", code: code ?? "task_not_found")
        case 408:
            return ProviderError(.timeout, said, retryAfter: retryAfter, code: code)
        case 429:
            if let code, quotaCodes.contains(code) {
                return ProviderError(.providerQuota, said, code: code)
            }
            return ProviderError(.rateLimited, said, retryAfter: retryAfter ?? Self.defaultRateLimitWait, code: code)
        case 400..<500:
            return ProviderError(.invalidRequest, said, code: code)
        case 503:
            return ProviderError(.unavailable, said, retryAfter: retryAfter ?? Self.defaultUnavailableWait, code: code)
        default:
            return ProviderError(.unavailable, said, retryAfter: retryAfter, code: code)
        }
    }
}
