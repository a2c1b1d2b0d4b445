import EaselBlobs
import EaselCore
import EaselStore
import EaselWeb
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle

/// Builds the web application around already-started services. The scheduler runs as a
/// service of the same group, so SIGTERM stops the listener, drains requests, then drains jobs.
public func buildApplication(_ services: AppServices, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
    let config = services.config
    let assets = config.devAssets ? AssetCatalog.disk(root: config.assetsDirectory) : try AssetCatalog.embedded()
    var dependencies = WebDependencies(
        siteName: config.siteName,
        assets: assets,
        readinessChecks: [
            ReadinessCheck(name: "database") { try await services.database.ping() },
            ReadinessCheck(name: "storage") { try await services.blobs.checkReady() },
        ],
        blobs: services.blobs,
        blobURLSigner: services.blobURLSigner,
        servesTLS: config.tls != nil,
        publicURL: config.publicURL,
        database: services.database,
        accounts: services.accounts,
        twoFactor: services.twoFactor,
        externalSignIn: services.externalSignIn,
        apiKeys: services.apiKeys,
        secretKey: services.secretKey,
        mailTransport: services.mailer.transportName,
        localizer: services.localizer,
        mailQueued: { [scheduler = services.scheduler] in scheduler.wake("mail") }
    )
    dependencies.trustedProxies = try TrustedProxies(config.trustedProxies)
    dependencies.generation = services.generation
    dependencies.avatars = services.avatars
    dependencies.billing = services.billing
    dependencies.privacy = services.privacy
    dependencies.callbackSigner = services.callbackSigner
    dependencies.wakeDispatcher = { [dispatcher = services.dispatcher] in dispatcher.wake() }
    dependencies.apiKeyRateLimit = services.apiKeyRateLimit
    dependencies.traffic = services.traffic
    dependencies.analytics = config.analytics.enabled
    dependencies.countryHeader = config.analytics.countryHeader
    dependencies.regionHeader = config.analytics.regionHeader
    dependencies.geoIP = config.analytics.geoIP
    dependencies.scheduler = services.scheduler
    dependencies.exports = services.exports
    dependencies.policy = services.policy
    dependencies.exportQueued = { [scheduler = services.scheduler] in scheduler.wake(ExportService.buildJobName) }
    let router = buildRouter(dependencies)

    // After the scheduler: shut down before it, so a long export stops instead of holding it up.
    var extraServices: [any Service] = [services.scheduler, services.exports, services.dispatcher, services.traffic]
    let server: HTTPServerBuilder
    if let tls = config.tls {
        let tlsConfiguration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.keyFile, format: .pem))
        )
        server = try .tls(.http1(), tlsConfiguration: tlsConfiguration)
        if let redirectPort = tls.redirectPort {
            extraServices.append(makeRedirectApplication(host: config.host, port: redirectPort, publicURL: config.publicURL, logger: services.logger))
        }
    } else {
        server = .http1()
    }
    let logger = services.logger
    return Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: nil),
        services: extraServices,
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? config.port
            logger.info("listening", metadata: ["address": "\(config.tls == nil ? "http" : "https")://\(config.host):\(port)", "public_url": "\(config.publicURL)"])
            await onServerRunning(port)
        },
        logger: logger
    )
}

/// Plain HTTP that sends every request to the same path on the HTTPS public URL.
func makeRedirectApplication(host: String, port: Int, publicURL: URL, logger: Logger) -> some Service {
    let router = Router()
    let base = publicURL.absoluteString
    router.get("/**") { request, _ in
        Response(status: .permanentRedirect, headers: [.location: base + (request.uri.path.isEmpty ? "/" : request.uri.description)])
    }
    return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
}

/// Serves until SIGTERM or SIGINT, then stops gracefully.
public func serve(_ services: AppServices) async throws {
    try await buildApplication(services).runService()
}
