import Foundation

/// Which image provider runs tasks.
public enum ProviderName: String, Sendable, CaseIterable, Codable {
    case demo, openai, evolink
}

/// What people may ask for and how tasks run. EaselApp fills it from the configuration.
public struct GenerationSettings: Sendable {
    public var provider: ProviderName
    /// The first is the default on the Create page.
    public var models: [String]
    /// `WxH` or `auto`; the first is the default.
    public var sizes: [String]
    public var qualities: [String]
    /// The most images one task may ask for.
    public var maximumCount: Int
    public var maximumReferences: Int
    public var maximumPromptLength: Int
    public var prices: PriceTable
    /// Tasks worked on at once by this process.
    public var workers: Int
    /// Queued and running tasks one person may have.
    public var maximumActiveTasks: Int
    /// A running task older than this is failed and refunded by the reaper.
    public var taskTimeout: Duration
    /// Provider calls that failed in a retryable way, before the task fails.
    public var maximumAttempts: Int
    public var submitPerPerson: RateLimiter.Rule
    public var submitPerIP: RateLimiter.Rule
    public var uploadMaximumBytes: Int
    /// Where an asynchronous provider may call back (`{base}/api/v1/callbacks/evolink/…`); nil
    /// turns callbacks off and tasks are only polled.
    public var callbackBaseURL: URL?
    /// How long the signed URLs of reference images given to a provider stay valid.
    public var referenceURLLifetime: Duration

    public init(
        provider: ProviderName = .demo,
        models: [String] = ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"],
        sizes: [String] = ["1024x1024", "1536x1024", "1024x1536", "2048x2048", "auto"],
        qualities: [String] = ["medium", "low", "high", "auto"],
        maximumCount: Int = 4,
        maximumReferences: Int = 16,
        maximumPromptLength: Int = 32_000,
        prices: PriceTable = .standard,
        workers: Int = 4,
        maximumActiveTasks: Int = 8,
        taskTimeout: Duration = .seconds(900),
        maximumAttempts: Int = 5,
        submitPerPerson: RateLimiter.Rule = .init(capacity: 20, per: .seconds(60)),
        submitPerIP: RateLimiter.Rule = .init(capacity: 60, per: .seconds(60)),
        uploadMaximumBytes: Int = 20 * 1024 * 1024,
        callbackBaseURL: URL? = nil,
        referenceURLLifetime: Duration = .seconds(3600)
    ) {
        self.provider = provider
        self.models = models
        self.sizes = sizes
        self.qualities = qualities
        self.maximumCount = maximumCount
        self.maximumReferences = maximumReferences
        self.maximumPromptLength = maximumPromptLength
        self.prices = prices
        self.workers = workers
        self.maximumActiveTasks = maximumActiveTasks
        self.taskTimeout = taskTimeout
        self.maximumAttempts = maximumAttempts
        self.submitPerPerson = submitPerPerson
        self.submitPerIP = submitPerIP
        self.uploadMaximumBytes = uploadMaximumBytes
        self.callbackBaseURL = callbackBaseURL
        self.referenceURLLifetime = referenceURLLifetime
    }
}
