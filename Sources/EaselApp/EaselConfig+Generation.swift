import EaselCore
import Foundation

extension EaselConfig {
    /// Image providers, prices, credits and the task queue's limits.
    public struct Generation: Sendable {
        public enum Callbacks: String, Sendable, CaseIterable { case auto, on, off }

        public var provider: ProviderName
        public var openAIAPIKey: String?
        public var openAIBaseURL: URL
        public var openAITimeout: Duration
        public var evolinkAPIKey: String?
        public var evolinkBaseURL: URL
        public var evolinkCallbacks: Callbacks
        public var demoLatency: Duration
        public var models: [String]
        public var sizes: [String]
        public var qualities: [String]
        public var maximumImages: Int
        public var prices: PriceTable
        public var signupCredits: Int
        public var workers: Int
        public var maximumActiveTasks: Int
        public var taskTimeout: Duration
        public var maximumAttempts: Int
        /// Submits per person, and per client address, per minute (0: no limit).
        public var submitPerMinute: Int
        public var submitPerMinuteIP: Int
        /// Requests per API key per minute (0: no limit).
        public var apiKeyPerMinute: Int
        public var uploadMaximumBytes: Int
        /// Hosts the URL fetcher may reach even on private or loopback addresses.
        public var fetchAllowHosts: [String]
        public var fetchMaximumBytes: Int
        public var fetchTimeout: Duration

        public static let defaultModels = ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"]
        public static let defaultSizes = ["1024x1024", "1536x1024", "1024x1536", "2048x2048", "auto"]
        public static let defaultQualities = ["medium", "low", "high", "auto"]
    }

    static func loadGeneration(_ settings: SettingsReader) throws(ConfigError) -> Generation {
        let openAIKey = try settings.secret(Key.openAIAPIKey)
        let evolinkKey = try settings.secret(Key.evolinkAPIKey)
        // Without EASEL_PROVIDER: the provider whose key is set, else the offline demo.
        let provider: ProviderName
        if settings.string(Key.provider) != nil {
            provider = try settings.choice(Key.provider, default: ProviderName.demo)
        } else {
            provider = openAIKey != nil ? .openai : evolinkKey != nil ? .evolink : .demo
        }
        if provider == .openai, openAIKey == nil {
            throw ConfigError(key: Key.openAIAPIKey.env, problem: "is required when EASEL_PROVIDER=openai (or set EASEL_OPENAI_API_KEY_FILE)")
        }
        if provider == .evolink, evolinkKey == nil {
            throw ConfigError(key: Key.evolinkAPIKey.env, problem: "is required when EASEL_PROVIDER=evolink (or set EASEL_EVOLINK_API_KEY_FILE)")
        }
        let sizes = settings.list(Key.sizes) ?? Generation.defaultSizes
        for size in sizes where size != "auto" {
            let parts = size.lowercased().split(separator: "x")
            let valid = parts.count == 2 && parts.allSatisfy { Int($0).map { (16...8192).contains($0) } ?? false }
            let ratio = size.split(separator: ":").count == 2 && size.split(separator: ":").allSatisfy { Int($0) != nil }
            guard valid || (provider == .evolink && ratio) else {
                throw ConfigError(key: Key.sizes.env, problem: "must be a comma-separated list of WIDTHxHEIGHT sizes (16 to 8192) or auto (got \"\(size)\")")
            }
        }
        let qualities = settings.list(Key.qualities) ?? Generation.defaultQualities
        for quality in qualities where !["low", "medium", "high", "auto"].contains(quality) {
            throw ConfigError(key: Key.qualities.env, problem: "may list low, medium, high and auto (got \"\(quality)\")")
        }
        let prices: PriceTable
        do {
            prices = try settings.string(Key.prices).map { try PriceTable(specification: $0) } ?? .standard
        } catch {
            throw ConfigError(key: Key.prices.env, problem: "\(error)")
        }
        let allowHosts = (settings.list(Key.fetchAllowHosts) ?? []).map { $0.lowercased() }
        return Generation(
            provider: provider,
            openAIAPIKey: openAIKey,
            openAIBaseURL: try settings.url(Key.openAIBaseURL, default: "https://api.openai.com"),
            openAITimeout: try settings.duration(Key.openAITimeout, default: "300s", allowOff: false, minimumSeconds: 1)!,
            evolinkAPIKey: evolinkKey,
            evolinkBaseURL: try settings.url(Key.evolinkBaseURL, default: "https://api.evolink.ai"),
            evolinkCallbacks: try settings.choice(Key.evolinkCallbacks, default: Generation.Callbacks.auto),
            demoLatency: .milliseconds(try settings.int(Key.demoLatencyMS, default: 3000, range: 0...600_000)),
            models: settings.list(Key.models) ?? Generation.defaultModels,
            sizes: sizes,
            qualities: qualities,
            maximumImages: try settings.int(Key.maxImages, default: 4, range: 1...10),
            prices: prices,
            signupCredits: try settings.int(Key.signupCredits, default: 50, range: 0...1_000_000),
            workers: try settings.int(Key.workers, default: 4, range: 1...256),
            maximumActiveTasks: try settings.int(Key.maxActiveTasks, default: 8, range: 1...10_000),
            taskTimeout: try settings.duration(Key.taskTimeout, default: "15m", allowOff: false, minimumSeconds: 1)!,
            maximumAttempts: try settings.int(Key.taskMaxAttempts, default: 5, range: 1...100),
            submitPerMinute: try settings.int(Key.submitRate, default: 20, range: 0...1_000_000),
            submitPerMinuteIP: try settings.int(Key.submitRateIP, default: 60, range: 0...1_000_000),
            apiKeyPerMinute: try settings.int(Key.apiKeyRate, default: 600, range: 0...1_000_000),
            uploadMaximumBytes: try settings.int(Key.uploadMaxBytes, default: 20 * 1_048_576, range: 1024...1_073_741_824),
            fetchAllowHosts: allowHosts,
            fetchMaximumBytes: try settings.int(Key.fetchMaxBytes, default: 50 * 1_048_576, range: 1024...1_073_741_824),
            fetchTimeout: try settings.duration(Key.fetchTimeout, default: "60s", allowOff: false, minimumSeconds: 1)!
        )
    }

    func describeGeneration() -> [String] {
        let g = self.generation
        var lines = [
            "EASEL_PROVIDER=\(g.provider.rawValue)",
            "EASEL_MODELS=\(g.models.joined(separator: ","))",
            "EASEL_SIZES=\(g.sizes.joined(separator: ","))",
            "EASEL_QUALITIES=\(g.qualities.joined(separator: ","))",
            "EASEL_MAX_IMAGES=\(g.maximumImages)",
            "EASEL_SIGNUP_CREDITS=\(g.signupCredits)",
            "EASEL_WORKERS=\(g.workers)",
            "EASEL_MAX_ACTIVE_TASKS=\(g.maximumActiveTasks)",
            "EASEL_TASK_TIMEOUT=\(g.taskTimeout.components.seconds)s",
            "EASEL_TASK_MAX_ATTEMPTS=\(g.maximumAttempts)",
            "EASEL_SUBMIT_RATE=\(g.submitPerMinute)",
            "EASEL_SUBMIT_RATE_IP=\(g.submitPerMinuteIP)",
            "EASEL_API_KEY_RATE=\(g.apiKeyPerMinute)",
            "EASEL_UPLOAD_MAX_BYTES=\(g.uploadMaximumBytes)",
            "EASEL_FETCH_ALLOW_HOSTS=\(g.fetchAllowHosts.joined(separator: ","))",
        ]
        switch g.provider {
        case .demo: lines.append("EASEL_DEMO_LATENCY_MS=\(g.demoLatency.milliseconds)")
        case .openai: lines += ["EASEL_OPENAI_API_KEY=********", "EASEL_OPENAI_BASE_URL=\(g.openAIBaseURL.absoluteString)"]
        case .evolink:
            lines += ["EASEL_EVOLINK_API_KEY=********", "EASEL_EVOLINK_BASE_URL=\(g.evolinkBaseURL.absoluteString)", "EASEL_EVOLINK_CALLBACKS=\(g.evolinkCallbacks.rawValue)"]
        }
        return lines
    }
}
