import EaselCore
import EaselStore
import Foundation
import Hummingbird
import Logging

/// Sign-up, email verification, sign-in and sign-out, password reset.
struct AccountController {
    let accounts: AccountService
    let views: ViewRenderer
    let cookies: CookiePolicy
    /// Called after something was queued for mail, so it goes out at once.
    let mailQueued: @Sendable () -> Void
    /// Asks for the second step when the account has two-factor sign-in on.
    let startTwoFactor: @Sendable (User) -> Response
    let devMailbox: Bool

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/signup", use: self.signUpPage)
        router.post("/signup", use: self.signUp)
        router.get("/signin", use: self.signInPage)
        router.post("/signin", use: self.signIn)
        router.post("/signout", use: self.signOut)
        router.get("/verify", use: self.verifyLink)
        router.get("/verify/code", use: self.verifyCodePage)
        router.post("/verify/code", use: self.verifyCode)
        router.post("/verify/resend", use: self.resendVerification)
        router.get("/forgot-password", use: self.forgotPage)
        router.post("/forgot-password", use: self.forgot)
        router.get("/reset-password", use: self.resetPage)
        router.post("/reset-password", use: self.reset)
    }

    // MARK: Views

    struct FormPage: Sendable {
        var layout: LayoutData
        var error: String?
        var notice: String?
        var email: String
        var displayName: String
        var minimumAge: Int
        var token: String
        var passwordHint: String
        /// "I am at least 13 years old.", in the page's language.
        var ageConfirmation: String
        /// Where to go after signing in (a path on this site).
        var next: String
        /// Mail is kept in the dev mailbox (EASEL_MAIL=log): say where to find it.
        var devMailbox: Bool
    }

    /// Renders `template`; `title` is a catalog key.
    func page(_ template: String, title: String, context: AppRequestContext, status: HTTPResponse.Status = .ok, error: String? = nil, notice: String? = nil, email: String = "", displayName: String = "", token: String = "", next: String = "") throws -> Response {
        let page = FormPage(
            layout: self.views.layout(title: self.views.text(title, [:], context), context: context), error: error, notice: notice, email: email,
            displayName: displayName, minimumAge: self.accounts.settings.minimumAge, token: token,
            passwordHint: self.views.text("password.hint", ["min": String(PasswordPolicy.minimumLength)], context),
            ageConfirmation: self.views.text("signup.age", ["age": String(self.accounts.settings.minimumAge)], context),
            next: next,
            devMailbox: self.devMailbox
        )
        return try self.views.render(page, template: template, status: status)
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    // MARK: Sign-up

    struct SignUpForm: Decodable {
        var email: String?
        var password: String?
        var name: String?
        var age: String?
        var terms: String?
        var invite: String?
    }

    @Sendable func signUpPage(_ request: Request, context: AppRequestContext) async throws -> Response {
        if context.identity != nil { return Self.redirect("/account") }
        // An invitation link prefills the address it was made out to.
        if let token = request.uri.queryParameters["invite"].map(String.init), !token.isEmpty {
            guard let invitation = try await self.accounts.invitation(token: token) else {
                return try self.page("signup", title: "signup.title", context: context, status: .badRequest, error: self.message(for: .invitationInvalid, context))
            }
            return try self.page("signup", title: "signup.title", context: context, email: invitation.email, token: token)
        }
        return try self.page("signup", title: "signup.title", context: context)
    }

    @Sendable func signUp(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignUpForm.self, from: request, context: context)
        let email = form.email ?? ""
        do {
            try await self.accounts.signUp(
                .init(
                    email: email, password: form.password ?? "", displayName: form.name ?? "",
                    ageConfirmed: form.age == "on", termsAccepted: form.terms == "on",
                    language: context.language.rawValue, theme: context.preferences.theme, invitation: form.invite
                )
            )
        } catch let error as AccountService.SignUpError {
            return try self.page(
                "signup", title: "signup.title", context: context, status: .unprocessableContent,
                error: self.message(for: error, context), email: email, displayName: form.name ?? "", token: form.invite ?? ""
            )
        }
        self.mailQueued()
        if let invite = form.invite, !invite.isEmpty { return Self.redirect("/signin?notice=verified") }
        let normalized = AccountService.normalizedEmail(email) ?? email
        return Self.redirect("/verify/code?email=\(normalized.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&sent=1")
    }

    func message(for error: AccountService.SignUpError, _ context: some PageContext) -> String {
        switch error {
        case .invalidEmail: self.views.text("signup.error_email", [:], context)
        case .password(let problem): Self.message(for: problem, views: self.views, context)
        case .displayNameTooLong: self.views.text("signup.error_name_too_long", [:], context)
        case .ageNotConfirmed: self.views.text("signup.error_age", ["age": String(self.accounts.settings.minimumAge)], context)
        case .termsNotAccepted: self.views.text("signup.error_terms", [:], context)
        case .closed: self.views.text("signup.error_closed", [:], context)
        case .inviteOnly: self.views.text("signup.error_invite_only", [:], context)
        case .domainNotAllowed: self.views.text("signup.error_domain", [:], context)
        case .invitationInvalid: self.views.text("signup.error_invitation", [:], context)
        }
    }

    static func message(for problem: PasswordPolicy.Problem, views: ViewRenderer, _ context: some PageContext) -> String {
        switch problem {
        case .tooShort: views.text("password.too_short", ["min": String(PasswordPolicy.minimumLength)], context)
        case .tooLong: views.text("password.too_long", ["max": String(PasswordPolicy.maximumBytes)], context)
        case .common: views.text("password.common", [:], context)
        case .sameAsEmail: views.text("password.same_as_email", [:], context)
        }
    }

    // MARK: Verification

    @Sendable func verifyLink(_ request: Request, context: AppRequestContext) async throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        guard !token.isEmpty, try await self.accounts.verify(token: token) != nil else {
            return try self.page(
                "verify", title: "verify.title", context: context, status: .badRequest,
                error: self.views.text("verify.error_link", [:], context)
            )
        }
        return Self.redirect("/signin?notice=verified")
    }

    @Sendable func verifyCodePage(_ request: Request, context: AppRequestContext) throws -> Response {
        let email = request.uri.queryParameters["email"].map(String.init) ?? ""
        let sent = request.uri.queryParameters["sent"] != nil
        return try self.page(
            "verify", title: "verify.title", context: context,
            notice: sent ? self.views.text("verify.notice_sent", ["email": email], context) : nil, email: email
        )
    }

    struct CodeForm: Decodable {
        var email: String?
        var code: String?
    }

    @Sendable func verifyCode(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CodeForm.self, from: request, context: context)
        guard try await self.accounts.verify(email: form.email ?? "", code: form.code ?? "") != nil else {
            return try self.page(
                "verify", title: "verify.title", context: context, status: .unprocessableContent,
                error: self.views.text("verify.error_code", [:], context), email: form.email ?? ""
            )
        }
        return Self.redirect("/signin?notice=verified")
    }

    @Sendable func resendVerification(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CodeForm.self, from: request, context: context)
        try await self.accounts.resendVerification(email: form.email ?? "")
        self.mailQueued()
        return try self.page(
            "verify", title: "verify.title", context: context,
            notice: self.views.text("verify.notice_resent", ["email": form.email ?? self.views.text("verify.that_address", [:], context)], context), email: form.email ?? ""
        )
    }

    // MARK: Sign-in

    struct SignInForm: Decodable {
        var email: String?
        var password: String?
        var next: String?
    }

    /// Only paths on this site: never "//elsewhere" or "https://elsewhere".
    /// A path on this site to go on to, or nil. Control characters and spaces are refused too:
    /// browsers drop tabs and newlines from URLs, so "/<tab>/evil.example" would become "//evil.example".
    static func safeNext(_ raw: String?) -> String? {
        guard let raw, raw.hasPrefix("/"), !raw.hasPrefix("//"), !raw.contains("\\"), raw.utf8.count <= 1000,
            raw.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F })
        else { return nil }
        return raw
    }

    @Sendable func signInPage(_ request: Request, context: AppRequestContext) throws -> Response {
        if context.identity != nil { return Self.redirect("/account") }
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "verified": self.views.text("signin.notice_verified", [:], context)
            case "reset": self.views.text("signin.notice_reset", [:], context)
            case "signedout": self.views.text("signin.notice_signed_out", [:], context)
            default: nil
            }
        let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init)) ?? ""
        return try self.page("signin", title: "signin.title", context: context, notice: notice, next: next)
    }

    @Sendable func signIn(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignInForm.self, from: request, context: context)
        let email = form.email ?? ""
        switch try await self.accounts.signIn(email: email, password: form.password ?? "", ip: context.clientIP) {
        case .signedIn(let user) where user.hasTwoFactor:
            return self.startTwoFactor(user)
        case .signedIn(let user):
            let new = try await self.accounts.startSession(for: user, userAgent: request.headers[.userAgent] ?? "", ip: context.clientIP, country: context.country)
            var response = Self.redirect(Self.safeNext(form.next) ?? "/account")
            response.setCookie(self.cookies.session(new.token, maxAge: Int(self.accounts.settings.sessionMax)))
            return response
        case .throttled(let retryAfter):
            var response = try self.page(
                "signin", title: "signin.title", context: context, status: .tooManyRequests,
                error: self.views.text("signin.error_throttled", ["wait": self.views.duration(seconds: retryAfter, context)], context), email: email
            )
            response.headers[.retryAfter] = String(retryAfter)
            return response
        case .invalid:
            return try self.page("signin", title: "signin.title", context: context, status: .unauthorized, error: self.views.text("signin.error_invalid", [:], context), email: email)
        case .unverified(let user):
            return try self.page(
                "verify", title: "verify.title", context: context, status: .forbidden,
                error: self.views.text("signin.error_unverified", [:], context), email: user.email
            )
        case .suspended:
            return try self.page(
                "signin", title: "signin.title", context: context, status: .forbidden,
                error: self.views.text("signin.error_suspended", [:], context), email: email
            )
        }
    }

    @Sendable func signOut(_ request: Request, context: AppRequestContext) async throws -> Response {
        if let identity = context.identity { try await self.accounts.signOut(identity.session) }
        var response = Self.redirect("/signin?notice=signedout")
        response.setCookie(self.cookies.clearedSession())
        return response
    }

    // MARK: Password reset

    @Sendable func forgotPage(_ request: Request, context: AppRequestContext) throws -> Response {
        try self.page("forgot", title: "forgot.title", context: context)
    }

    @Sendable func forgot(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignInForm.self, from: request, context: context)
        try await self.accounts.requestPasswordReset(email: form.email ?? "")
        self.mailQueued()
        return try self.page(
            "forgot", title: "forgot.title", context: context,
            notice: self.views.text("forgot.notice_sent", [:], context)
        )
    }

    @Sendable func resetPage(_ request: Request, context: AppRequestContext) throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        return try self.page("reset", title: "reset.title", context: context, token: token)
    }

    struct ResetForm: Decodable {
        var token: String?
        var password: String?
    }

    @Sendable func reset(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(ResetForm.self, from: request, context: context)
        do {
            _ = try await self.accounts.resetPassword(token: form.token ?? "", newPassword: form.password ?? "")
        } catch AccountService.ResetError.invalidToken {
            return try self.page(
                "forgot", title: "forgot.title", context: context, status: .badRequest,
                error: self.views.text("forgot.error_link", [:], context)
            )
        } catch AccountService.ResetError.password(let problem) {
            return try self.page(
                "reset", title: "reset.title", context: context, status: .unprocessableContent,
                error: Self.message(for: problem, views: self.views, context), token: form.token ?? ""
            )
        }
        self.mailQueued()
        var response = Self.redirect("/signin?notice=reset")
        response.setCookie(self.cookies.clearedSession())
        return response
    }
}
