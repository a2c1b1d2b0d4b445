import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Admins list and search accounts, suspend and restore them, change roles, reset two-factor
/// sign-in and send password resets.
struct AdminUsersController {
    let database: AppDatabase
    let accounts: AccountService
    let twoFactor: TwoFactorService
    let views: ViewRenderer
    let mailQueued: @Sendable () -> Void

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("admin/users", context: SignedInContext.self)
        group.get(use: self.list)
        group.get(":id", use: self.show)
        group.post(":id/status", use: self.setStatus)
        group.post(":id/role", use: self.setRole)
        group.post(":id/reset-2fa", use: self.resetTwoFactor)
        group.post(":id/send-reset", use: self.sendReset)
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "admin.error_admins_only", english: "Only administrators can manage accounts.")
        }
    }

    struct UserRow: Sendable {
        var id: Int64
        var email: String
        var name: String
        /// The person's picture, or nil: then `initials` stand in (admins may see avatars).
        var avatarURL: String?
        var initials: String
        var role: String
        var admin: Bool
        var suspended: Bool
        var verified: Bool
        var twoFactor: Bool
        var createdAt: String
        var isSelf: Bool
    }

    func row(_ user: User, viewer: User, _ context: some PageContext) -> UserRow {
        UserRow(
            id: user.id!, email: user.email, name: user.displayName, avatarURL: ViewRenderer.avatarURL(user), initials: ViewRenderer.initials(user), role: self.views.text("admin.role_\(user.role.rawValue)", [:], context), admin: user.role == .admin,
            suspended: user.status == .suspended, verified: user.isVerified, twoFactor: user.hasTwoFactor,
            createdAt: self.views.date(user.createdAt, context), isSelf: user.id == viewer.id
        )
    }

    struct ListPage: Sendable {
        var layout: LayoutData
        var query: String
        var users: [UserRow]
        var empty: Bool
    }

    @Sendable func list(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let query = request.uri.queryParameters["q"].map(String.init) ?? ""
        let users = try await self.database.searchUsers(query).map { self.row($0, viewer: context.user, context) }
        let page = ListPage(layout: self.views.layout(title: self.views.text("layout.users", [:], context), context: context), query: query, users: users, empty: users.isEmpty)
        return try self.views.render(page, template: "admin-users")
    }

    struct UserPage: Sendable {
        var layout: LayoutData
        var user: UserRow
        var sessions: Int
        /// "2 devices", in the page's language.
        var sessionsText: String
        var notice: String?
    }

    func user(_ context: SignedInContext) async throws -> User {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let user = try await self.database.user(id: id) else { throw WebError(.notFound, code: "not_found", key: "admin.error_no_account", english: "There is no account with that number.") }
        return user
    }

    @Sendable func show(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.user(context)
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "suspended": self.views.text("admin.notice_suspended", [:], context)
            case "active": self.views.text("admin.notice_active", [:], context)
            case "role": self.views.text("admin.notice_role", [:], context)
            case "2fa": self.views.text("admin.notice_2fa", [:], context)
            case "reset": self.views.text("admin.notice_reset", [:], context)
            default: nil
            }
        let sessions = try await self.database.sessions(userID: user.id!).count
        let page = UserPage(
            layout: self.views.layout(title: user.email, context: context), user: self.row(user, viewer: context.user, context),
            sessions: sessions,
            sessionsText: self.views.text(sessions == 1 ? "admin.devices_one" : "admin.devices_other", ["count": String(sessions)], context), notice: notice
        )
        return try self.views.render(page, template: "admin-user")
    }

    func back(_ user: User, _ notice: String) -> Response {
        Response(status: .seeOther, headers: [.location: "/admin/users/\(user.id!)?notice=\(notice)"])
    }

    struct ValueForm: Decodable {
        var value: String?
    }

    func guarded(_ work: () async throws -> Void) async throws {
        do {
            try await work()
        } catch AdminStoreError.notOnYourself {
            throw WebError(.conflict, code: "not_on_yourself", key: "admin.error_not_on_yourself", english: "You cannot suspend or demote your own account: ask another admin.")
        }
    }

    @Sendable func setStatus(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.user(context)
        let form = try await URLEncodedFormDecoder().decode(ValueForm.self, from: request, context: context)
        guard let status = form.value.flatMap(User.Status.init(rawValue:)) else { throw WebError(.badRequest, code: "bad_request", key: "admin.error_choose_status", english: "Choose active or suspended.") }
        try await self.guarded { try await self.database.setStatus(status, userID: user.id!, by: context.user.id!) }
        return self.back(user, status.rawValue)
    }

    @Sendable func setRole(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.user(context)
        let form = try await URLEncodedFormDecoder().decode(ValueForm.self, from: request, context: context)
        guard let role = form.value.flatMap(User.Role.init(rawValue:)) else { throw WebError(.badRequest, code: "bad_request", key: "admin.error_choose_role", english: "Choose admin or member.") }
        try await self.guarded { try await self.database.setRole(role, userID: user.id!, by: context.user.id!) }
        return self.back(user, "role")
    }

    @Sendable func resetTwoFactor(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.user(context)
        try await self.twoFactor.disable(for: user)
        self.mailQueued()
        return self.back(user, "2fa")
    }

    @Sendable func sendReset(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.user(context)
        try await self.accounts.requestPasswordReset(email: user.email)
        self.mailQueued()
        return self.back(user, "reset")
    }
}
