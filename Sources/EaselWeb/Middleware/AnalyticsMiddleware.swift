import Crypto
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird

/// A visitor's cookie choices, kept in the strictly necessary `easel_consent` cookie:
/// whether their visits may be counted, and whether the language and theme they pick may be
/// remembered for a year (otherwise only until the browser closes).
public struct ConsentChoice: Sendable, Equatable {
    public var analytics: Bool
    public var preferences: Bool

    public init(analytics: Bool, preferences: Bool) {
        self.analytics = analytics
        self.preferences = preferences
    }

    static let cookieName = "easel_consent"
    /// Six months, then the visitor is asked again.
    static let cookieLifetime = 182 * 86400

    var cookieValue: String { "analytics=\(self.analytics ? "yes" : "no")&preferences=\(self.preferences ? "yes" : "no")" }

    /// Nil unless both choices are there and readable: a damaged cookie asks again.
    init?(cookie: String?) {
        guard let cookie else { return nil }
        var fields: [String: String] = [:]
        for pair in cookie.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        func flag(_ name: String) -> Bool? {
            switch fields[name] {
            case "yes": true
            case "no": false
            default: nil
            }
        }
        guard let analytics = flag("analytics"), let preferences = flag("preferences") else { return nil }
        self.analytics = analytics
        self.preferences = preferences
    }
}

/// Counts a page view when a GET of an HTML page succeeds, unless the visitor said no in any
/// of the ways they can: Global Privacy Control, Do Not Track, the cookie choice, or (signed
/// in) their profile's setting. Robots are not counted. Nothing is stored about the address
/// but its network, hashed with the day's salt together with the user agent; the view is
/// handed to the recorder, which writes it later in a batch.
struct AnalyticsMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let recorder: TrafficRecorder
    let database: AppDatabase
    /// This site's host: moving between its own pages is not a referral.
    let ownHost: String?

    /// Paths that are never pages (files, the API, probes, webhooks, the beacon itself).
    static let skippedPrefixes = [
        "/static/", "/api/", "/v1/", "/a/", "/webhooks/", "/avatars/", "/blobs/", "/images/", "/healthz", "/readyz", "/metrics",
    ]

    static func isPage(_ path: String) -> Bool {
        !Self.skippedPrefixes.contains { path.hasPrefix($0) } && !path.hasSuffix(".json")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard request.method == .get, Self.isPage(path) else { return try await next(request, context) }
        if PrivacySignals.optOut(gpc: request.headers[HTTPField.Name("Sec-GPC")!], dnt: request.headers[HTTPField.Name("DNT")!]) {
            return try await next(request, context)
        }
        let consent = context.preferences.consent
        if consent?.analytics == false { return try await next(request, context) }
        let userAgent = request.headers[.userAgent] ?? ""
        let traits = VisitorTraits(userAgent: userAgent)
        if traits.isRobot { return try await next(request, context) }
        if let userID = context.identity?.user.id, try await self.database.analyticsOptOut(userID: userID) {
            return try await next(request, context)
        }
        var context = context
        // Only those who said yes get the beacon (it reads the screen size in their browser).
        let token = consent?.analytics == true ? Self.beaconToken() : nil
        context.beaconToken = token
        let response = try await next(request, context)
        guard response.status == .ok, response.headers[.contentType]?.hasPrefix("text/html") == true else { return response }
        let now = Date()
        let network = ClientNetwork.truncate(context.clientIP)
        guard let visitor = await self.recorder.visitorHash(network: network, userAgent: userAgent, at: now) else { return response }
        await self.recorder.recordView(
            PageViewEntry(
                at: now, path: String(path.prefix(300)), visitor: visitor,
                referrerHost: ReferrerHost.from(request.headers[.referer], ownHost: self.ownHost),
                country: context.country, region: context.region, device: traits.device, os: traits.os, browser: traits.browser,
                beaconToken: token
            )
        )
        return response
    }

    /// 128 random bits as 32 hex digits.
    static func beaconToken() -> String {
        SymmetricKey(size: .bits128).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }
}
