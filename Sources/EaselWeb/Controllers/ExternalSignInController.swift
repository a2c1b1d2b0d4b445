import EaselCore
import EaselIntegrations
import EaselStore
import Foundation
import Hummingbird

/// "Sign in with Google" (any OpenID Connect provider): leave for the provider, come back, then
/// sign in, link to the signed-in account, or create an account after consent.
struct ExternalSignInController {
    let external: ExternalSignIn
    let accounts: AccountService
    let database: AppDatabase
    let views: ViewRenderer
    let cookies: CookiePolicy
    /// Signs the cookie that carries state, nonce and verifier while the person is away.
    let flowSigner: SignedValue
    /// Signs the cookie that carries a verified identity waiting for consent.
    let pendingSigner: SignedValue
    let startTwoFactor: @Sendable (User) -> Response

    var flowCookie: String { self.cookies.secure ? "__Host-easel_oidc" : "easel_oidc" }
    var pendingCookie: String { self.cookies.secure ? "__Host-easel_oidc_new" : "easel_oidc_new" }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/auth/oidc/start", use: self.start)
        router.get("/auth/oidc/callback", use: self.callback)
        router.get("/auth/oidc/welcome", use: self.welcome)
        router.post("/auth/oidc/create", use: self.create)
        router.post("/account/identities/:id/unlink", use: self.unlink)
    }

    struct MessagePage: Sendable {
        var layout: LayoutData
        var error: String?
        var email: String
        var heading: String
        /// Escaped here: the catalog's markup around the address.
        var leadHTML: String
        var ageConfirmation: String
    }

    /// The welcome page for a pending account, or (without one) a refusal with a way back.
    func messagePage(_ context: AppRequestContext, error: String?, pending: ExternalSignIn.PendingAccount?) -> MessagePage {
        let name = pending?.name ?? ""
        return MessagePage(
            layout: self.views.layout(title: self.views.text(pending == nil ? "signin.title" : "oidc.welcome_title", [:], context), context: context),
            error: error, email: pending?.email ?? "",
            heading: name.isEmpty ? self.views.text("oidc.welcome_title", [:], context) : self.views.text("oidc.welcome_named", ["name": name], context),
            leadHTML: self.views.text("oidc.lead_html", ["email": Markup.escape(pending?.email ?? "")], context),
            ageConfirmation: self.views.text("signup.age", ["age": String(self.accounts.settings.minimumAge)], context)
        )
    }

    func refusal(_ message: String, context: AppRequestContext, status: HTTPResponse.Status = .badRequest) throws -> Response {
        var response = try self.views.render(
            self.messagePage(context, error: message, pending: nil),
            template: "oidc-welcome", status: status
        )
        response.setCookie(self.cookies.cookie(self.flowCookie, value: "", maxAge: 0))
        return response
    }

    @Sendable func start(_ request: Request, context: AppRequestContext) async throws -> Response {
        let started: ExternalSignIn.Started
        do {
            started = try await self.external.start()
        } catch {
            return try self.refusal(self.views.text(error.key, [:], context), context: context, status: .serviceUnavailable)
        }
        let payload = String(decoding: try JSONEncoder().encode(started), as: UTF8.self)
        var response = Response(status: .seeOther, headers: [.location: started.url.absoluteString])
        response.setCookie(self.cookies.cookie(self.flowCookie, value: self.flowSigner.sign(payload, expiresAt: Date().addingTimeInterval(600)), maxAge: 600))
        return response
    }

    @Sendable func callback(_ request: Request, context: AppRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        if let error = query["error"] {
            let declined = error == "access_denied"
            return try self.refusal(
                declined ? self.views.text("oidc.cancelled", [:], context) : self.views.text("oidc.provider_error", ["error": String(error)], context),
                context: context
            )
        }
        guard let cookie = request.cookies[self.flowCookie]?.value, let payload = self.flowSigner.verify(cookie),
            let started = try? JSONDecoder().decode(ExternalSignIn.Started.self, from: Data(payload.utf8))
        else {
            return try self.refusal(self.views.text("oidc.expired", [:], context), context: context)
        }
        guard let state = query["state"].map(String.init), SecureToken.equal(state, started.state), let code = query["code"].map(String.init) else {
            return try self.refusal(self.views.text("oidc.mismatch", [:], context), context: context)
        }
        let identity: OIDCIdentity
        do {
            identity = try await self.external.finish(code: code, started: started)
        } catch {
            return try self.refusal(self.views.text(error.key, [:], context), context: context)
        }
        var response: Response
        switch try await self.external.complete(identity, signedIn: context.identity?.user) {
        case .signedIn(let user) where user.hasTwoFactor:
            response = self.startTwoFactor(user)
        case .signedIn(let user):
            response = try await self.signIn(user, request: request, context: context)
        case .linked:
            response = Response(status: .seeOther, headers: [.location: "/account?notice=linked"])
        case .needsConsent(let pending):
            response = Response(status: .seeOther, headers: [.location: "/auth/oidc/welcome"])
            let value = String(decoding: try JSONEncoder().encode(pending), as: UTF8.self)
            response.setCookie(self.cookies.cookie(self.pendingCookie, value: self.pendingSigner.sign(value, expiresAt: Date().addingTimeInterval(900)), maxAge: 900))
        case .refused(let refusal):
            return try self.refusal(self.views.text(refusal.key, refusal.arguments, context), context: context, status: .forbidden)
        }
        response.setCookie(self.cookies.cookie(self.flowCookie, value: "", maxAge: 0))
        return response
    }

    func signIn(_ user: User, request: Request, context: AppRequestContext) async throws -> Response {
        let new = try await self.accounts.startSession(for: user, userAgent: request.headers[.userAgent] ?? "", ip: context.clientIP, country: context.country)
        var response = Response(status: .seeOther, headers: [.location: "/account"])
        response.setCookie(self.cookies.session(new.token, maxAge: Int(self.accounts.settings.sessionMax)))
        return response
    }

    func pending(_ request: Request) -> ExternalSignIn.PendingAccount? {
        guard let cookie = request.cookies[self.pendingCookie]?.value, let payload = self.pendingSigner.verify(cookie) else { return nil }
        return try? JSONDecoder().decode(ExternalSignIn.PendingAccount.self, from: Data(payload.utf8))
    }

    @Sendable func welcome(_ request: Request, context: AppRequestContext) throws -> Response {
        guard let pending = self.pending(request) else { return Response(status: .seeOther, headers: [.location: "/signin"]) }
        return try self.views.render(
            self.messagePage(context, error: nil, pending: pending),
            template: "oidc-welcome"
        )
    }

    struct ConsentForm: Decodable {
        var age: String?
        var terms: String?
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let pending = self.pending(request) else { return Response(status: .seeOther, headers: [.location: "/signin"]) }
        let form = try await URLEncodedFormDecoder().decode(ConsentForm.self, from: request, context: context)
        guard form.age == "on", form.terms == "on" else {
            return try self.views.render(
                self.messagePage(
                    context, error: self.views.text("oidc.confirm_required", ["age": String(self.accounts.settings.minimumAge)], context), pending: pending
                ),
                template: "oidc-welcome", status: .unprocessableContent
            )
        }
        let user: User
        do {
            // The page's language: the preferences cookie, else Accept-Language (nobody is signed in).
            user = try await self.external.createAccount(pending, language: context.language, theme: context.preferences.theme)
        } catch IdentityStoreError.emailTaken {
            return try self.refusal(self.views.text("oidc.exists", ["email": pending.email], context), context: context, status: .conflict)
        } catch IdentityStoreError.linkedElsewhere {
            return try self.refusal(self.views.text("oidc.linked_elsewhere", [:], context), context: context, status: .conflict)
        }
        var response = try await self.signIn(user, request: request, context: context)
        response.setCookie(self.cookies.cookie(self.pendingCookie, value: "", maxAge: 0))
        return response
    }

    @Sendable func unlink(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let identity = context.identity else { throw SignInRequired() }
        let id = try context.parameters.require("id", as: Int64.self)
        do {
            try await self.database.unlinkIdentity(id: id, userID: identity.user.id!)
        } catch IdentityStoreError.lastWayIn {
            throw WebError(
                .conflict, code: "last_way_in", key: "account.error_last_way_in",
                english: "This is the only way into your account. Set a password first (use \"Forgot your password?\" on the sign-in page), then disconnect it."
            )
        }
        return Response(status: .seeOther, headers: [.location: "/account?notice=unlinked"])
    }
}
