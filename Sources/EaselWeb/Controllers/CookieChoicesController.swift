import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Cookie choices (/cookies, the banner's buttons), the person's own analytics setting, and
/// the beacon that adds a screen size to a counted page view.
struct CookieChoicesController {
    let cookies: CookiePolicy
    /// "https://img.example.org": a Referer from anywhere else is not followed back.
    let publicOrigin: String
    let views: ViewRenderer
    let database: AppDatabase
    let recorder: TrafficRecorder?
    /// EASEL_ANALYTICS: whether visits are counted at all.
    let analytics: Bool

    /// A beacon body is a token and a number: anything bigger is not one.
    static let beaconLimit = 512

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/cookies", use: self.page)
        router.post("/cookies", use: self.save)
        router.post("/a/beacon", use: self.beacon)
        router.group("account", context: SignedInContext.self).post("analytics", use: self.saveAccount)
    }

    struct Page: Sendable {
        var layout: LayoutData
        var analyticsOn: Bool
        var analyticsChecked: Bool
        var preferencesChecked: Bool
        /// No choice made yet: visits are counted (without the screen size) until declined.
        var unanswered: Bool
        /// The browser sends Global Privacy Control or Do Not Track.
        var browserSignal: Bool
        var signedIn: Bool
        var accountCounted: Bool
        var notice: String?
    }

    @Sendable func page(_ request: Request, context: AppRequestContext) async throws -> Response {
        let consent = context.preferences.consent
        var accountCounted = true
        if let id = context.identity?.user.id { accountCounted = !(try await self.database.analyticsOptOut(userID: id)) }
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "saved": self.views.text("cookies.notice_saved", [:], context)
            case "account": self.views.text("cookies.notice_account", [:], context)
            default: nil
            }
        var layout = self.views.layout(title: self.views.text("cookies.title", [:], context), context: context)
        // The page itself is the long form of the banner.
        layout.consentBanner = false
        let page = Page(
            layout: layout, analyticsOn: self.analytics,
            // Never ticked in advance: a box someone did not tick is not their consent.
            analyticsChecked: consent?.analytics == true, preferencesChecked: consent?.preferences == true, unanswered: consent == nil,
            browserSignal: PrivacySignals.optOut(gpc: request.headers[HTTPField.Name("Sec-GPC")!], dnt: request.headers[HTTPField.Name("DNT")!]),
            signedIn: context.identity != nil, accountCounted: accountCounted, notice: notice
        )
        return try self.views.render(page, template: "cookies")
    }

    struct Form: Decodable {
        /// "accept" or "decline" from the banner; "save" from the page's checkboxes.
        var choice: String
        var analytics: String?
        var preferences: String?
        var back: String?
    }

    @Sendable func save(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(Form.self, from: request, context: context)
        let choice: ConsentChoice
        switch form.choice {
        case "accept": choice = ConsentChoice(analytics: true, preferences: true)
        case "decline": choice = ConsentChoice(analytics: false, preferences: false)
        case "save": choice = ConsentChoice(analytics: form.analytics == "on", preferences: form.preferences == "on")
        default: throw WebError.badRequest(self.views.text("cookies.error", [:], context))
        }
        let back =
            form.choice == "save"
            ? "/cookies?notice=saved" : (AccountController.safeNext(form.back) ?? self.sameSitePath(request.headers[.referer]) ?? "/")
        var response = Response(status: .seeOther, headers: [.location: back])
        response.setCookie(self.cookies.cookie(ConsentChoice.cookieName, value: choice.cookieValue, maxAge: ConsentChoice.cookieLifetime))
        // A language already chosen is kept for a year with consent to preference cookies,
        // and only until the browser closes without it.
        if let existing = request.cookies[VisitorPreferences.cookieName]?.value, !existing.isEmpty {
            response.setCookie(
                self.cookies.cookie(VisitorPreferences.cookieName, value: existing, maxAge: choice.preferences ? VisitorPreferences.cookieLifetime : nil))
        }
        return response
    }

    struct AccountForm: Decodable {
        /// "on" when the box "count my visits" is ticked.
        var counted: String?
    }

    @Sendable func saveAccount(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(AccountForm.self, from: request, context: context)
        try await self.database.setAnalyticsOptOut(userID: context.user.id!, form.counted != "on")
        return Response(status: .seeOther, headers: [.location: "/cookies?notice=account"])
    }

    /// `v=<token>&w=<width>` (and the form's `_csrf`, which the CSRF middleware checks):
    /// anything else, or anything longer, is refused. 204 either way once it is well formed,
    /// whether or not the token still names a page view.
    @Sendable func beacon(_ request: Request, context: AppRequestContext) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: Self.beaconLimit)
        guard body.readableBytes <= Self.beaconLimit else {
            throw WebError(.contentTooLarge, code: "too_large", message: "A beacon is at most \(Self.beaconLimit) bytes.")
        }
        var fields: [String: String] = [:]
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, fields[String(parts[0])] == nil else { throw Self.badBeacon }
            fields[String(parts[0])] = String(parts[1])
        }
        guard Set(fields.keys).isSubset(of: ["v", "w", "_csrf"]), let token = fields["v"], token.count == 32,
            token.allSatisfy({ $0.isHexDigit && ($0.isNumber || $0.isLowercase) }), let raw = fields["w"], raw.count <= 5,
            let width = Int(raw), let bucket = ScreenBucket.bucket(width: width)
        else { throw Self.badBeacon }
        if self.analytics, context.preferences.consent?.analytics == true {
            await self.recorder?.recordScreen(token: token, bucket: bucket)
        }
        return Response(status: .noContent)
    }

    static let badBeacon = WebError(.badRequest, code: "bad_beacon", message: "A beacon is v=<32 hex digits>&w=<screen width>.")

    /// The path and query of a Referer on this site, or nil.
    func sameSitePath(_ referer: String?) -> String? {
        guard let referer, referer.hasPrefix(self.publicOrigin + "/") else { return nil }
        return AccountController.safeNext(String(referer.dropFirst(self.publicOrigin.count)))
    }
}
