import Configuration
import EaselTestSupport
import Foundation
import Testing

@testable import EaselApp

@Suite("Configuration")
struct ConfigTests {
    func load(_ environment: [String: String], arguments: [String] = [], dotEnv: String? = nil) async throws -> EaselConfig {
        var dotEnvPath: String?
        if let dotEnv {
            let folder = try TemporaryDirectory()
            let path = folder.url.appending(path: ".env")
            try dotEnv.write(to: path, atomically: true, encoding: .utf8)
            dotEnvPath = path.path
        }
        let reader = try await EaselConfig.reader(arguments: arguments, environment: environment, dotEnvPath: dotEnvPath)
        return try EaselConfig.load(from: reader)
    }

    func loadError(_ environment: [String: String]) async throws -> ConfigError? {
        do {
            _ = try await self.load(environment)
            return nil
        } catch let error as ConfigError {
            return error
        }
    }

    @Test("With nothing set, the embedded defaults serve localhost:8080 from ./data on disk")
    func defaults() async throws {
        let config = try await self.load([:])
        #expect(config.port == 8080)
        #expect(config.publicURL.absoluteString == "http://localhost:8080")
        #expect(config.storage == .disk)
        #expect(config.dataDirectory.path.hasSuffix("/data"))
        #expect(config.backupInterval == .seconds(86400))
        #expect(config.backupKeep == 7)
        #expect(config.logFormat == .text)
        #expect(config.secretKey == nil)
        #expect(config.tls == nil)
        #expect(config.mail == .log)
        #expect(config.signup == .open)
        #expect(config.minimumAge == 13)
        #expect(config.oidc == nil)
        #expect(config.mailFrom == "Easel <noreply@localhost>")
    }

    @Test("SMTP settings get the port of their security mode by default")
    func smtpDefaults() async throws {
        let config = try await self.load(["EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.example.org", "EASEL_SMTP_SECURITY": "tls"])
        #expect(config.smtp?.port == 465)
        #expect(try await self.load(["EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.example.org"]).smtp?.port == 587)
    }

    @Test("The command line wins over the environment, which wins over .env")
    func precedence() async throws {
        let all = try await self.load(["EASEL_PORT": "9001"], arguments: ["--port", "9000"], dotEnv: "EASEL_PORT=9002\n")
        #expect(all.port == 9000)
        let envAndFile = try await self.load(["EASEL_PORT": "9001"], dotEnv: "EASEL_PORT=9002\n")
        #expect(envAndFile.port == 9001)
        let fileOnly = try await self.load([:], dotEnv: "EASEL_PORT=9002\nEASEL_SITE_NAME=\"Studio Nine\"\n")
        #expect(fileOnly.port == 9002)
        #expect(fileOnly.siteName == "Studio Nine")
        let nested = try await self.load([:], arguments: ["--public-url", "https://img.example.org/", "--backup-keep", "3"])
        #expect(nested.publicURL.absoluteString == "https://img.example.org")
        #expect(nested.backupKeep == 3)
    }

    static let badSettings: [(environment: [String: String], key: String)] = [
        (["EASEL_PORT": "abc"], "EASEL_PORT"),
        (["EASEL_PORT": "70000"], "EASEL_PORT"),
        (["EASEL_PORT": "-1"], "EASEL_PORT"),
        (["EASEL_PUBLIC_URL": "ftp://example.org"], "EASEL_PUBLIC_URL"),
        (["EASEL_PUBLIC_URL": "localhost:8080"], "EASEL_PUBLIC_URL"),
        (["EASEL_PUBLIC_URL": "https://example.org/?a=b"], "EASEL_PUBLIC_URL"),
        (["EASEL_SITE_NAME": String(repeating: "x", count: 61)], "EASEL_SITE_NAME"),
        (["EASEL_SECRET_KEY": "too-short"], "EASEL_SECRET_KEY"),
        (["EASEL_SECRET_KEY": String(repeating: "k", count: 40), "EASEL_SECRET_KEY_FILE": "/etc/hostname"], "EASEL_SECRET_KEY"),
        (["EASEL_SECRET_KEY_FILE": "/nonexistent/secret"], "EASEL_SECRET_KEY_FILE"),
        (["EASEL_LOG_LEVEL": "loud"], "EASEL_LOG_LEVEL"),
        (["EASEL_LOG_FORMAT": "xml"], "EASEL_LOG_FORMAT"),
        (["EASEL_DEV_ASSETS": "perhaps"], "EASEL_DEV_ASSETS"),
        (["EASEL_STORAGE": "ftp"], "EASEL_STORAGE"),
        (["EASEL_STORAGE": "s3"], "EASEL_S3_BUCKET"),
        (["EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "No_Such!"], "EASEL_S3_BUCKET"),
        (["EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "images"], "EASEL_S3_ACCESS_KEY_ID"),
        (["EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "images", "EASEL_S3_ACCESS_KEY_ID": "AKID"], "EASEL_S3_SECRET_ACCESS_KEY"),
        (["EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "images", "EASEL_S3_ACCESS_KEY_ID": "AKID", "EASEL_S3_SECRET_ACCESS_KEY": "s", "EASEL_S3_PATH_STYLE": "maybe"], "EASEL_S3_PATH_STYLE"),
        (["EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "images", "EASEL_S3_ACCESS_KEY_ID": "AKID", "EASEL_S3_SECRET_ACCESS_KEY": "s", "EASEL_S3_ENDPOINT": "minio:9000"], "EASEL_S3_ENDPOINT"),
        (["EASEL_BACKUP_INTERVAL": "soon"], "EASEL_BACKUP_INTERVAL"),
        (["EASEL_BACKUP_INTERVAL": "10s"], "EASEL_BACKUP_INTERVAL"),
        (["EASEL_BACKUP_KEEP": "0"], "EASEL_BACKUP_KEEP"),
        (["EASEL_TLS_CERT_FILE": "/etc/hostname"], "EASEL_TLS_KEY_FILE"),
        (["EASEL_TLS_KEY_FILE": "/etc/hostname"], "EASEL_TLS_CERT_FILE"),
        (["EASEL_TLS_CERT_FILE": "/nonexistent.pem", "EASEL_TLS_KEY_FILE": "/etc/hostname"], "EASEL_TLS_CERT_FILE"),
        (["EASEL_TLS_REDIRECT_PORT": "8081"], "EASEL_TLS_REDIRECT_PORT"),
        (["EASEL_SIGNUP": "sometimes"], "EASEL_SIGNUP"),
        (["EASEL_TRUSTED_PROXIES": "127.0.0.1, nginx"], "EASEL_TRUSTED_PROXIES"),
        (["EASEL_TRUSTED_PROXIES": "10.0.0.0/33"], "EASEL_TRUSTED_PROXIES"),
        (["EASEL_SIGNUP_DOMAINS": "example.org, not a domain"], "EASEL_SIGNUP_DOMAINS"),
        (["EASEL_MIN_AGE": "200"], "EASEL_MIN_AGE"),
        (["EASEL_SESSION_IDLE": "60d", "EASEL_SESSION_MAX": "30d"], "EASEL_SESSION_IDLE"),
        (["EASEL_MAIL": "pigeon"], "EASEL_MAIL"),
        (["EASEL_MAIL": "smtp"], "EASEL_SMTP_HOST"),
        (["EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.example.org", "EASEL_SMTP_SECURITY": "ssl3"], "EASEL_SMTP_SECURITY"),
        (["EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.example.org", "EASEL_SMTP_USERNAME": "easel"], "EASEL_SMTP_PASSWORD"),
        (["EASEL_MAIL": "smtp", "EASEL_SMTP_HOST": "mail.example.org", "EASEL_SMTP_PORT": "0"], "EASEL_SMTP_PORT"),
        (["EASEL_MAIL": "resend"], "EASEL_RESEND_API_KEY"),
        (["EASEL_MAIL_FROM": "nobody"], "EASEL_MAIL_FROM"),
        (["EASEL_OIDC_CLIENT_ID": "abc.apps.googleusercontent.com"], "EASEL_OIDC_CLIENT_SECRET"),
        (["EASEL_OIDC_CLIENT_ID": "abc", "EASEL_OIDC_CLIENT_SECRET": "s", "EASEL_OIDC_ISSUER": "accounts.google.com"], "EASEL_OIDC_ISSUER"),
        (["EASEL_TLS_CERT_FILE": "/etc/hostname", "EASEL_TLS_KEY_FILE": "/etc/hostname", "EASEL_TLS_REDIRECT_PORT": "8080"], "EASEL_TLS_REDIRECT_PORT"),
    ]

    @Test("A bad setting is refused with an error naming its variable", arguments: Self.badSettings)
    func badSetting(_ environment: [String: String], key: String) async throws {
        let error = try #require(try await self.loadError(environment))
        #expect(error.key == key)
        #expect(!error.problem.isEmpty)
        #expect(!error.description.contains("\n"), "one line")
    }

    @Test("An empty secret file is refused")
    func emptySecretFile() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = folder.url.appending(path: "empty")
        try Data().write(to: path)
        let error = try #require(try await self.loadError(["EASEL_SECRET_KEY_FILE": path.path]))
        #expect(error.key == "EASEL_SECRET_KEY_FILE")
    }

    @Test("Secrets are read from *_FILE and masked when the configuration is printed")
    func secretsFromFilesAreMasked() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let secret = String(repeating: "q", count: 48)
        let s3Secret = "s3-secret-value-do-not-print"
        try (secret + "\n").write(to: folder.url.appending(path: "key"), atomically: true, encoding: .utf8)
        try s3Secret.write(to: folder.url.appending(path: "s3"), atomically: true, encoding: .utf8)
        let config = try await self.load([
            "EASEL_SECRET_KEY_FILE": folder.url.appending(path: "key").path,
            "EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": "images", "EASEL_S3_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "EASEL_S3_SECRET_ACCESS_KEY_FILE": folder.url.appending(path: "s3").path,
        ])
        #expect(config.secretKey == secret)
        #expect(config.s3?.secretAccessKey == s3Secret)
        #expect(config.s3?.endpoint.absoluteString == "https://s3.us-east-1.amazonaws.com")
        let printed = config.describe().joined(separator: "\n")
        #expect(!printed.contains(secret))
        #expect(!printed.contains(s3Secret))
        #expect(printed.contains("EASEL_S3_ACCESS_KEY_ID=AKIDEXAMPLE"))
        #expect(printed.contains("EASEL_SECRET_KEY=********"))
    }

    @Test("Durations accept s, m, h, d and 'off'")
    func durations() async throws {
        #expect(try await self.load(["EASEL_BACKUP_INTERVAL": "90m"]).backupInterval == .seconds(5400))
        #expect(try await self.load(["EASEL_BACKUP_INTERVAL": "7d"]).backupInterval == .seconds(7 * 86400))
        #expect(try await self.load(["EASEL_BACKUP_INTERVAL": "3600"]).backupInterval == .seconds(3600))
        #expect(try await self.load(["EASEL_BACKUP_INTERVAL": "off"]).backupInterval == nil)
    }

    @Test("Every setting is documented in sample.env with its default")
    func sampleEnvDocumentsEverySetting() throws {
        let sample = try String(contentsOf: Checkout.root.appending(path: "sample.env"), encoding: .utf8)
        let documented = Set(sample.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.drop { $0 == "#" || $0 == " " }
            guard let eq = trimmed.firstIndex(of: "="), trimmed.hasPrefix("EASEL_") || trimmed.hasPrefix("STRIPE_") else { return nil }
            return String(trimmed[..<eq])
        })
        for key in Key.all {
            #expect(documented.contains(key.env), "\(key.env) is missing from sample.env")
            if key.isSecret {
                #expect(documented.contains(key.env + "_FILE"), "\(key.env)_FILE is missing from sample.env")
            }
        }
        for name in documented {
            #expect(Key.all.contains { $0.env == name || $0.env + "_FILE" == name }, "sample.env documents \(name), which Easel does not read")
        }
    }
}
