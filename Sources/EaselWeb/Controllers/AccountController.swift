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
        /// Where to go after signing in (a path on this site).
        var next: String
        /// Mail is kept in the dev mailbox (EASEL_MAIL=log): say where to find it.
        var devMailbox: Bool
    }

    func page(_ template: String, title: String, context: AppRequestContext, status: HTTPResponse.Status = .ok, error: String? = nil, notice: String? = nil, email: String = "", displayName: String = "", token: String = "", next: String = "") throws -> Response {
        let page = FormPage(
            layout: self.views.layout(title: title, context: context), error: error, notice: notice, email: email,
            displayName: displayName, minimumAge: self.accounts.settings.minimumAge, token: token,
            passwordHint: "At least \(PasswordPolicy.minimumLength) characters; a phrase of a few words is easy to remember and hard to guess.",
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
                return try self.page("signup", title: "Create your account", context: context, status: .badRequest, error: self.message(for: .invitationInvalid))
            }
            return try self.page("signup", title: "Create your account", context: context, email: invitation.email, token: token)
        }
        return try self.page("signup", title: "Create your account", context: context)
    }

    @Sendable func signUp(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignUpForm.self, from: request, context: context)
        let email = form.email ?? ""
        do {
            try await self.accounts.signUp(
                .init(
                    email: email, password: form.password ?? "", displayName: form.name ?? "",
                    ageConfirmed: form.age == "on", termsAccepted: form.terms == "on",
                    language: nil, invitation: form.invite
                )
            )
        } catch let error as AccountService.SignUpError {
            return try self.page(
                "signup", title: "Create your account", context: context, status: .unprocessableContent,
                error: self.message(for: error), email: email, displayName: form.name ?? "", token: form.invite ?? ""
            )
        }
        self.mailQueued()
        if let invite = form.invite, !invite.isEmpty { return Self.redirect("/signin?notice=verified") }
        let normalized = AccountService.normalizedEmail(email) ?? email
        return Self.redirect("/verify/code?email=\(normalized.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&sent=1")
    }

    func message(for error: AccountService.SignUpError) -> String {
        switch error {
        case .invalidEmail: "Enter an email address like name@example.org."
        case .password(let problem): Self.message(for: problem)
        case .displayNameTooLong: "Keep your name to 80 characters or fewer."
        case .ageNotConfirmed: "Please confirm that you are at least \(self.accounts.settings.minimumAge) years old."
        case .termsNotAccepted: "Please accept the terms and the privacy policy to create an account."
        case .closed: "Sign-up is closed on this server. Ask its administrator for an account."
        case .inviteOnly: "This server is invitation-only. Ask its administrator for an invitation."
        case .domainNotAllowed: "Sign-up is limited to certain email domains on this server. Use your work address, or ask the administrator."
        case .invitationInvalid: "This invitation has expired, was already used, or is for another address. Ask the administrator for a new one."
        }
    }

    static func message(for problem: PasswordPolicy.Problem) -> String {
        switch problem {
        case .tooShort: "Choose a password of at least \(PasswordPolicy.minimumLength) characters."
        case .tooLong: "That password is too long: use at most \(PasswordPolicy.maximumBytes) bytes (fewer if it has accents or emoji)."
        case .common: "That password is one of the most common ones and would be guessed quickly. Choose another."
        case .sameAsEmail: "Your password must not be your email address."
        }
    }

    // MARK: Verification

    @Sendable func verifyLink(_ request: Request, context: AppRequestContext) async throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        guard !token.isEmpty, try await self.accounts.verify(token: token) != nil else {
            return try self.page(
                "verify", title: "Confirm your email", context: context, status: .badRequest,
                error: "This confirmation link has expired or was already used. Enter the code from the mail, or ask for a new mail below."
            )
        }
        return Self.redirect("/signin?notice=verified")
    }

    @Sendable func verifyCodePage(_ request: Request, context: AppRequestContext) throws -> Response {
        let email = request.uri.queryParameters["email"].map(String.init) ?? ""
        let sent = request.uri.queryParameters["sent"] != nil
        return try self.page(
            "verify", title: "Confirm your email", context: context,
            notice: sent ? "We sent a mail to \(email). Click its link, or type the 6-digit code it contains." : nil, email: email
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
                "verify", title: "Confirm your email", context: context, status: .unprocessableContent,
                error: "That code is not right, or it has expired. Check the latest mail, or ask for a new one.", email: form.email ?? ""
            )
        }
        return Self.redirect("/signin?notice=verified")
    }

    @Sendable func resendVerification(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CodeForm.self, from: request, context: context)
        try await self.accounts.resendVerification(email: form.email ?? "")
        self.mailQueued()
        return try self.page(
            "verify", title: "Confirm your email", context: context,
            notice: "If \(form.email ?? "that address") has an account waiting for confirmation, a new mail is on its way.", email: form.email ?? ""
        )
    }

    // MARK: Sign-in

    struct SignInForm: Decodable {
        var email: String?
        var password: String?
        var next: String?
    }

    /// Only paths on this site: never "//elsewhere" or "https://elsewhere".
    static func safeNext(_ raw: String?) -> String? {
        guard let raw, raw.hasPrefix("/"), !raw.hasPrefix("//"), !raw.contains("\\"), !raw.contains("\n") else { return nil }
        return raw
    }

    @Sendable func signInPage(_ request: Request, context: AppRequestContext) throws -> Response {
        if context.identity != nil { return Self.redirect("/account") }
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "verified": "Your email is confirmed. Sign in to start."
            case "reset": "Your password was changed. Sign in with the new one."
            case "signedout": "You are signed out."
            default: nil
            }
        let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init)) ?? ""
        return try self.page("signin", title: "Sign in", context: context, notice: notice, next: next)
    }

    @Sendable func signIn(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignInForm.self, from: request, context: context)
        let email = form.email ?? ""
        switch try await self.accounts.signIn(email: email, password: form.password ?? "", ip: context.clientIP) {
        case .signedIn(let user) where user.hasTwoFactor:
            return self.startTwoFactor(user)
        case .signedIn(let user):
            let new = try await self.accounts.startSession(for: user, userAgent: request.headers[.userAgent] ?? "", ip: context.clientIP)
            var response = Self.redirect(Self.safeNext(form.next) ?? "/account")
            response.setCookie(self.cookies.session(new.token, maxAge: Int(self.accounts.settings.sessionMax)))
            return response
        case .throttled(let retryAfter):
            var response = try self.page(
                "signin", title: "Sign in", context: context, status: .tooManyRequests,
                error: "Too many attempts. Wait \(Self.describe(seconds: retryAfter)) and try again, or reset your password.", email: email
            )
            response.headers[.retryAfter] = String(retryAfter)
            return response
        case .invalid:
            return try self.page("signin", title: "Sign in", context: context, status: .unauthorized, error: "Invalid email or password.", email: email)
        case .unverified(let user):
            return try self.page(
                "verify", title: "Confirm your email", context: context, status: .forbidden,
                error: "Confirm your email address first: use the link or the code we mailed you.", email: user.email
            )
        case .suspended:
            return try self.page(
                "signin", title: "Sign in", context: context, status: .forbidden,
                error: "This account is suspended. Contact the administrator of this server.", email: email
            )
        }
    }

    static func describe(seconds: Int) -> String {
        seconds < 60 ? "\(seconds) second\(seconds == 1 ? "" : "s")" : "\((seconds + 59) / 60) minute\((seconds + 59) / 60 == 1 ? "" : "s")"
    }

    @Sendable func signOut(_ request: Request, context: AppRequestContext) async throws -> Response {
        if let identity = context.identity { try await self.accounts.signOut(identity.session) }
        var response = Self.redirect("/signin?notice=signedout")
        response.setCookie(self.cookies.clearedSession())
        return response
    }

    // MARK: Password reset

    @Sendable func forgotPage(_ request: Request, context: AppRequestContext) throws -> Response {
        try self.page("forgot", title: "Reset your password", context: context)
    }

    @Sendable func forgot(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(SignInForm.self, from: request, context: context)
        try await self.accounts.requestPasswordReset(email: form.email ?? "")
        self.mailQueued()
        return try self.page(
            "forgot", title: "Reset your password", context: context,
            notice: "If an account uses that address, a mail with a reset link is on its way. The link works for one hour."
        )
    }

    @Sendable func resetPage(_ request: Request, context: AppRequestContext) throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        return try self.page("reset", title: "Choose a new password", context: context, token: token)
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
                "forgot", title: "Reset your password", context: context, status: .badRequest,
                error: "This reset link has expired or was already used. Ask for a new one below."
            )
        } catch AccountService.ResetError.password(let problem) {
            return try self.page(
                "reset", title: "Choose a new password", context: context, status: .unprocessableContent,
                error: Self.message(for: problem), token: form.token ?? ""
            )
        }
        self.mailQueued()
        var response = Self.redirect("/signin?notice=reset")
        response.setCookie(self.cookies.clearedSession())
        return response
    }
}
