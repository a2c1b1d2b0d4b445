import EaselBlobs
import EaselCore
import EaselStore
import Foundation
import Hummingbird
import MultipartKit
import NIOCore

/// The person's own profile and preferences, their picture, and their password.
struct ProfileController {
    let accounts: AccountService
    let database: AppDatabase
    let views: ViewRenderer
    let mailQueued: @Sendable () -> Void
    let avatars: AvatarService
    let blobs: any BlobStore

    /// The avatar form: the picture plus a little multipart framing and the token.
    static let uploadBodyLimit = AvatarService.maximumUploadBytes + 64 * 1024

    static let languages: [(code: String, name: String)] = [("en", "English"), ("zh-Hans", "简体中文"), ("es", "Español")]

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("account", context: SignedInContext.self)
        group.get("profile", use: self.profilePage)
        group.post("profile", use: self.saveProfile)
        group.post("avatar", use: self.uploadAvatar)
        group.post("avatar/remove", use: self.removeAvatar)
        group.get("password", use: self.passwordPage)
        group.post("password", use: self.changePassword)
        group.get("email", use: self.emailPage)
        group.post("email", use: self.requestEmailChange)
        // Opened from the mail, perhaps in another browser: the token is the proof.
        router.get("/account/email/confirm", use: self.confirmEmail)
        // Pictures are not public: the owner and admins see them (see docs/configuration.md).
        router.group("avatars", context: SignedInContext.self).get(":id", use: self.avatar)
    }

    struct EmailPage: Sendable {
        var layout: LayoutData
        var email: String
        var hasPassword: Bool
        /// "Your account uses <strong>…</strong>…", the address escaped.
        var leadHTML: String
        var error: String?
        var notice: String?
    }

    func emailPage(_ context: some PageContext, email: String, hasPassword: Bool, error: String? = nil, notice: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        let page = EmailPage(
            layout: self.views.layout(title: self.views.text("account_email.title", [:], context), context: context), email: email, hasPassword: hasPassword,
            leadHTML: self.views.text("account_email.lead_html", ["email": Markup.escape(email)], context), error: error, notice: notice
        )
        return try self.views.render(page, template: "account-email", status: status)
    }

    @Sendable func emailPage(_ request: Request, context: SignedInContext) throws -> Response {
        try self.emailPage(context, email: context.user.email, hasPassword: context.user.passwordHash != nil)
    }

    struct EmailForm: Decodable {
        var email: String?
        var password: String?
    }

    @Sendable func requestEmailChange(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(EmailForm.self, from: request, context: context)
        let user = context.user
        do {
            try await self.accounts.requestEmailChange(user: user, newEmail: form.email ?? "", password: form.password ?? "")
        } catch let error as AccountService.EmailChangeError {
            let (message, status): (String, HTTPResponse.Status) =
                switch error {
                case .wrongPassword: (self.views.text("account_email.error_password", [:], context), .unauthorized)
                case .invalidEmail: (self.views.text("signup.error_email", [:], context), .unprocessableContent)
                case .sameEmail: (self.views.text("account_email.error_same", [:], context), .unprocessableContent)
                case .taken: (self.views.text("account_email.error_taken", [:], context), .conflict)
                case .invalidToken: (self.views.text("account_email.error_try_again", [:], context), .badRequest)
                }
            return try self.emailPage(context, email: user.email, hasPassword: user.passwordHash != nil, error: message, status: status)
        }
        self.mailQueued()
        return try self.emailPage(
            context, email: user.email, hasPassword: user.passwordHash != nil,
            notice: self.views.text("account_email.notice_sent", ["email": form.email ?? self.views.text("account_email.the_new_address", [:], context)], context)
        )
    }

    @Sendable func confirmEmail(_ request: Request, context: AppRequestContext) async throws -> Response {
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        do {
            let user = try await self.accounts.confirmEmailChange(token: token)
            self.mailQueued()
            return try self.emailPage(context, email: user.email, hasPassword: user.passwordHash != nil, notice: self.views.text("account_email.notice_changed", ["email": user.email], context))
        } catch AccountService.EmailChangeError.taken {
            return try self.emailPage(context, email: "", hasPassword: false, error: self.views.text("account_email.error_taken_meanwhile", [:], context), status: .conflict)
        } catch {
            return try self.emailPage(context, email: "", hasPassword: false, error: self.views.text("account_email.error_link", [:], context), status: .badRequest)
        }
    }

    struct Choice: Sendable {
        var value: String
        var label: String
        var selected: Bool
    }

    struct ProfilePage: Sendable {
        var layout: LayoutData
        var displayName: String
        var email: String
        var avatarURL: String?
        var initials: String
        var avatarHint: String
        var languages: [Choice]
        var themes: [Choice]
        var error: String?
        var notice: String?
    }

    func profile(_ context: SignedInContext, user: User, error: String? = nil, notice: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        let page = ProfilePage(
            layout: self.views.layout(title: self.views.text("profile.page_title", [:], context), context: context), displayName: user.displayName, email: user.email,
            avatarURL: ViewRenderer.avatarURL(user), initials: ViewRenderer.initials(user),
            avatarHint: self.views.text("profile.avatar_hint", ["mb": String(AvatarService.maximumUploadBytes / 1_048_576)], context),
            languages: Self.languages.map { Choice(value: $0.code, label: $0.name, selected: (user.language ?? "en") == $0.code) },
            themes: self.views.themeChoices(selected: user.theme, context).map { Choice(value: $0.value, label: $0.label, selected: $0.selected) },
            error: error, notice: notice
        )
        return try self.views.render(page, template: "account-profile", status: status)
    }

    @Sendable func profilePage(_ request: Request, context: SignedInContext) throws -> Response {
        let query = request.uri.queryParameters
        let notice: String? =
            if query["saved"] != nil { self.views.text("profile.saved", [:], context) }
            else if query["avatar"] == "saved" { self.views.text("profile.avatar_saved", [:], context) }
            else if query["avatar"] == "removed" { self.views.text("profile.avatar_removed", [:], context) }
            else { nil }
        return try self.profile(context, user: context.user, notice: notice)
    }

    // MARK: Avatar

    struct AvatarForm: Decodable {
        var avatar: Data?
    }

    /// A multipart form with an `avatar` file; the token was checked by `CSRFMiddleware`.
    @Sendable func uploadAvatar(_ request: Request, context: SignedInContext) async throws -> Response {
        let refuse = { (key: String, arguments: [String: String], status: HTTPResponse.Status) throws -> Response in
            try self.profile(context, user: context.user, error: self.views.text(key, arguments, context), status: status)
        }
        let megabytes = ["mb": String(AvatarService.maximumUploadBytes / 1_048_576)]
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: Self.uploadBodyLimit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            return try refuse("profile.avatar_error_too_large", megabytes, .contentTooLarge)
        }
        guard let contentType = request.headers[.contentType], let boundary = GenerationAPIController.boundary(contentType),
            let form = try? FormDataDecoder().decode(AvatarForm.self, from: body, boundary: boundary)
        else {
            return try refuse("profile.avatar_error_empty", [:], .badRequest)
        }
        do {
            try await self.avatars.replace(userID: context.user.id!, with: form.avatar ?? Data())
        } catch {
            switch error {
            case .empty: return try refuse("profile.avatar_error_empty", [:], .unprocessableContent)
            case .tooLarge: return try refuse("profile.avatar_error_too_large", megabytes, .contentTooLarge)
            case .tooManyPixels(let limit):
                return try refuse("profile.avatar_error_too_many_pixels", ["mp": String(limit / 1_000_000)], .unprocessableContent)
            case .notAnImage: return try refuse("profile.avatar_error_not_image", [:], .unsupportedMediaType)
            case .unsupportedFormat: return try refuse("profile.avatar_error_format", [:], .unsupportedMediaType)
            case .damaged: return try refuse("profile.avatar_error_damaged", [:], .unprocessableContent)
            case .notStored: return try refuse("profile.avatar_error_not_stored", [:], .internalServerError)
            }
        }
        return Response(status: .seeOther, headers: [.location: "/account/profile?avatar=saved"])
    }

    @Sendable func removeAvatar(_ request: Request, context: SignedInContext) async throws -> Response {
        try await self.avatars.remove(userID: context.user.id!)
        return Response(status: .seeOther, headers: [.location: "/account/profile?avatar=removed"])
    }

    /// The picture of account `id`, for its owner and for admins; 404 for everyone else, so
    /// nobody learns who has one.
    @Sendable func avatar(_ request: Request, context: SignedInContext) async throws -> Response {
        guard let id = context.parameters.get("id", as: Int64.self) else { throw WebError.notFound() }
        let viewer = context.user
        guard id == viewer.id || viewer.role == .admin else { throw WebError.notFound() }
        guard let owner = id == viewer.id ? viewer : try await self.database.user(id: id), let key = owner.avatarKey else {
            throw WebError.notFound()
        }
        return try await BlobResponder(blobs: self.blobs).respond(
            to: request, key: try BlobKey(key), etag: AvatarService.version(of: key), contentType: AvatarService.contentType, disposition: "inline"
        )
    }

    struct ProfileForm: Decodable {
        var name: String?
        var language: String?
        var theme: String?
    }

    @Sendable func saveProfile(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(ProfileForm.self, from: request, context: context)
        let name = (form.name ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.count <= 80 else {
            return try self.profile(context, user: context.user, error: self.views.text("signup.error_name_too_long", [:], context), status: .unprocessableContent)
        }
        guard let language = form.language, Self.languages.contains(where: { $0.code == language }),
            let theme = form.theme.flatMap(User.Theme.init(rawValue:))
        else {
            return try self.profile(context, user: context.user, error: self.views.text("preferences.error", [:], context), status: .unprocessableContent)
        }
        try await self.database.updateProfile(userID: context.user.id!, displayName: name, language: language, theme: theme)
        return Response(status: .seeOther, headers: [.location: "/account/profile?saved=1"])
    }

    struct PasswordPage: Sendable {
        var layout: LayoutData
        var hasPassword: Bool
        var error: String?
        var notice: String?
        var passwordHint: String
    }

    func password(_ context: SignedInContext, error: String? = nil, notice: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        let page = PasswordPage(
            layout: self.views.layout(title: self.views.text("account_password.page_title", [:], context), context: context), hasPassword: context.user.passwordHash != nil, error: error,
            notice: notice, passwordHint: self.views.text("password.hint", ["min": String(PasswordPolicy.minimumLength)], context)
        )
        return try self.views.render(page, template: "account-password", status: status)
    }

    @Sendable func passwordPage(_ request: Request, context: SignedInContext) throws -> Response {
        try self.password(context, notice: request.uri.queryParameters["changed"] != nil ? self.views.text("account_password.notice_changed", [:], context) : nil)
    }

    struct PasswordForm: Decodable {
        var current: String?
        var new: String?
        var signOutOthers: String?
    }

    @Sendable func changePassword(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(PasswordForm.self, from: request, context: context)
        do {
            try await self.accounts.changePassword(
                user: context.user, current: form.current ?? "", new: form.new ?? "", signOutOthers: form.signOutOthers == "on",
                keepingSession: context.identity.session.id
            )
        } catch AccountService.ChangeError.wrongPassword {
            return try self.password(context, error: self.views.text("account_password.error_current", [:], context), status: .unauthorized)
        } catch AccountService.ChangeError.password(let problem) {
            return try self.password(context, error: AccountController.message(for: problem, views: self.views, context), status: .unprocessableContent)
        }
        self.mailQueued()
        return Response(status: .seeOther, headers: [.location: "/account/password?changed=1"])
    }
}
