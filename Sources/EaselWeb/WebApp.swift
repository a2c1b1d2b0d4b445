import EaselBlobs
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// What the web layer needs from the rest of the app, passed in by the composition root.
public struct WebDependencies: Sendable {
    public var siteName: String
    public var assets: AssetCatalog
    public var readinessChecks: [ReadinessCheck]
    public var blobs: any BlobStore
    public var blobURLSigner: BlobURLSigner
    /// True when served over HTTPS: turns on HSTS.
    public var servesTLS: Bool
    public var publicURL: URL
    public var database: AppDatabase
    public var accounts: AccountService
    public var twoFactor: TwoFactorService
    public var apiKeys: APIKeyService
    public var externalSignIn: ExternalSignIn?
    /// Reverse proxies whose X-Forwarded-For and CF-IPCountry headers are believed.
    public var trustedProxies: TrustedProxies = try! TrustedProxies([])
    /// EASEL_SECRET_KEY, for signing short-lived browser state.
    public var secretKey: String
    /// "log", "smtp" or "resend", shown on the admin mailbox.
    public var mailTransport: String
    /// Asks for queued mail to go out now.
    public var mailQueued: @Sendable () -> Void
    /// The message catalogs (locales/).
    public var localizer: Localizer
    /// Making images; nil leaves the generation routes out (some tests of other parts).
    public var generation: GenerationService?
    /// Checks the signed tokens of provider callback URLs.
    public var callbackSigner: SignedValue?
    /// Tells the dispatcher a task is due.
    public var wakeDispatcher: @Sendable () -> Void = {}
    /// Requests per API key per period (EASEL_API_KEY_RATE).
    public var apiKeyRateLimit = RateLimiter.Rule(capacity: 600, per: .seconds(60))
    /// Profile pictures; nil makes one without a fetcher (some tests of other parts).
    public var avatars: AvatarService?
    /// Stripe billing; nil hides every billing page and link.
    public var billing: BillingService?
    /// Data rights (Settings → Privacy, /admin/privacy, unsubscribe); nil leaves them out.
    public var privacy: PrivacyService?
    /// Buffers the request log and page views; nil records neither (some tests of other parts).
    public var traffic: TrafficRecorder?
    /// EASEL_ANALYTICS: page views are counted and the cookie banner is shown.
    public var analytics = false
    /// Headers a trusted proxy puts the visitor's country and region in (EASEL_COUNTRY_HEADER,
    /// EASEL_REGION_HEADER); nil ignores them.
    public var countryHeader: String? = "CF-IPCountry"
    public var regionHeader: String?
    /// EASEL_GEOIP_DB: country and region by address when no trusted header gives them.
    public var geoIP: GeoIPDatabase?
    /// The jobs, for the admin page that lists them and their last runs.
    public var scheduler: Scheduler?
    /// "Export everything" (its block on the Privacy page); nil leaves it out.
    public var exports: ExportService?
    /// Wakes the export job after a request.
    public var exportQueued: @Sendable () -> Void = {}
    /// The Privacy Policy and Terms pages and the notice of a material change; nil leaves them out.
    public var policy: PolicyService?

    public init(
        siteName: String, assets: AssetCatalog, readinessChecks: [ReadinessCheck], blobs: any BlobStore, blobURLSigner: BlobURLSigner,
        servesTLS: Bool, publicURL: URL, database: AppDatabase, accounts: AccountService, twoFactor: TwoFactorService,
        externalSignIn: ExternalSignIn? = nil, apiKeys: APIKeyService? = nil,
        secretKey: String, mailTransport: String, localizer: Localizer,
        mailQueued: @escaping @Sendable () -> Void
    ) {
        self.siteName = siteName
        self.assets = assets
        self.readinessChecks = readinessChecks
        self.blobs = blobs
        self.blobURLSigner = blobURLSigner
        self.servesTLS = servesTLS
        self.publicURL = publicURL
        self.database = database
        self.accounts = accounts
        self.twoFactor = twoFactor
        self.apiKeys = apiKeys ?? APIKeyService(database: database)
        self.externalSignIn = externalSignIn
        self.secretKey = secretKey
        self.mailTransport = mailTransport
        self.mailQueued = mailQueued
        self.localizer = localizer
    }
}

/// Every route of the site, in one place.
public func buildRouter(_ dependencies: WebDependencies) -> Router<AppRequestContext> {
    let views = ViewRenderer(
        assets: dependencies.assets, siteName: dependencies.siteName, localizer: dependencies.localizer,
        externalSignInLabel: dependencies.externalSignIn?.buttonLabel, studio: dependencies.generation != nil,
        billing: dependencies.billing != nil, analytics: dependencies.analytics && dependencies.traffic != nil
    )
    let router = Router(context: AppRequestContext.self)
    // Outermost first: headers go on every response, errors included.
    router.add(middleware: SecurityHeadersMiddleware(strictTransportSecurity: dependencies.servesTLS))
    // The client address first, so the request log keeps the visitor's network, not the proxy's.
    router.add(
        middleware: ClientAddressMiddleware(
            trusted: dependencies.trustedProxies, countryHeader: dependencies.countryHeader.flatMap { HTTPField.Name($0) },
            regionHeader: dependencies.regionHeader.flatMap { HTTPField.Name($0) }, geoIP: dependencies.geoIP
        )
    )
    router.add(middleware: AccessLogMiddleware(recorder: dependencies.traffic))
    router.add(middleware: CompressionMiddleware())
    router.add(middleware: PreferencesMiddleware())
    router.add(middleware: ErrorMiddleware(views: views))
    let cookies = CookiePolicy(publicURL: dependencies.publicURL)
    router.add(middleware: SessionMiddleware(accounts: dependencies.accounts, cookies: cookies))
    // Again inside the session, so error pages of signed-in people use their profile's
    // language; the outer one still catches failures of the session lookup itself.
    router.add(middleware: ErrorMiddleware(views: views))
    // A multipart form (the avatar upload) is read whole to find its token: cap it there.
    router.add(middleware: CSRFMiddleware(publicOrigin: origin(of: dependencies.publicURL), multipartLimit: ProfileController.uploadBodyLimit))
    // An account awaiting deletion sees only the page that offers to cancel it.
    router.add(middleware: DeletionPendingMiddleware(database: dependencies.database))
    // After a material policy change, page views lead to the notice until it is acknowledged.
    if let policy = dependencies.policy {
        router.add(middleware: PolicyNoticeMiddleware(policy: policy))
    }
    if dependencies.analytics, let traffic = dependencies.traffic {
        router.add(middleware: AnalyticsMiddleware(recorder: traffic, database: dependencies.database, ownHost: dependencies.publicURL.host))
    }

    HealthController(checks: dependencies.readinessChecks, timeout: .seconds(5)).addRoutes(to: router)
    StaticController(assets: dependencies.assets).addRoutes(to: router)
    HomeController(views: views).addRoutes(to: router)
    if let policy = dependencies.policy {
        PolicyController(policy: policy, views: views, mailQueued: dependencies.mailQueued).addRoutes(to: router)
    }
    PreferencesController(cookies: cookies, publicOrigin: origin(of: dependencies.publicURL), views: views).addRoutes(to: router)
    CookieChoicesController(
        cookies: cookies, publicOrigin: origin(of: dependencies.publicURL), views: views, database: dependencies.database,
        recorder: dependencies.traffic, analytics: dependencies.analytics && dependencies.traffic != nil
    ).addRoutes(to: router)
    AdminAnalyticsController(database: dependencies.database, views: views, analytics: dependencies.analytics && dependencies.traffic != nil)
        .addRoutes(to: router)
    if let scheduler = dependencies.scheduler {
        AdminJobsController(scheduler: scheduler, database: dependencies.database, views: views).addRoutes(to: router)
    }
    SignedBlobController(blobs: dependencies.blobs, signer: dependencies.blobURLSigner).addRoutes(to: router)
    let twoFactor = TwoFactorController(
        accounts: dependencies.accounts, twoFactor: dependencies.twoFactor, database: dependencies.database, views: views, cookies: cookies,
        challenge: SignedValue(secret: dependencies.secretKey, purpose: "easel two-factor challenge v1"), mailQueued: dependencies.mailQueued
    )
    twoFactor.addRoutes(to: router)
    AccountController(
        accounts: dependencies.accounts, views: views, cookies: cookies, mailQueued: dependencies.mailQueued,
        startTwoFactor: { user in twoFactor.startChallenge(for: user) }, devMailbox: dependencies.mailTransport == "log"
    ).addRoutes(to: router)
    if let external = dependencies.externalSignIn {
        ExternalSignInController(
            external: external, accounts: dependencies.accounts, database: dependencies.database, views: views, cookies: cookies,
            flowSigner: SignedValue(secret: dependencies.secretKey, purpose: "easel oidc flow v1"),
            pendingSigner: SignedValue(secret: dependencies.secretKey, purpose: "easel oidc pending account v1"),
            startTwoFactor: { user in twoFactor.startChallenge(for: user) }
        ).addRoutes(to: router)
    }
    SettingsController(database: dependencies.database, views: views).addRoutes(to: router)
    ProfileController(
        accounts: dependencies.accounts, database: dependencies.database, views: views, mailQueued: dependencies.mailQueued,
        avatars: dependencies.avatars ?? AvatarService(database: dependencies.database, blobs: dependencies.blobs, logger: Logger(label: "easel.avatars")),
        blobs: dependencies.blobs
    ).addRoutes(to: router)
    InvitationsController(database: dependencies.database, accounts: dependencies.accounts, views: views, mailQueued: dependencies.mailQueued)
        .addRoutes(to: router)
    AdminUsersController(
        database: dependencies.database, accounts: dependencies.accounts, twoFactor: dependencies.twoFactor, views: views,
        mailQueued: dependencies.mailQueued
    ).addRoutes(to: router)
    AdminMailboxController(database: dependencies.database, views: views, transport: dependencies.mailTransport).addRoutes(to: router)
    APIKeysPageController(apiKeys: dependencies.apiKeys, views: views).addRoutes(to: router)
    let api = APIController(database: dependencies.database, apiKeys: dependencies.apiKeys, keyRateLimit: dependencies.apiKeyRateLimit)
        .addRoutes(to: router)
    if let generation = dependencies.generation {
        GenerationAPIController(
            generation: generation, database: dependencies.database, blobs: dependencies.blobs,
            callbackSigner: dependencies.callbackSigner ?? SignedValue(secret: dependencies.secretKey, purpose: "easel provider callback v1"),
            wakeDispatcher: dependencies.wakeDispatcher
        ).addRoutes(to: api, router: router)
        StudioController(generation: generation, database: dependencies.database, views: views).addRoutes(to: router)
    }
    if let privacy = dependencies.privacy {
        let exports = dependencies.exports.map {
            ExportController(exports: $0, views: views, blobs: dependencies.blobs, exportQueued: dependencies.exportQueued)
        }
        exports?.addRoutes(to: router)
        PrivacyController(
            privacy: privacy, accounts: dependencies.accounts, twoFactor: dependencies.twoFactor, database: dependencies.database, views: views,
            cookies: cookies, mailQueued: dependencies.mailQueued, exports: exports
        ).addRoutes(to: router)
        AdminPrivacyController(privacy: privacy, database: dependencies.database, views: views, mailQueued: dependencies.mailQueued).addRoutes(to: router)
    }
    if let billing = dependencies.billing {
        let records = BillingController(billing: billing, database: dependencies.database, views: views, mailQueued: dependencies.mailQueued)
        records.addRoutes(to: router)
        AdminBillingController(billing: billing, database: dependencies.database, views: views, records: records).addRoutes(to: router)
    }
    return router
}

/// "https://img.example.org" or "http://localhost:8080": what browsers send as Origin.
func origin(of url: URL) -> String {
    var origin = "\(url.scheme ?? "http")://\(url.host ?? "")"
    if let port = url.port { origin += ":\(port)" }
    return origin
}
