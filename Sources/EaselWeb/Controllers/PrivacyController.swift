import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Settings → Privacy: download my data, delete all my images, delete my account (with its
/// grace period, cancelled by signing in), restrict processing, analytics opt-out, marketing
/// consent; and the one-click unsubscribe endpoint of non-essential mail (RFC 8058).
struct PrivacyController {
    let privacy: PrivacyService
    let accounts: AccountService
    let twoFactor: TwoFactorService
    let database: AppDatabase
    let views: ViewRenderer
    let cookies: CookiePolicy
    let mailQueued: @Sendable () -> Void
    /// "Export everything": its block goes on the page; nil leaves it out.
    var exports: ExportController? = nil

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("account/privacy", context: SignedInContext.self)
        group.get(use: self.page)
        group.get("download", use: self.download)
        group.post("images/delete", use: self.deleteImages)
        group.post("restrict", use: self.restrict)
        group.post("marketing", use: self.marketing)
        group.post("analytics", use: self.analytics)
        group.post("delete", use: self.deleteAccount)
        let pending = router.group("account/deletion", context: SignedInContext.self)
        pending.get(use: self.pendingPage)
        pending.post("cancel", use: self.cancelDeletion)
        // Mail clients post here without cookies or a form token (CSRFMiddleware lets it pass):
        // the signed token in the URL is the whole authority, and all it can do is unsubscribe.
        router.get("unsubscribe", use: self.unsubscribePage)
        router.post("unsubscribe", use: self.unsubscribe)
    }

    // MARK: The page

    struct PrivacyPage: Sendable {
        var layout: LayoutData
        var notice: String?
        var error: String?
        var restricted: Bool
        var restrictedSince: String?
        var marketing: Bool
        /// Nil when this build has no analytics opt-out column.
        var analyticsOptOut: Bool?
        var hasPassword: Bool
        var twoFactor: Bool
        /// "30 days": how long signing in can still cancel a deletion.
        var purgeDays: String
        var requests: [RequestRow]
        /// The export block of the ZIP export goes where `export` is; nil leaves it out.
        var export: ExportBlock?
    }

    /// Filled in by the ZIP export (Portability); the template shows `{{#export}}…{{/export}}`.
    typealias ExportBlock = ExportController.Block

    struct RequestRow: Sendable {
        var kind: String
        var outcome: String
        var date: String
    }

    func render(_ context: SignedInContext, notice: String? = nil, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let user = context.user
        let state = try await self.privacy.state(userID: user.id!)
        let optOut: Bool? = try? await self.database.analyticsOptOut(userID: user.id!)
        let page = PrivacyPage(
            layout: self.views.layout(title: self.views.text("privacy.title", [:], context), context: context), notice: notice, error: error,
            restricted: state?.restricted ?? false, restrictedSince: state?.restrictedAt.map { self.views.date($0, context) },
            marketing: state?.marketingConsent ?? false, analyticsOptOut: optOut, hasPassword: user.passwordHash != nil, twoFactor: user.hasTwoFactor,
            purgeDays: String(self.privacy.settings.purgeDays),
            requests: try await self.database.dataRequests(userID: user.id!, limit: 20).map {
                RequestRow(kind: self.views.text("privacy.kind_\($0.kind.rawValue)", [:], context), outcome: $0.outcome, date: self.views.date($0.createdAt, context))
            },
            export: try await self.exports?.block(for: context)
        )
        return try self.views.render(page, template: "account-privacy", status: status)
    }

    @Sendable func page(_ request: Request, context: SignedInContext) async throws -> Response {
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "images-deleted": self.views.text("privacy.notice_images_deleted", [:], context)
            case "restricted": self.views.text("privacy.notice_restricted", [:], context)
            case "unrestricted": self.views.text("privacy.notice_unrestricted", [:], context)
            case "marketing-on": self.views.text("privacy.notice_marketing_on", [:], context)
            case "marketing-off": self.views.text("privacy.notice_marketing_off", [:], context)
            case "analytics": self.views.text("privacy.notice_analytics", [:], context)
            case "deletion-canceled": self.views.text("privacy.notice_deletion_canceled", [:], context)
            default: nil
            }
        return try await self.render(context, notice: notice)
    }

    // MARK: Access

    /// The person's data as a JSON file; only ever their own (the session decides whose).
    @Sendable func download(_ request: Request, context: SignedInContext) async throws -> Response {
        let userID = context.user.id!
        let day = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(secondsFromGMT: 0)!, formatOptions: [.withFullDate])
        let body = try await self.privacy.accessReport(userID: userID)
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/json; charset=utf-8", .cacheControl: "no-store",
                .contentDisposition: "attachment; filename=\"personal-data-\(day).json\"",
            ],
            body: .init(asyncSequence: body)
        )
    }

    // MARK: Deletion of images

    struct ConfirmForm: Decodable {
        var confirm: String?
    }

    @Sendable func deleteImages(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(ConfirmForm.self, from: request, context: context)
        guard form.confirm == "on" else {
            return try await self.render(context, error: self.views.text("privacy.error_confirm_images", [:], context), status: .unprocessableContent)
        }
        try await self.privacy.deleteAllImages(userID: context.user.id!)
        return Response(status: .seeOther, headers: [.location: "/account/privacy?notice=images-deleted"])
    }

    // MARK: Restriction, objection, consent

    struct ValueForm: Decodable {
        var value: String?
    }

    func onOff(_ request: Request, _ context: SignedInContext) async throws -> Bool {
        let form = try await URLEncodedFormDecoder().decode(ValueForm.self, from: request, context: context)
        switch form.value {
        case "on": return true
        case "off": return false
        default: throw WebError(.badRequest, code: "bad_request", key: "privacy.error_on_off", english: "Choose on or off.")
        }
    }

    @Sendable func restrict(_ request: Request, context: SignedInContext) async throws -> Response {
        let on = try await self.onOff(request, context)
        try await self.privacy.setRestricted(user: context.user, on)
        return Response(status: .seeOther, headers: [.location: "/account/privacy?notice=\(on ? "restricted" : "unrestricted")"])
    }

    @Sendable func marketing(_ request: Request, context: SignedInContext) async throws -> Response {
        let on = try await self.onOff(request, context)
        try await self.privacy.setMarketingConsent(user: context.user, on)
        return Response(status: .seeOther, headers: [.location: "/account/privacy?notice=marketing-\(on ? "on" : "off")"])
    }

    /// Objection: "do not count my visits" (the analytics column and its log entry belong to
    /// the analytics store).
    @Sendable func analytics(_ request: Request, context: SignedInContext) async throws -> Response {
        let optOut = try await self.onOff(request, context)
        try await self.database.setAnalyticsOptOut(userID: context.user.id!, optOut)
        return Response(status: .seeOther, headers: [.location: "/account/privacy?notice=analytics"])
    }

    // MARK: Deletion of the account

    struct DeleteForm: Decodable {
        var email: String?
        var password: String?
        var code: String?
    }

    @Sendable func deleteAccount(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(DeleteForm.self, from: request, context: context)
        let user = context.user
        if let wait = try await self.accounts.throttleDelay(email: user.email, ip: context.clientIP) {
            return try await self.render(
                context, error: self.views.text("signin.error_throttled", ["wait": self.views.duration(seconds: wait, context)], context), status: .tooManyRequests
            )
        }
        // The code before the password: a right password clears the failures, so checking it
        // first would let wrong codes be tried without end. A wrong code counts as a failed sign-in.
        var codeOK: Bool?
        if user.hasTwoFactor, user.passwordHash != nil {
            codeOK = try await self.twoFactor.verify(user: user, code: form.code ?? "")
            if codeOK == false {
                try await self.database.recordLoginFailure(email: user.email, ip: context.clientIP)
                return try await self.render(context, error: self.views.text("privacy.error_code", [:], context), status: .unauthorized)
            }
        }
        var passwordOK: Bool?
        if user.passwordHash != nil {
            switch try await self.accounts.signIn(email: user.email, password: form.password ?? "", ip: context.clientIP) {
            case .signedIn, .unverified: passwordOK = true
            case .throttled(let wait):
                return try await self.render(
                    context, error: self.views.text("signin.error_throttled", ["wait": self.views.duration(seconds: wait, context)], context), status: .tooManyRequests
                )
            default: passwordOK = false
            }
        }
        let proof = PrivacyService.Reauthentication(typedEmail: form.email ?? "", passwordOK: passwordOK, codeOK: codeOK, signedInAt: context.identity.session.createdAt)
        let purgeOn: Date
        do {
            try self.privacy.check(proof, user: user)
            purgeOn = try await self.privacy.requestDeletion(user: user)
        } catch let error as PrivacyService.DeletionError {
            let (key, status): (String, HTTPResponse.Status) =
                switch error {
                case .emailMismatch: ("privacy.error_email", .unprocessableContent)
                case .wrongPassword: ("privacy.error_password", .unauthorized)
                case .wrongCode: ("privacy.error_code", .unauthorized)
                case .signInAgain: ("privacy.error_sign_in_again", .unauthorized)
                case .throttled: ("privacy.error_password", .tooManyRequests)
                case .lastAdmin: ("privacy.error_last_admin", .conflict)
                case .activeSubscription: ("privacy.error_subscription", .conflict)
                }
            return try await self.render(context, error: self.views.text(key, [:], context), status: status)
        }
        self.mailQueued()
        // Every session is gone, this one too: the page is for a signed-out visitor.
        var response = try self.views.render(
            NoticePage(
                layout: self.views.layout(title: self.views.text("privacy.deleted_title", [:], context), context: AnonymousPage(context)),
                heading: self.views.text("privacy.deleted_title", [:], context),
                message: self.views.text("privacy.deleted_text", ["date": self.views.date(purgeOn, context), "days": String(self.privacy.settings.purgeDays)], context)
            ),
            template: "privacy-notice"
        )
        response.setCookie(self.cookies.clearedSession())
        return response
    }

    struct PendingPage: Sendable {
        var layout: LayoutData
        var message: String
        var canCancel: Bool
    }

    /// Where a person whose account awaits deletion lands after signing in.
    @Sendable func pendingPage(_ request: Request, context: SignedInContext) async throws -> Response {
        guard let state = try await self.privacy.state(userID: context.user.id!), let requested = state.deletionRequestedAt else {
            return Response(status: .seeOther, headers: [.location: "/account/privacy"])
        }
        let page = PendingPage(
            layout: self.views.layout(title: self.views.text("privacy.pending_title", [:], context), context: context),
            message: self.views.text("privacy.pending_text", ["date": self.views.date(self.privacy.purgeDate(requestedAt: requested), context)], context),
            canCancel: state.deletionReason == .requested && state.purgeStartedAt == nil
        )
        return try self.views.render(page, template: "account-deletion")
    }

    @Sendable func cancelDeletion(_ request: Request, context: SignedInContext) async throws -> Response {
        guard try await self.privacy.cancelDeletion(user: context.user) else {
            return Response(status: .seeOther, headers: [.location: "/account/deletion"])
        }
        self.mailQueued()
        return Response(status: .seeOther, headers: [.location: "/account/privacy?notice=deletion-canceled"])
    }

    // MARK: Unsubscribe

    struct UnsubscribePage: Sendable {
        var layout: LayoutData
        var token: String
        var valid: Bool
        var done: Bool
    }

    /// The link in the mail's footer: a button, never a change on GET (link scanners follow links).
    @Sendable func unsubscribePage(_ request: Request, context: AppRequestContext) throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        let page = UnsubscribePage(
            layout: self.views.layout(title: self.views.text("privacy.unsubscribe_title", [:], context), context: context), token: token,
            valid: self.privacy.unsubscribeUserID(token: token) != nil, done: false
        )
        return try self.views.render(page, template: "unsubscribe", status: page.valid ? .ok : .badRequest)
    }

    struct UnsubscribeForm: Decodable {
        var token: String?
    }

    /// RFC 8058: `POST /unsubscribe?token=…` with the body `List-Unsubscribe=One-Click`, from
    /// the mail provider, without cookies; or the page's button, with the token in the form.
    @Sendable func unsubscribe(_ request: Request, context: AppRequestContext) async throws -> Response {
        var token = request.uri.queryParameters["token"].map(String.init)
        if token == nil || token?.isEmpty == true {
            token = (try? await URLEncodedFormDecoder().decode(UnsubscribeForm.self, from: request, context: context))?.token
        }
        guard let token, try await self.privacy.unsubscribe(token: token) else {
            throw WebError(.badRequest, code: "invalid_token", key: "privacy.unsubscribe_invalid", english: "This unsubscribe link is not valid. Change your mail choices under Settings → Privacy.")
        }
        let page = UnsubscribePage(
            layout: self.views.layout(title: self.views.text("privacy.unsubscribe_title", [:], context), context: context), token: "", valid: true, done: true
        )
        return try self.views.render(page, template: "unsubscribe")
    }
}

/// A page with a heading and a sentence (after a deletion request).
struct NoticePage: Sendable {
    var layout: LayoutData
    var heading: String
    var message: String
}

/// A signed-in request's page shown as a signed-out one (after the session was ended).
struct AnonymousPage: PageContext {
    let cspNonce: String
    let csrfToken: String
    let signedInUser: User?
    let preferences: VisitorPreferences

    /// Keeps the profile's language and theme.
    init(_ context: SignedInContext) {
        self.cspNonce = context.cspNonce
        self.csrfToken = ""
        self.signedInUser = nil
        var preferences = context.preferences
        preferences.language = context.language
        preferences.theme = context.user.theme
        self.preferences = preferences
    }
}
