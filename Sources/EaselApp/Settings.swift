import Configuration
import Foundation
import Logging
import SystemPackage

/// One setting: its configuration key (command line `--public-url`) and environment name
/// (`EASEL_PUBLIC_URL`). Every key here is documented in sample.env (a test checks).
public struct SettingKey: Sendable, Hashable {
    /// The swift-configuration key, e.g. "publicUrl" or "s3.accessKeyId".
    public let key: String
    public let env: String
    /// Secrets also accept `<ENV>_FILE` naming a file that holds the value.
    public let isSecret: Bool

    init(_ key: String, _ env: String, secret: Bool = false) {
        self.key = key
        self.env = env
        self.isSecret = secret
    }
}

public enum Key {
    public static let publicURL = SettingKey("publicUrl", "EASEL_PUBLIC_URL")
    public static let host = SettingKey("host", "EASEL_HOST")
    public static let port = SettingKey("port", "EASEL_PORT")
    public static let dataDir = SettingKey("dataDir", "EASEL_DATA_DIR")
    public static let siteName = SettingKey("siteName", "EASEL_SITE_NAME")
    public static let secretKey = SettingKey("secretKey", "EASEL_SECRET_KEY", secret: true)
    public static let masterKeyFile = SettingKey("masterKeyFile", "EASEL_MASTER_KEY_FILE")
    public static let logLevel = SettingKey("logLevel", "EASEL_LOG_LEVEL")
    public static let logFormat = SettingKey("logFormat", "EASEL_LOG_FORMAT")
    public static let devAssets = SettingKey("devAssets", "EASEL_DEV_ASSETS")
    public static let assetsDir = SettingKey("assetsDir", "EASEL_ASSETS_DIR")
    public static let storage = SettingKey("storage", "EASEL_STORAGE")
    public static let s3Endpoint = SettingKey("s3.endpoint", "EASEL_S3_ENDPOINT")
    public static let s3Region = SettingKey("s3.region", "EASEL_S3_REGION")
    public static let s3Bucket = SettingKey("s3.bucket", "EASEL_S3_BUCKET")
    public static let s3AccessKeyID = SettingKey("s3.accessKeyId", "EASEL_S3_ACCESS_KEY_ID")
    public static let s3SecretAccessKey = SettingKey("s3.secretAccessKey", "EASEL_S3_SECRET_ACCESS_KEY", secret: true)
    public static let s3PathStyle = SettingKey("s3.pathStyle", "EASEL_S3_PATH_STYLE")
    public static let backupInterval = SettingKey("backup.interval", "EASEL_BACKUP_INTERVAL")
    public static let backupKeep = SettingKey("backup.keep", "EASEL_BACKUP_KEEP")
    public static let tlsCertFile = SettingKey("tls.certFile", "EASEL_TLS_CERT_FILE")
    public static let tlsKeyFile = SettingKey("tls.keyFile", "EASEL_TLS_KEY_FILE")
    public static let tlsRedirectPort = SettingKey("tls.redirectPort", "EASEL_TLS_REDIRECT_PORT")
    public static let signup = SettingKey("signup", "EASEL_SIGNUP")
    public static let signupDomains = SettingKey("signupDomains", "EASEL_SIGNUP_DOMAINS")
    public static let minAge = SettingKey("minAge", "EASEL_MIN_AGE")
    public static let sessionIdle = SettingKey("session.idle", "EASEL_SESSION_IDLE")
    public static let sessionMax = SettingKey("session.max", "EASEL_SESSION_MAX")
    public static let mail = SettingKey("mail", "EASEL_MAIL")
    public static let mailFrom = SettingKey("mail.from", "EASEL_MAIL_FROM")
    public static let smtpHost = SettingKey("smtp.host", "EASEL_SMTP_HOST")
    public static let smtpPort = SettingKey("smtp.port", "EASEL_SMTP_PORT")
    public static let smtpSecurity = SettingKey("smtp.security", "EASEL_SMTP_SECURITY")
    public static let smtpUsername = SettingKey("smtp.username", "EASEL_SMTP_USERNAME")
    public static let smtpPassword = SettingKey("smtp.password", "EASEL_SMTP_PASSWORD", secret: true)
    public static let smtpCAFile = SettingKey("smtp.caFile", "EASEL_SMTP_CA_FILE")
    public static let smtpTLSServerName = SettingKey("smtp.tlsServerName", "EASEL_SMTP_TLS_SERVER_NAME")
    public static let resendAPIKey = SettingKey("resend.apiKey", "EASEL_RESEND_API_KEY", secret: true)
    public static let resendBaseURL = SettingKey("resend.baseUrl", "EASEL_RESEND_BASE_URL")
    public static let oidcIssuer = SettingKey("oidc.issuer", "EASEL_OIDC_ISSUER")
    public static let oidcClientID = SettingKey("oidc.clientId", "EASEL_OIDC_CLIENT_ID")
    public static let oidcClientSecret = SettingKey("oidc.clientSecret", "EASEL_OIDC_CLIENT_SECRET", secret: true)
    public static let oidcButtonLabel = SettingKey("oidc.buttonLabel", "EASEL_OIDC_BUTTON_LABEL")
    public static let trustedProxies = SettingKey("trustedProxies", "EASEL_TRUSTED_PROXIES")
    public static let provider = SettingKey("provider", "EASEL_PROVIDER")
    public static let openAIAPIKey = SettingKey("openai.apiKey", "EASEL_OPENAI_API_KEY", secret: true)
    public static let openAIBaseURL = SettingKey("openai.baseUrl", "EASEL_OPENAI_BASE_URL")
    public static let openAITimeout = SettingKey("openai.timeout", "EASEL_OPENAI_TIMEOUT")
    public static let evolinkAPIKey = SettingKey("evolink.apiKey", "EASEL_EVOLINK_API_KEY", secret: true)
    public static let evolinkBaseURL = SettingKey("evolink.baseUrl", "EASEL_EVOLINK_BASE_URL")
    public static let evolinkCallbacks = SettingKey("evolink.callbacks", "EASEL_EVOLINK_CALLBACKS")
    public static let demoLatencyMS = SettingKey("demo.latencyMs", "EASEL_DEMO_LATENCY_MS")
    public static let models = SettingKey("models", "EASEL_MODELS")
    public static let sizes = SettingKey("sizes", "EASEL_SIZES")
    public static let qualities = SettingKey("qualities", "EASEL_QUALITIES")
    public static let maxImages = SettingKey("maxImages", "EASEL_MAX_IMAGES")
    public static let prices = SettingKey("prices", "EASEL_PRICES")
    public static let signupCredits = SettingKey("signupCredits", "EASEL_SIGNUP_CREDITS")
    public static let workers = SettingKey("workers", "EASEL_WORKERS")
    public static let maxActiveTasks = SettingKey("maxActiveTasks", "EASEL_MAX_ACTIVE_TASKS")
    public static let taskTimeout = SettingKey("taskTimeout", "EASEL_TASK_TIMEOUT")
    public static let taskMaxAttempts = SettingKey("taskMaxAttempts", "EASEL_TASK_MAX_ATTEMPTS")
    public static let submitRate = SettingKey("submitRate", "EASEL_SUBMIT_RATE")
    public static let submitRateIP = SettingKey("submitRateIp", "EASEL_SUBMIT_RATE_IP")
    public static let apiKeyRate = SettingKey("apiKeyRate", "EASEL_API_KEY_RATE")
    public static let uploadMaxBytes = SettingKey("uploadMaxBytes", "EASEL_UPLOAD_MAX_BYTES")
    public static let fetchAllowHosts = SettingKey("fetch.allowHosts", "EASEL_FETCH_ALLOW_HOSTS")
    public static let fetchMaxBytes = SettingKey("fetch.maxBytes", "EASEL_FETCH_MAX_BYTES")
    public static let fetchTimeout = SettingKey("fetch.timeout", "EASEL_FETCH_TIMEOUT")
    public static let stripeSecretKey = SettingKey("stripe.secretKey", "STRIPE_SECRET_KEY", secret: true)
    public static let stripeWebhookSecret = SettingKey("stripe.webhookSecret", "STRIPE_WEBHOOK_SECRET", secret: true)
    public static let stripeAPIBase = SettingKey("stripe.apiBase", "EASEL_STRIPE_API_BASE")
    public static let billingCatalog = SettingKey("billing.catalog", "EASEL_BILLING_CATALOG")
    public static let accountPurgeDays = SettingKey("accountPurgeDays", "EASEL_ACCOUNT_PURGE_DAYS")
    public static let exportRetentionDays = SettingKey("exportRetentionDays", "EASEL_EXPORT_RETENTION_DAYS")
    public static let analytics = SettingKey("analytics", "EASEL_ANALYTICS")
    public static let analyticsRetentionDays = SettingKey("analyticsRetentionDays", "EASEL_ANALYTICS_RETENTION_DAYS")
    public static let logRetentionDays = SettingKey("logRetentionDays", "EASEL_LOG_RETENTION_DAYS")
    public static let countryHeader = SettingKey("countryHeader", "EASEL_COUNTRY_HEADER")
    public static let regionHeader = SettingKey("regionHeader", "EASEL_REGION_HEADER")
    public static let geoIPDatabase = SettingKey("geoipDb", "EASEL_GEOIP_DB")
    public static let operatorName = SettingKey("operatorName", "EASEL_OPERATOR_NAME")
    public static let privacyContact = SettingKey("privacyContact", "EASEL_PRIVACY_CONTACT")
    public static let jurisdiction = SettingKey("jurisdiction", "EASEL_JURISDICTION")
    public static let policyVersion = SettingKey("policy.version", "EASEL_POLICY_VERSION")
    public static let policyUpdated = SettingKey("policy.updated", "EASEL_POLICY_UPDATED")
    public static let policyDir = SettingKey("policy.dir", "EASEL_POLICY_DIR")

    public static let all: [SettingKey] = [
        publicURL, host, port, dataDir, siteName, secretKey, masterKeyFile, logLevel, logFormat, devAssets, assetsDir,
        storage, s3Endpoint, s3Region, s3Bucket, s3AccessKeyID, s3SecretAccessKey, s3PathStyle,
        backupInterval, backupKeep, tlsCertFile, tlsKeyFile, tlsRedirectPort,
        signup, signupDomains, minAge, sessionIdle, sessionMax, mail, mailFrom,
        smtpHost, smtpPort, smtpSecurity, smtpUsername, smtpPassword, smtpCAFile, smtpTLSServerName,
        resendAPIKey, resendBaseURL, oidcIssuer, oidcClientID, oidcClientSecret, oidcButtonLabel, trustedProxies,
        provider, openAIAPIKey, openAIBaseURL, openAITimeout, evolinkAPIKey, evolinkBaseURL, evolinkCallbacks, demoLatencyMS,
        models, sizes, qualities, maxImages, prices, signupCredits, workers, maxActiveTasks, taskTimeout, taskMaxAttempts,
        submitRate, submitRateIP, apiKeyRate, uploadMaxBytes, fetchAllowHosts, fetchMaxBytes, fetchTimeout,
        stripeSecretKey, stripeWebhookSecret, stripeAPIBase, billingCatalog,
        accountPurgeDays, exportRetentionDays,
        analytics, analyticsRetentionDays, logRetentionDays, countryHeader, regionHeader, geoIPDatabase,
        operatorName, privacyContact, jurisdiction, policyVersion, policyUpdated, policyDir,
    ]
}

extension EaselConfig {
    /// The providers in order: command line, environment, `.env` in the working folder.
    /// Defaults live in `EaselConfig.load`, beside their validation.
    public static func reader(arguments: [String], environment: [String: String], dotEnvPath: String?) async throws -> ConfigReader {
        var providers: [any ConfigProvider] = [
            CommandLineArgumentsProvider(arguments: ["easel"] + arguments),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "easel"),
            // Stripe's own names (STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET) carry no EASEL_ prefix.
            EnvironmentVariablesProvider(environmentVariables: environment.filter { $0.key.hasPrefix("STRIPE_") }),
        ]
        if let dotEnvPath {
            providers.append(try await EnvironmentVariablesProvider(environmentFilePath: .init(dotEnvPath), allowMissing: true).prefixKeys(with: "easel"))
            providers.append(try await EnvironmentVariablesProvider(environmentFilePath: .init(dotEnvPath), allowMissing: true))
        }
        return ConfigReader(providers: providers)
    }
}

/// Reads raw strings and turns them into typed values, or a `ConfigError` naming the variable.
struct SettingsReader {
    let reader: ConfigReader

    /// The trimmed value without surrounding quotes (as .env files often write them); an empty
    /// value counts as unset.
    func string(_ key: SettingKey) -> String? {
        guard let raw = self.reader.string(forKey: ConfigKey(key.key), isSecret: key.isSecret) else { return nil }
        var trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count >= 2, let first = trimmed.first, first == "\"" || first == "'", trimmed.last == first {
            trimmed = String(trimmed.dropFirst().dropLast())
        }
        return trimmed.isEmpty ? nil : trimmed
    }

    /// A secret from `KEY` or from the file named by `KEY_FILE` (never both).
    func secret(_ key: SettingKey) throws(ConfigError) -> String? {
        let direct = self.string(key)
        let fileKey = SettingKey(key.key + "File", key.env + "_FILE")
        guard let path = self.string(fileKey) else { return direct }
        guard direct == nil else {
            throw ConfigError(key: key.env, problem: "set either \(key.env) or \(fileKey.env), not both")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: fileKey.env, problem: "cannot read the file \(path)")
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else { throw ConfigError(key: fileKey.env, problem: "the file \(path) is empty") }
        return value
    }

    func int(_ key: SettingKey, default value: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        try self.optionalInt(key, range: range) ?? value
    }

    func optionalInt(_ key: SettingKey, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let raw = self.string(key) else { return nil }
        guard let value = Int(raw), range.contains(value) else {
            throw ConfigError(key: key.env, problem: "must be a whole number from \(range.lowerBound) to \(range.upperBound) (got \"\(raw)\")")
        }
        return value
    }

    func bool(_ key: SettingKey, default value: Bool) throws(ConfigError) -> Bool {
        guard let raw = self.string(key) else { return value }
        switch raw.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigError(key: key.env, problem: "must be true or false (got \"\(raw)\")")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ key: SettingKey, default value: T) throws(ConfigError) -> T where T.RawValue == String {
        guard let raw = self.string(key) else { return value }
        guard let chosen = T(rawValue: raw.lowercased()) else {
            let options = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigError(key: key.env, problem: "must be one of \(options) (got \"\(raw)\")")
        }
        return chosen
    }

    /// An absolute http(s) URL without query or fragment; a trailing slash is dropped.
    func url(_ key: SettingKey, default value: String) throws(ConfigError) -> URL {
        let raw = self.string(key) ?? value
        guard let components = URLComponents(string: raw), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
            components.query == nil, components.fragment == nil
        else {
            throw ConfigError(key: key.env, problem: "must be an http:// or https:// URL with a host and no query (got \"\(raw)\")")
        }
        let trimmed = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
        return URL(string: trimmed)!
    }

    /// A comma-separated list, trimmed, without empty items; nil when unset.
    func list(_ key: SettingKey) -> [String]? {
        guard let raw = self.string(key) else { return nil }
        let items = raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return items.isEmpty ? nil : items
    }

    /// "90s", "15m", "24h", "7d", or plain seconds; "off" or "0" when `allowOff`.
    /// At least `minimumSeconds` (a minute unless said otherwise).
    func duration(_ key: SettingKey, default value: String, allowOff: Bool, minimumSeconds: Int64 = 60) throws(ConfigError) -> Duration? {
        let raw = (self.string(key) ?? value).lowercased()
        if allowOff, raw == "off" || raw == "0" { return nil }
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var number = Substring(raw)
        var multiplier: Int64 = 1
        if let last = raw.last, let unit = units[last] {
            number = raw.dropLast()
            multiplier = unit
        }
        guard let amount = Int64(number), amount > 0, amount * multiplier >= minimumSeconds else {
            let off = allowOff ? ", or off" : ""
            let problem = minimumSeconds >= 60
                ? "must be a duration of at least a minute like 30m, 24h or 7d\(off)"
                : "must be a duration like 30s, 5m or 1h\(off)"
            throw ConfigError(key: key.env, problem: "\(problem) (got \"\(raw)\")")
        }
        return .seconds(amount * multiplier)
    }
}

