import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Two-factor sign-in: the second step at sign-in, and turning it on and off in the account.
struct TwoFactorController {
    let accounts: AccountService
    let twoFactor: TwoFactorService
    let database: AppDatabase
    let views: ViewRenderer
    let cookies: CookiePolicy
    /// Signs the "password was right, code still due" cookie.
    let challenge: SignedValue
    let mailQueued: @Sendable () -> Void

    static let challengeLifetime: TimeInterval = 300
    var challengeCookie: String { self.cookies.secure ? "__Host-easel_2fa" : "easel_2fa" }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/signin/2fa", use: self.codePage)
        router.post("/signin/2fa", use: self.checkCode)
        let account = router.group("account/2fa", context: SignedInContext.self)
        account.get(use: self.settingsPage)
        account.post("setup", use: self.setup)
        account.post("enable", use: self.enable)
        account.post("disable", use: self.disable)
    }

    /// Called by sign-in when the password was right and the account has two-factor on.
    func startChallenge(for user: User) -> Response {
        var response = Response(status: .seeOther, headers: [.location: "/signin/2fa"])
        let value = self.challenge.sign(String(user.id!), expiresAt: Date().addingTimeInterval(Self.challengeLifetime))
        response.setCookie(self.cookies.cookie(self.challengeCookie, value: value, maxAge: Int(Self.challengeLifetime)))
        return response
    }

    struct CodePage: Sendable {
        var layout: LayoutData
        var error: String?
    }

    @Sendable func codePage(_ request: Request, context: AppRequestContext) throws -> Response {
        guard self.pendingUserID(request) != nil else { return Response(status: .seeOther, headers: [.location: "/signin"]) }
        return try self.views.render(CodePage(layout: self.views.layout(title: self.views.text("twofactor.title", [:], context), context: context), error: nil), template: "signin-2fa")
    }

    func pendingUserID(_ request: Request) -> Int64? {
        request.cookies[self.challengeCookie].flatMap { self.challenge.verify($0.value) }.flatMap { Int64($0) }
    }

    struct CodeForm: Decodable {
        var code: String?
    }

    @Sendable func checkCode(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let userID = self.pendingUserID(request), let user = try await self.database.user(id: userID), user.status == .active else {
            return Response(status: .seeOther, headers: [.location: "/signin"])
        }
        let form = try await URLEncodedFormDecoder().decode(CodeForm.self, from: request, context: context)
        if let wait = try await self.accounts.throttleDelay(email: user.email, ip: context.clientIP) {
            var response = try self.views.render(
                CodePage(
                    layout: self.views.layout(title: self.views.text("twofactor.title", [:], context), context: context),
                    error: self.views.text("twofactor.error_throttled", ["wait": self.views.duration(seconds: wait, context)], context)
                ),
                template: "signin-2fa", status: .tooManyRequests
            )
            response.headers[.retryAfter] = String(wait)
            return response
        }
        guard try await self.twoFactor.verify(user: user, code: form.code ?? "") else {
            try await self.database.recordLoginFailure(email: user.email, ip: context.clientIP)
            return try self.views.render(
                CodePage(
                    layout: self.views.layout(title: self.views.text("twofactor.title", [:], context), context: context),
                    error: self.views.text("twofactor.error_code", [:], context)
                ),
                template: "signin-2fa", status: .unauthorized
            )
        }
        try await self.database.clearLoginFailures(email: user.email)
        let new = try await self.accounts.startSession(for: user, userAgent: request.headers[.userAgent] ?? "", ip: context.clientIP, country: context.country)
        var response = Response(status: .seeOther, headers: [.location: "/account"])
        response.setCookie(self.cookies.session(new.token, maxAge: Int(self.accounts.settings.sessionMax)))
        response.setCookie(self.cookies.cookie(self.challengeCookie, value: "", maxAge: 0))
        return response
    }

    // MARK: Settings

    struct SettingsPage: Sendable {
        var layout: LayoutData
        var enabled: Bool
        var setup: TwoFactorService.Setup?
        /// The setup URI as an inline <svg> QR code, for the phone to scan; empty without a setup.
        var qrSVG: String
        var recoveryCodes: [String]
        var showCodes: Bool
        var remainingCodes: Int
        /// "8 recovery codes left.", in the page's language.
        var remainingText: String
        var error: String?
        var notice: String?
    }

    func settings(_ context: SignedInContext, user: User, setup: TwoFactorService.Setup? = nil, codes: [String] = [], error: String? = nil, notice: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let remaining = user.hasTwoFactor ? try await self.database.unusedRecoveryCodeCount(userID: user.id!) : 0
        // An otpauth URI is far below a QR code's capacity; were it ever too long, the link and the key still work.
        let qrSVG = setup.flatMap { try? QRCode($0.uri).svg(label: self.views.text("account_2fa.qr_label", [:], context)) } ?? ""
        let page = SettingsPage(
            layout: self.views.layout(title: self.views.text("twofactor.title", [:], context), context: context), enabled: user.hasTwoFactor, setup: setup, qrSVG: qrSVG,
            recoveryCodes: codes, showCodes: !codes.isEmpty, remainingCodes: remaining,
            remainingText: self.views.text(remaining == 1 ? "account_2fa.codes_left_one" : "account_2fa.codes_left_other", ["count": String(remaining)], context), error: error, notice: notice
        )
        return try self.views.render(page, template: "account-2fa", status: status)
    }

    @Sendable func settingsPage(_ request: Request, context: SignedInContext) async throws -> Response {
        try await self.settings(context, user: context.user, setup: try await self.twoFactor.pendingSetup(for: context.user))
    }

    @Sendable func setup(_ request: Request, context: SignedInContext) async throws -> Response {
        guard !context.user.hasTwoFactor else { return Response(status: .seeOther, headers: [.location: "/account/2fa"]) }
        let setup = try await self.twoFactor.beginSetup(for: context.user)
        return try await self.settings(context, user: context.user, setup: setup)
    }

    @Sendable func enable(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CodeForm.self, from: request, context: context)
        guard let user = try await self.database.user(id: context.user.id!) else { throw SignInRequired() }
        guard let codes = try await self.twoFactor.confirmSetup(for: user, code: form.code ?? "") else {
            return try await self.settings(
                context, user: user, setup: try await self.twoFactor.pendingSetup(for: user),
                error: self.views.text("account_2fa.error_code", [:], context),
                status: .unprocessableContent
            )
        }
        self.mailQueued()
        let updated = try await self.database.user(id: user.id!) ?? user
        return try await self.settings(context, user: updated, codes: codes, notice: self.views.text("account_2fa.notice_on", [:], context))
    }

    struct DisableForm: Decodable {
        var password: String?
    }

    @Sendable func disable(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(DisableForm.self, from: request, context: context)
        let user = context.user
        guard case .signedIn = try await self.accounts.signIn(email: user.email, password: form.password ?? "", ip: context.clientIP) else {
            return try await self.settings(context, user: user, error: self.views.text("account_2fa.error_password", [:], context), status: .unauthorized)
        }
        try await self.twoFactor.disable(for: user)
        self.mailQueued()
        let updated = try await self.database.user(id: user.id!) ?? user
        return try await self.settings(context, user: updated, notice: self.views.text("account_2fa.notice_off", [:], context))
    }
}
