import AsyncHTTPClient
import EaselBlobs
import EaselCore
import EaselImages
import EaselIntegrations
import EaselStore
import Foundation
import Logging
import NIOCore

/// Everything long-lived, created in one place from the configuration. The server and the
/// command line commands both start from here.
public struct AppServices: Sendable {
    public let config: EaselConfig
    public let secretKey: String
    public let database: AppDatabase
    /// Encrypts each person's objects under their data key (`EncryptedBlobStore`).
    public let blobs: any BlobStore
    public let blobURLSigner: BlobURLSigner
    /// Each person's data key, wrapped by the master key (EASEL_MASTER_KEY_FILE).
    public let dataKeys: DataKeys
    public let backups: BackupService
    public let scheduler: Scheduler
    public let accounts: AccountService
    public let twoFactor: TwoFactorService
    public let apiKeys: APIKeyService
    /// Profile pictures: uploads, and the provider's picture at a first sign-in.
    public let avatars: AvatarService
    /// Nil when no OpenID Connect client is configured.
    public let externalSignIn: ExternalSignIn?
    public let mailer: MailDispatcher
    public let httpClient: HTTPClient
    public let logger: Logger
    /// The message catalogs (locales/), for pages and mails.
    public let localizer: Localizer
    public let generation: GenerationService
    public let dispatcher: GenerationDispatcher
    /// Signs the per-task callback URLs given to asynchronous providers.
    public let callbackSigner: SignedValue
    /// Requests per API key (EASEL_API_KEY_RATE).
    public let apiKeyRateLimit: RateLimiter.Rule
    /// Data rights: access download, deletion and purge, restriction, consent.
    public let privacy: PrivacyService
    /// Buffers the request log and page views and writes them in batches.
    public let traffic: TrafficRecorder
    /// "Export everything": the archives, their jobs, and a stop at shutdown.
    public let exports: ExportService
    /// The policy pages' facts, and publishing new versions of them.
    public let policy: PolicyService
    /// Stripe billing; nil when not configured.
    public let billing: BillingService?

    /// Opens the data folder, the database (migrating it) and the blob store.
    /// `passwordHasher` lets tests use a cheaper bcrypt cost; production uses cost 12.
    public static func start(config: EaselConfig, logger: Logger, passwordHasher: PasswordHasher? = nil) async throws -> AppServices {
        let localizer = config.devAssets ? try Localizer.disk(root: config.assetsDirectory) : try Localizer.embedded()
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: config.dataDirectory, withIntermediateDirectories: true)
        try fileManager.createDirectory(at: config.workDirectory, withIntermediateDirectories: true)
        let secretKey = try config.secretKey ?? SecretKeyFile.loadOrCreate(at: config.secretKeyPath)

        let database = try AppDatabase.open(path: config.databasePath.path)
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Self.httpClientConfiguration())
        let signer = BlobURLSigner(baseURL: config.publicURL, secret: Data(secretKey.utf8))
        let dataKeys: DataKeys
        let blobs: EncryptedBlobStore
        do {
            let masterKeys = try MasterKeyFile.loadOrCreate(at: config.masterKeyPath, existingDataKeys: try await database.dataKeyCount())
            dataKeys = DataKeys(database: database, masterKeys: masterKeys)
            blobs = EncryptedBlobStore(
                inner: try Self.makeBlobStore(config: config, signer: signer, httpClient: httpClient, logger: logger), keyring: dataKeys,
                urlSigner: signer, personalFolders: Set(PrivacyService.personalFolders)
            )
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
        let backups = BackupService(
            database: database, blobs: blobs, workFolder: config.workDirectory, keep: config.backupKeep,
            logger: logger.with(label: "easel.backup")
        )
        var accountSettings = AccountService.Settings(
            signup: AccountService.SignupMode(rawValue: config.signup.rawValue)!, allowedDomains: config.signupDomains,
            minimumAge: config.minimumAge, sessionIdle: config.sessionIdle.seconds, sessionMax: config.sessionMax.seconds,
            signupCredits: config.generation.signupCredits
        )
        accountSettings.termsVersion = config.policy.version
        let mails = AccountMails(siteName: config.siteName, publicURL: config.publicURL, localizer: localizer)
        let accounts = AccountService(
            settings: accountSettings, database: database, hasher: passwordHasher ?? PasswordHasher(), mails: mails,
            logger: logger.with(label: "easel.accounts")
        )
        let twoFactor = TwoFactorService(database: database, mails: mails, issuer: config.siteName, secrets: dataKeys)
        let apiKeys = APIKeyService(database: database)
        let images = ImageLibrary()
        let avatars = AvatarService(
            database: database, blobs: blobs, images: images,
            fetcher: GuardedFetcher(
                policy: FetchPolicy(
                    maximumBytes: AvatarService.maximumUploadBytes, timeout: min(config.generation.fetchTimeout, AvatarService.fetchTimeout),
                    allowedHosts: Set(config.generation.fetchAllowHosts)
                ),
                logger: logger.with(label: "easel.fetch")
            ),
            logger: logger.with(label: "easel.avatars")
        )
        var externalSignIn: ExternalSignIn?
        if let oidc = config.oidc {
            let client = try OIDCClient(
                configuration: OIDCConfiguration(
                    issuer: oidc.issuer, clientID: oidc.clientID, clientSecret: oidc.clientSecret,
                    redirectURI: config.publicURL.appending(path: "auth/oidc/callback"),
                    // Plain http only for an issuer on this machine (tests, local identity providers).
                    allowInsecureLoopback: true
                ),
                httpClient: httpClient, logger: logger.with(label: "easel.oidc")
            )
            externalSignIn = ExternalSignIn(
                buttonLabel: oidc.buttonLabel, client: client, database: database, settings: accountSettings, avatars: avatars,
                logger: logger.with(label: "easel.oidc")
            )
        }
        let mailer = MailDispatcher(
            database: database, transport: Self.makeMailTransport(config: config, httpClient: httpClient, logger: logger),
            from: Self.mailAddress(config.mailFrom), logger: logger.with(label: "easel.mail")
        )
        var jobs = [
            MaintenanceJobs.databaseUpkeep(database: database, sessionIdle: config.sessionIdle.seconds),
            MaintenanceJobs.mail(dispatcher: mailer),
            MaintenanceJobs.sealExisting(dataKeys: dataKeys, blobs: blobs, logger: logger.with(label: "easel.encryption")),
        ]
        if let interval = config.backupInterval {
            jobs.append(MaintenanceJobs.backup(service: backups, interval: interval))
        }
        let privacy = PrivacyService(
            settings: PrivacyService.Settings(purgeDays: config.accountPurgeDays), database: database, blobs: blobs, dataKeys: dataKeys,
            mails: mails, unsubscribeSigner: SignedValue(secret: secretKey, purpose: "easel unsubscribe v1"), logger: logger.with(label: "easel.privacy")
        )
        jobs += [PrivacyJobs.accountPurge(privacy: privacy), PrivacyJobs.retention(privacy: privacy)]
        let traffic = TrafficRecorder(
            settings: TrafficRecorder.Settings(logRequests: config.analytics.logRetentionDays > 0, analytics: config.analytics.enabled),
            database: database, logger: logger.with(label: "easel.traffic")
        )
        jobs.append(
            MaintenanceJobs.trafficRetention(database: database, logDays: config.analytics.logRetentionDays, analyticsDays: config.analytics.retentionDays)
        )
        let exports = ExportService(
            settings: ExportService.Settings(retentionDays: config.exportRetentionDays), database: database, blobs: blobs, mails: mails,
            logger: logger.with(label: "easel.exports")
        )
        jobs += exports.jobs()
        let scheduler = Scheduler(jobs: jobs, database: database, logger: logger.with(label: "easel.jobs"))
        exports.onMailQueued { [scheduler] in scheduler.wake("mail") }

        let events = TaskEvents()
        let generationSettings = Self.generationSettings(config)
        let callbackSigner = SignedValue(secret: secretKey, purpose: "easel provider callback v1")
        let dispatcher = GenerationDispatcher(
            .init(
                settings: generationSettings, database: database, blobs: blobs, images: images, events: events,
                backend: Self.makeBackend(config: config.generation, images: images, httpClient: httpClient, logger: logger),
                fetcher: GuardedFetcher(
                    policy: FetchPolicy(
                        maximumBytes: config.generation.fetchMaximumBytes, timeout: config.generation.fetchTimeout,
                        allowedHosts: Set(config.generation.fetchAllowHosts)
                    ),
                    logger: logger.with(label: "easel.fetch")
                ),
                callbackSigner: callbackSigner
            ),
            logger: logger.with(label: "easel.dispatcher")
        )
        let generation = GenerationService(
            settings: generationSettings, database: database, blobs: blobs, images: images, events: events,
            wake: { [dispatcher] in dispatcher.wake() }, logger: logger.with(label: "easel.generation")
        )
        return AppServices(
            config: config, secretKey: secretKey, database: database, blobs: blobs, blobURLSigner: signer, dataKeys: dataKeys,
            backups: backups, scheduler: scheduler, accounts: accounts, twoFactor: twoFactor, apiKeys: apiKeys, avatars: avatars, externalSignIn: externalSignIn, mailer: mailer, httpClient: httpClient, logger: logger,
            localizer: localizer, generation: generation, dispatcher: dispatcher, callbackSigner: callbackSigner,
            apiKeyRateLimit: RateLimiter.Rule(capacity: config.generation.apiKeyPerMinute, per: .seconds(60)),
            privacy: privacy,
            traffic: traffic,
            exports: exports,
            policy: PolicyService(facts: config.policyFacts(), templateFolder: config.policy.templateFolder, database: database, mails: mails),
            billing: config.billing.map { billing in
                BillingService(
                    database: database,
                    stripe: LiveStripeAPI(configuration: StripeConfiguration(secretKey: billing.secretKey, apiBase: billing.apiBase), httpClient: httpClient),
                    catalog: billing.catalog,
                    settings: BillingService.Settings(webhookSecrets: billing.webhookSecrets, publicURL: config.publicURL),
                    mails: mails, logger: logger.with(label: "easel.billing")
                )
            }
        )
    }

    /// Releases connections; the database closes when the last reference goes.
    public func shutdown() async {
        await self.traffic.flush()
        try? await self.httpClient.shutdown()
    }

    static func generationSettings(_ config: EaselConfig) -> GenerationSettings {
        let g = config.generation
        // Evolink only calls back to https addresses; `auto` sends a callback URL only then.
        let callbacks = g.provider == .evolink && (g.evolinkCallbacks == .on || (g.evolinkCallbacks == .auto && config.publicURL.scheme == "https"))
        return GenerationSettings(
            provider: g.provider, models: g.models, sizes: g.sizes, qualities: g.qualities, maximumCount: g.maximumImages,
            prices: g.prices, workers: g.workers, maximumActiveTasks: g.maximumActiveTasks, taskTimeout: g.taskTimeout,
            maximumAttempts: g.maximumAttempts,
            submitPerPerson: RateLimiter.Rule(capacity: g.submitPerMinute, per: .seconds(60)),
            submitPerIP: RateLimiter.Rule(capacity: g.submitPerMinuteIP, per: .seconds(60)),
            uploadMaximumBytes: g.uploadMaximumBytes,
            callbackBaseURL: callbacks ? config.publicURL : nil
        )
    }

    static func makeBackend(config: EaselConfig.Generation, images: ImageLibrary, httpClient: HTTPClient, logger: Logger) -> GenerationBackend {
        switch config.provider {
        case .demo:
            return .demo(DemoImageProvider(latency: config.demoLatency, images: images))
        case .openai:
            return .synchronous(
                OpenAIImageProvider(
                    configuration: OpenAIConfiguration(apiKey: config.openAIAPIKey ?? "", baseURL: config.openAIBaseURL.absoluteString, timeout: config.openAITimeout),
                    httpClient: httpClient, logger: logger.with(label: "easel.providers.openai")
                )
            )
        case .evolink:
            return .asynchronous(
                EvolinkImageProvider(
                    configuration: EvolinkConfiguration(apiKey: config.evolinkAPIKey ?? "", baseURL: config.evolinkBaseURL.absoluteString),
                    httpClient: httpClient, logger: logger.with(label: "easel.providers.evolink")
                )
            )
        }
    }

    static func makeBlobStore(config: EaselConfig, signer: BlobURLSigner, httpClient: HTTPClient, logger: Logger) throws -> any BlobStore {
        switch config.storage {
        case .disk:
            return try DiskBlobStore(root: config.blobsDirectory, urlSigner: signer)
        case .s3:
            guard let s3 = config.s3 else { preconditionFailure("load() requires S3 settings for EASEL_STORAGE=s3") }
            return try S3BlobStore(
                configuration: S3Configuration(
                    endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, accessKeyID: s3.accessKeyID,
                    secretAccessKey: s3.secretAccessKey, pathStyle: s3.pathStyle
                ),
                httpClient: httpClient,
                logger: logger.with(label: "easel.s3")
            )
        }
    }

    /// Nil for EASEL_MAIL=log: mail stays in the admin mailbox.
    static func makeMailTransport(config: EaselConfig, httpClient: HTTPClient, logger: Logger) -> (any MailTransport)? {
        switch config.mail {
        case .log:
            return nil
        case .smtp:
            guard let smtp = config.smtp else { preconditionFailure("load() requires SMTP settings for EASEL_MAIL=smtp") }
            let security: SMTPConfiguration.Security =
                switch smtp.security {
                case .starttls: .startTLS
                case .tls: .tls
                case .none: .none
                }
            return SMTPTransport(
                configuration: SMTPConfiguration(
                    host: smtp.host, port: smtp.port, security: security, username: smtp.username, password: smtp.password,
                    tlsServerName: smtp.tlsServerName, caCertificateFile: smtp.caFile, clientName: config.publicURL.host ?? "localhost"
                ),
                logger: logger.with(label: "easel.mail.smtp")
            )
        case .resend:
            guard let resend = config.resend else { preconditionFailure("load() requires Resend settings for EASEL_MAIL=resend") }
            return ResendTransport(
                configuration: ResendConfiguration(apiKey: resend.apiKey, baseURL: resend.baseURL.absoluteString),
                httpClient: httpClient, logger: logger.with(label: "easel.mail.resend")
            )
        }
    }

    /// "Name <address>" or a bare address.
    static func mailAddress(_ raw: String) -> MailAddress {
        guard let open = raw.lastIndex(of: "<"), let close = raw.lastIndex(of: ">"), open < close else {
            return MailAddress(raw.trimmingCharacters(in: .whitespaces))
        }
        let name = raw[..<open].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return MailAddress(String(raw[raw.index(after: open)..<close]), name: name.isEmpty ? nil : name)
    }

    static func httpClientConfiguration() -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        configuration.redirectConfiguration = .disallow
        return configuration
    }
}

extension Logger {
    /// A logger with another label and the same level and handler settings.
    func with(label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = self.logLevel
        return logger
    }
}
