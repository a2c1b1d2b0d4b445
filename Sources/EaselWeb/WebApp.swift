import EaselBlobs
import Hummingbird

/// What the web layer needs from the rest of the app, passed in by the composition root.
public struct WebDependencies: Sendable {
    public var siteName: String
    public var assets: AssetCatalog
    public var readinessChecks: [ReadinessCheck]
    public var blobs: any BlobStore
    public var blobURLSigner: BlobURLSigner
    /// True when served over HTTPS: turns on HSTS.
    public var servesTLS: Bool

    public init(siteName: String, assets: AssetCatalog, readinessChecks: [ReadinessCheck], blobs: any BlobStore, blobURLSigner: BlobURLSigner, servesTLS: Bool) {
        self.siteName = siteName
        self.assets = assets
        self.readinessChecks = readinessChecks
        self.blobs = blobs
        self.blobURLSigner = blobURLSigner
        self.servesTLS = servesTLS
    }
}

/// Every route of the site, in one place.
public func buildRouter(_ dependencies: WebDependencies) -> Router<AppRequestContext> {
    let views = ViewRenderer(assets: dependencies.assets, siteName: dependencies.siteName)
    let router = Router(context: AppRequestContext.self)
    // Outermost first: headers go on every response, errors included.
    router.add(middleware: SecurityHeadersMiddleware(strictTransportSecurity: dependencies.servesTLS))
    router.add(middleware: AccessLogMiddleware())
    router.add(middleware: CompressionMiddleware())
    router.add(middleware: ErrorMiddleware(views: views))

    HealthController(checks: dependencies.readinessChecks, timeout: .seconds(5)).addRoutes(to: router)
    StaticController(assets: dependencies.assets).addRoutes(to: router)
    HomeController(views: views).addRoutes(to: router)
    SignedBlobController(blobs: dependencies.blobs, signer: dependencies.blobURLSigner).addRoutes(to: router)
    return router
}
