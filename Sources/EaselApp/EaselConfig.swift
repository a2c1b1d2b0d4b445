import Configuration
import Foundation
import Logging

/// Every setting Easel reads, typed and validated. Built in one place, `EaselConfig.load`;
/// everything else receives the parts it needs through `init`.
public struct EaselConfig: Sendable {
    public enum Storage: String, Sendable, CaseIterable { case disk, s3 }
    public enum Signup: String, Sendable, CaseIterable { case open, invite, closed }
    /// Where mail goes: `log` keeps it in the admin mailbox page only.
    public enum MailTransportKind: String, Sendable, CaseIterable { case log, smtp, resend }
    public enum SMTPSecurity: String, Sendable, CaseIterable { case starttls, tls, none }

    public struct SMTP: Sendable {
        public var host: String
        public var port: Int
        public var security: SMTPSecurity
        public var username: String?
        public var password: String?
        public var caFile: String?
        public var tlsServerName: String?
    }

    public struct Resend: Sendable {
        public var apiKey: String
        public var baseURL: URL
    }

    /// OpenID Connect sign-in ("Sign in with Google" by default); nil when no client id is set.
    public struct OIDC: Sendable {
        public var issuer: URL
        public var clientID: String
        public var clientSecret: String
        public var buttonLabel: String
    }
    public enum LogFormat: String, Sendable, CaseIterable { case text, json }

    public struct S3: Sendable {
        public var endpoint: URL
        public var region: String
        public var bucket: String
        public var accessKeyID: String
        public var secretAccessKey: String
        public var pathStyle: Bool
    }

    public struct TLS: Sendable {
        public var certificateFile: String
        public var keyFile: String
        /// A plain-HTTP listener that redirects to the HTTPS public URL.
        public var redirectPort: Int?
    }

    public var publicURL: URL
    public var host: String
    public var port: Int
    public var dataDirectory: URL
    public var siteName: String
    /// Nil until start-up fills it from the data folder (`SecretKeyFile`).
    public var secretKey: String?
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    public var devAssets: Bool
    /// Where `static/` and `templates/` are read from when `devAssets` is on.
    public var assetsDirectory: URL
    public var storage: Storage
    public var s3: S3?
    /// Nil turns scheduled backups off.
    public var backupInterval: Duration?
    public var backupKeep: Int
    public var tls: TLS?
    public var signup: Signup
    /// Lowercased domains allowed to sign up; empty allows any.
    public var signupDomains: [String]
    public var minimumAge: Int
    public var sessionIdle: Duration
    public var sessionMax: Duration
    public var mail: MailTransportKind
    public var mailFrom: String
    public var smtp: SMTP?
    public var resend: Resend?
    public var oidc: OIDC?
    /// Addresses or IPv4 CIDR ranges of reverse proxies in front of Easel.
    public var trustedProxies: [String]
    public var generation: Generation
    /// Stripe billing; nil when not configured (admins grant credits instead).
    public var billing: Billing?
    /// Days between a deletion request and the purge; signing in meanwhile can cancel.
    public var accountPurgeDays: Int = 30
    /// First-party analytics and the request log (EaselConfig+Analytics.swift).
    public var analytics = Analytics()
    /// Days a finished "Export everything" archive is kept (EASEL_EXPORT_RETENTION_DAYS).
    public var exportRetentionDays: Int = 7
    /// Operator, privacy contact and policy version (EaselConfig+Policy.swift).
    public var policy = Policy()
    /// The master key file (EASEL_MASTER_KEY_FILE); nil keeps it in the data folder.
    public var masterKeyFile: URL?

    public var databasePath: URL { self.dataDirectory.appending(path: "easel.db") }
    public var blobsDirectory: URL { self.dataDirectory.appending(path: "blobs") }
    public var secretKeyPath: URL { self.dataDirectory.appending(path: "secret.key") }
    public var masterKeyPath: URL { self.masterKeyFile ?? self.dataDirectory.appending(path: "master.key") }
    public var lockPath: URL { self.dataDirectory.appending(path: "easel.lock") }
    public var workDirectory: URL { self.dataDirectory.appending(path: "tmp") }
}

/// A bad setting: names the variable and says what is wrong and what would be right.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var key: String
    public var problem: String

    public var description: String { "\(self.key): \(self.problem)" }
}

extension EaselConfig {
    /// Reads command line (`--port 8080`), then environment (`EASEL_PORT`), then the `.env`
    /// file, then the defaults below. Throws the first bad setting found.
    public static func load(from reader: ConfigReader) throws(ConfigError) -> EaselConfig {
        let settings = SettingsReader(reader: reader)

        let publicURL = try settings.url(Key.publicURL, default: "http://localhost:8080")
        let port = try settings.int(Key.port, default: 8080, range: 0...65535)
        let dataDirectory = URL(fileURLWithPath: settings.string(Key.dataDir) ?? "./data").standardizedFileURL
        let siteName = settings.string(Key.siteName) ?? "Easel"
        guard siteName.count <= 60 else { throw ConfigError(key: Key.siteName.env, problem: "must be at most 60 characters") }

        let secretKey = try settings.secret(Key.secretKey)
        if let secretKey, secretKey.utf8.count < 32 {
            throw ConfigError(key: Key.secretKey.env, problem: "must be at least 32 characters (try: openssl rand -hex 32), or unset it to have one generated")
        }

        let storage = try settings.choice(Key.storage, default: Storage.disk)
        var s3: S3?
        if storage == .s3 {
            let region = settings.string(Key.s3Region) ?? "us-east-1"
            let endpoint = try settings.url(Key.s3Endpoint, default: "https://s3.\(region).amazonaws.com")
            guard let bucket = settings.string(Key.s3Bucket) else {
                throw ConfigError(key: Key.s3Bucket.env, problem: "is required when EASEL_STORAGE=s3")
            }
            guard (3...63).contains(bucket.count), bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else {
                throw ConfigError(key: Key.s3Bucket.env, problem: "must be 3 to 63 lowercase letters, digits, '-' or '.' (got \"\(bucket)\")")
            }
            guard let accessKeyID = settings.string(Key.s3AccessKeyID) else {
                throw ConfigError(key: Key.s3AccessKeyID.env, problem: "is required when EASEL_STORAGE=s3")
            }
            guard let secretAccessKey = try settings.secret(Key.s3SecretAccessKey) else {
                throw ConfigError(key: Key.s3SecretAccessKey.env, problem: "is required when EASEL_STORAGE=s3 (or set EASEL_S3_SECRET_ACCESS_KEY_FILE)")
            }
            s3 = S3(
                endpoint: endpoint, region: region, bucket: bucket, accessKeyID: accessKeyID,
                secretAccessKey: secretAccessKey, pathStyle: try settings.bool(Key.s3PathStyle, default: false)
            )
        }

        let certificate = settings.string(Key.tlsCertFile)
        let privateKey = settings.string(Key.tlsKeyFile)
        var tls: TLS?
        switch (certificate, privateKey) {
        case (nil, nil):
            if settings.string(Key.tlsRedirectPort) != nil {
                throw ConfigError(key: Key.tlsRedirectPort.env, problem: "needs EASEL_TLS_CERT_FILE and EASEL_TLS_KEY_FILE")
            }
        case (nil, _):
            throw ConfigError(key: Key.tlsCertFile.env, problem: "is required when EASEL_TLS_KEY_FILE is set")
        case (_, nil):
            throw ConfigError(key: Key.tlsKeyFile.env, problem: "is required when EASEL_TLS_CERT_FILE is set")
        case (let certificate?, let privateKey?):
            for (key, path) in [(Key.tlsCertFile, certificate), (Key.tlsKeyFile, privateKey)] where !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigError(key: key.env, problem: "cannot read the file \(path)")
            }
            let redirect = try settings.optionalInt(Key.tlsRedirectPort, range: 1...65535)
            if let redirect, redirect == port {
                throw ConfigError(key: Key.tlsRedirectPort.env, problem: "must differ from EASEL_PORT (\(port))")
            }
            tls = TLS(certificateFile: certificate, keyFile: privateKey, redirectPort: redirect)
        }

        let domains = (settings.string(Key.signupDomains) ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }.filter { !$0.isEmpty }
        for domain in domains where !domain.contains(".") || domain.contains("@") || domain.contains(" ") {
            throw ConfigError(key: Key.signupDomains.env, problem: "must be a comma-separated list of domains like example.org (got \"\(domain)\")")
        }
        let sessionIdle = try settings.duration(Key.sessionIdle, default: "7d", allowOff: false)!
        let sessionMax = try settings.duration(Key.sessionMax, default: "30d", allowOff: false)!
        guard sessionIdle <= sessionMax else {
            throw ConfigError(key: Key.sessionIdle.env, problem: "must not be longer than EASEL_SESSION_MAX")
        }
        let mailFrom = settings.string(Key.mailFrom) ?? "\(siteName) <noreply@\(publicURL.host ?? "localhost")>"
        guard mailFrom.contains("@"), !mailFrom.contains("\n"), !mailFrom.contains("\r") else {
            throw ConfigError(key: Key.mailFrom.env, problem: "must be an address like \"Easel <noreply@example.org>\" (got \"\(mailFrom)\")")
        }

        let mail = try settings.choice(Key.mail, default: MailTransportKind.log)
        var smtp: SMTP?
        var resend: Resend?
        switch mail {
        case .log:
            break
        case .smtp:
            guard let host = settings.string(Key.smtpHost) else {
                throw ConfigError(key: Key.smtpHost.env, problem: "is required when EASEL_MAIL=smtp")
            }
            let security = try settings.choice(Key.smtpSecurity, default: SMTPSecurity.starttls)
            let defaultPort = switch security {
            case .starttls: 587
            case .tls: 465
            case .none: 25
            }
            let username = settings.string(Key.smtpUsername)
            let password = try settings.secret(Key.smtpPassword)
            if (username == nil) != (password == nil) {
                throw ConfigError(key: username == nil ? Key.smtpUsername.env : Key.smtpPassword.env, problem: "set both EASEL_SMTP_USERNAME and EASEL_SMTP_PASSWORD, or neither")
            }
            let caFile = settings.string(Key.smtpCAFile)
            if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
                throw ConfigError(key: Key.smtpCAFile.env, problem: "cannot read the file \(caFile)")
            }
            smtp = SMTP(
                host: host, port: try settings.int(Key.smtpPort, default: defaultPort, range: 1...65535), security: security,
                username: username, password: password, caFile: caFile, tlsServerName: settings.string(Key.smtpTLSServerName)
            )
        case .resend:
            guard let apiKey = try settings.secret(Key.resendAPIKey) else {
                throw ConfigError(key: Key.resendAPIKey.env, problem: "is required when EASEL_MAIL=resend (or set EASEL_RESEND_API_KEY_FILE)")
            }
            resend = Resend(apiKey: apiKey, baseURL: try settings.url(Key.resendBaseURL, default: "https://api.resend.com"))
        }

        var oidc: OIDC?
        if let clientID = settings.string(Key.oidcClientID) {
            guard let secret = try settings.secret(Key.oidcClientSecret) else {
                throw ConfigError(key: Key.oidcClientSecret.env, problem: "is required when EASEL_OIDC_CLIENT_ID is set")
            }
            oidc = OIDC(
                issuer: try settings.url(Key.oidcIssuer, default: "https://accounts.google.com"), clientID: clientID, clientSecret: secret,
                buttonLabel: settings.string(Key.oidcButtonLabel) ?? "Sign in with Google"
            )
        }

        let proxies = (settings.string(Key.trustedProxies) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for proxy in proxies {
            let parts = proxy.split(separator: "/")
            let address = String(parts[0])
            let isIPv4 = address.split(separator: ".").count == 4 && address.split(separator: ".").allSatisfy { UInt8($0) != nil }
            let validPrefix = parts.count == 1 || (parts.count == 2 && isIPv4 && Int(parts[1]).map { (0...32).contains($0) } == true)
            guard (isIPv4 || (address.contains(":") && parts.count == 1)), validPrefix else {
                throw ConfigError(key: Key.trustedProxies.env, problem: "must be a comma-separated list of IP addresses or IPv4 ranges like 127.0.0.1,10.0.0.0/8 (got \"\(proxy)\")")
            }
        }

        return EaselConfig(
            publicURL: publicURL,
            host: settings.string(Key.host) ?? "127.0.0.1",
            port: port,
            dataDirectory: dataDirectory,
            siteName: siteName,
            secretKey: secretKey,
            logLevel: try settings.choice(Key.logLevel, default: Logger.Level.info),
            logFormat: try settings.choice(Key.logFormat, default: LogFormat.text),
            devAssets: try settings.bool(Key.devAssets, default: false),
            assetsDirectory: URL(fileURLWithPath: settings.string(Key.assetsDir) ?? ".").standardizedFileURL,
            storage: storage,
            s3: s3,
            backupInterval: try settings.duration(Key.backupInterval, default: "24h", allowOff: true),
            backupKeep: try settings.int(Key.backupKeep, default: 7, range: 1...1000),
            tls: tls,
            signup: try settings.choice(Key.signup, default: Signup.open),
            signupDomains: domains,
            minimumAge: try settings.int(Key.minAge, default: 13, range: 0...120),
            sessionIdle: sessionIdle,
            sessionMax: sessionMax,
            mail: mail,
            mailFrom: mailFrom,
            smtp: smtp,
            resend: resend,
            oidc: oidc,
            trustedProxies: proxies,
            generation: try Self.loadGeneration(settings),
            billing: try Self.loadBilling(settings),
            accountPurgeDays: try settings.int(Key.accountPurgeDays, default: 30, range: 1...365),
            analytics: try Self.loadAnalytics(settings),
            exportRetentionDays: try settings.int(Key.exportRetentionDays, default: 7, range: 1...365),
            policy: try Self.loadPolicy(settings),
            masterKeyFile: settings.string(Key.masterKeyFile).map { URL(fileURLWithPath: $0).standardizedFileURL }
        )
    }

    /// The effective configuration as `KEY=value` lines, secrets masked (`easel config check`).
    public func describe() -> [String] {
        func mask(_ value: String?) -> String { value == nil ? "(generated in the data folder)" : "********" }
        var lines = [
            "EASEL_PUBLIC_URL=\(self.publicURL.absoluteString)",
            "EASEL_HOST=\(self.host)",
            "EASEL_PORT=\(self.port)",
            "EASEL_DATA_DIR=\(self.dataDirectory.path)",
            "EASEL_SITE_NAME=\(self.siteName)",
            "EASEL_SECRET_KEY=\(mask(self.secretKey))",
            "EASEL_MASTER_KEY_FILE=\(self.masterKeyPath.path)",
            "EASEL_LOG_LEVEL=\(self.logLevel.rawValue)",
            "EASEL_LOG_FORMAT=\(self.logFormat.rawValue)",
            "EASEL_DEV_ASSETS=\(self.devAssets)",
            "EASEL_STORAGE=\(self.storage.rawValue)",
            "EASEL_BACKUP_INTERVAL=\(self.backupInterval.map(Self.formatDuration) ?? "off")",
            "EASEL_BACKUP_KEEP=\(self.backupKeep)",
            "EASEL_SIGNUP=\(self.signup.rawValue)",
            "EASEL_SIGNUP_DOMAINS=\(self.signupDomains.joined(separator: ","))",
            "EASEL_MIN_AGE=\(self.minimumAge)",
            "EASEL_SESSION_IDLE=\(Self.formatDuration(self.sessionIdle))",
            "EASEL_SESSION_MAX=\(Self.formatDuration(self.sessionMax))",
            "EASEL_MAIL=\(self.mail.rawValue)",
            "EASEL_MAIL_FROM=\(self.mailFrom)",
            "EASEL_TRUSTED_PROXIES=\(self.trustedProxies.joined(separator: ","))",
            "EASEL_ACCOUNT_PURGE_DAYS=\(self.accountPurgeDays)",
            "EASEL_EXPORT_RETENTION_DAYS=\(self.exportRetentionDays)",
        ] + self.describeGeneration() + self.describeBilling() + self.describeAnalytics() + self.describePolicy()
        if let smtp = self.smtp {
            lines += [
                "EASEL_SMTP_HOST=\(smtp.host)", "EASEL_SMTP_PORT=\(smtp.port)", "EASEL_SMTP_SECURITY=\(smtp.security.rawValue)",
                "EASEL_SMTP_USERNAME=\(smtp.username ?? "")", "EASEL_SMTP_PASSWORD=\(smtp.password == nil ? "" : "********")",
            ]
        }
        if let resend = self.resend {
            lines += ["EASEL_RESEND_API_KEY=********", "EASEL_RESEND_BASE_URL=\(resend.baseURL.absoluteString)"]
        }
        if let oidc = self.oidc {
            lines += [
                "EASEL_OIDC_ISSUER=\(oidc.issuer.absoluteString)", "EASEL_OIDC_CLIENT_ID=\(oidc.clientID)",
                "EASEL_OIDC_CLIENT_SECRET=********", "EASEL_OIDC_BUTTON_LABEL=\(oidc.buttonLabel)",
            ]
        }
        if self.devAssets { lines.append("EASEL_ASSETS_DIR=\(self.assetsDirectory.path)") }
        if let s3 = self.s3 {
            lines += [
                "EASEL_S3_ENDPOINT=\(s3.endpoint.absoluteString)",
                "EASEL_S3_REGION=\(s3.region)",
                "EASEL_S3_BUCKET=\(s3.bucket)",
                "EASEL_S3_ACCESS_KEY_ID=\(s3.accessKeyID)",
                "EASEL_S3_SECRET_ACCESS_KEY=********",
                "EASEL_S3_PATH_STYLE=\(s3.pathStyle)",
            ]
        }
        if let tls = self.tls {
            lines += ["EASEL_TLS_CERT_FILE=\(tls.certificateFile)", "EASEL_TLS_KEY_FILE=\(tls.keyFile)"]
            if let redirect = tls.redirectPort { lines.append("EASEL_TLS_REDIRECT_PORT=\(redirect)") }
        }
        return lines
    }

    static func formatDuration(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds % 86400 == 0 { return "\(seconds / 86400)d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}
