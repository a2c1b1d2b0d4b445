import Foundation

/// What one generation asks of a provider. EaselCore builds it from a task.
public struct ProviderGenerationRequest: Sendable, Equatable {
    public var model: String
    public var prompt: String
    /// `WxH`, a ratio such as `16:9` (Evolink), or `auto`.
    public var size: String
    /// `low`, `medium`, `high` or `auto`.
    public var quality: String
    /// Images asked for, 1–10.
    public var count: Int
    /// Reference images, in order; the first is the one a mask applies to.
    public var references: [ProviderReferenceImage]
    /// `png`, `jpeg` or `webp`; nil leaves it to the provider.
    public var outputFormat: String?
    /// An opaque, stable id for the person (OpenAI's `user` field); never their email.
    public var endUser: String?

    public init(
        model: String, prompt: String, size: String, quality: String, count: Int,
        references: [ProviderReferenceImage] = [], outputFormat: String? = nil, endUser: String? = nil
    ) {
        self.model = model
        self.prompt = prompt
        self.size = size
        self.quality = quality
        self.count = count
        self.references = references
        self.outputFormat = outputFormat
        self.endUser = endUser
    }
}

/// A reference image as a provider needs it: OpenAI takes the bytes (multipart `image[]`),
/// Evolink a URL it downloads itself (a short-lived signed URL on Easel's public address).
public struct ProviderReferenceImage: Sendable, Equatable {
    public var filename: String
    /// `image/png`, `image/jpeg` or `image/webp`.
    public var contentType: String
    public var data: Data?
    public var url: String?

    public init(filename: String, contentType: String, data: Data? = nil, url: String? = nil) {
        self.filename = filename
        self.contentType = contentType
        self.data = data
        self.url = url
    }
}

/// One finished image from a synchronous provider.
public struct ProviderImage: Sendable, Equatable {
    public var data: Data
    /// `png`, `jpeg` or `webp`, as the provider said (callers still check the bytes).
    public var format: String?

    public init(data: Data, format: String?) {
        self.data = data
        self.format = format
    }
}

/// Why a provider call failed, sorted by what Easel does next: retry later, or fail the task
/// with a reason a person understands. `message` is the provider's own words, for the log and
/// the task's detail; the kind decides what the person reads.
public struct ProviderError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// The prompt or an image was refused by the provider's safety system. Never retried.
        case moderation
        /// The operator's provider account is out of quota or credit. Not retried.
        case providerQuota = "provider_quota"
        /// Too many requests: retried after `retryAfter` (or a backoff).
        case rateLimited = "rate_limited"
        /// The provider refused the parameters. Never retried.
        case invalidRequest = "invalid_request"
        /// The operator's key is wrong, or the region is refused. Not retried.
        case unauthorized
        /// 5xx, a connection that failed or a generation the provider itself gave up on: retried.
        case unavailable
        /// No answer in time: retried (a synchronous call may have been charged upstream, but a
        /// task here is only charged once it has its images).
        case timeout
        /// The answer could not be understood. Retried a few times.
        case malformedResponse = "malformed_response"
        /// The provider ran the task and reported a failure that a retry will not fix.
        case failed
    }

    public var kind: Kind
    public var message: String
    /// From a `Retry-After` header, when there was one.
    public var retryAfter: Duration?
    /// The provider's own error code (`moderation_blocked`, `content_policy_violation`, …).
    public var code: String?

    public init(_ kind: Kind, _ message: String, retryAfter: Duration? = nil, code: String? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
        self.code = code
    }

    /// Whether trying again later can succeed.
    public var isRetryable: Bool {
        switch self.kind {
        case .rateLimited, .unavailable, .timeout, .malformedResponse: true
        case .moderation, .providerQuota, .invalidRequest, .unauthorized, .failed: false
        }
    }

    public var description: String {
        "\(self.kind.rawValue)\(self.code.map { " (\($0))" } ?? ""): \(self.message)"
    }
}

/// A provider that answers with the images in one long call (OpenAI's Images API).
public protocol SynchronousImageProvider: Sendable {
    func generate(_ request: ProviderGenerationRequest) async throws(ProviderError) -> [ProviderImage]
}

/// The state of a task at an asynchronous provider (Evolink).
public struct ProviderTaskStatus: Sendable, Equatable {
    public enum State: String, Sendable, Equatable {
        case pending, processing, completed, failed
    }

    public var id: String
    public var state: State
    /// 0–100.
    public var progress: Int
    /// Result URLs when completed; valid for a limited time, so mirror them at once.
    public var resultURLs: [String]
    /// When failed: the provider's reason, already sorted into a kind.
    public var error: ProviderError?

    public init(id: String, state: State, progress: Int, resultURLs: [String] = [], error: ProviderError? = nil) {
        self.id = id
        self.state = state
        self.progress = progress
        self.resultURLs = resultURLs
        self.error = error
    }
}

/// A provider that takes a task and is polled (or calls back) until it ends (Evolink).
///
/// `submit` must be called at most once per task: its answer, the provider's task id, is stored
/// before anything else happens, and a task with an id is only ever polled.
public protocol AsynchronousImageProvider: Sendable {
    /// Submits and returns the provider's task status (with its id) without waiting for the result.
    func submit(_ request: ProviderGenerationRequest, callbackURL: String?) async throws(ProviderError) -> ProviderTaskStatus
    func status(of providerTaskID: String) async throws(ProviderError) -> ProviderTaskStatus
}
