import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Admins invite people by email (single-use links, valid a week) and withdraw invitations.
struct InvitationsController {
    let database: AppDatabase
    let accounts: AccountService
    let views: ViewRenderer
    let mailQueued: @Sendable () -> Void

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("admin/invitations", context: SignedInContext.self)
        group.get(use: self.list)
        group.post(use: self.invite)
        group.post(":id/revoke", use: self.revoke)
    }

    struct Row: Sendable {
        var id: Int64
        var email: String
        var role: String
        var expires: String
        var expired: Bool
    }

    struct Page: Sendable {
        var layout: LayoutData
        var invitations: [Row]
        var empty: Bool
        /// "Sign-up on this server is <strong>open</strong>. …", in the page's language.
        var leadHTML: String
        var error: String?
        var notice: String?
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "admin_invitations.error_admins_only", english: "Only administrators can invite people.")
        }
    }

    func page(_ context: SignedInContext, error: String? = nil, notice: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let now = Date()
        let rows = try await self.database.pendingInvitations().map {
            Row(id: $0.id!, email: $0.email, role: self.views.text("admin.role_\($0.role.rawValue)", [:], context), expires: self.views.date($0.expiresAt, context), expired: $0.expiresAt <= now)
        }
        let mode = self.views.text("admin_invitations.mode_\(self.accounts.settings.signup.rawValue)", [:], context)
        let page = Page(
            layout: self.views.layout(title: self.views.text("admin_invitations.title", [:], context), context: context), invitations: rows, empty: rows.isEmpty,
            leadHTML: self.views.text("admin_invitations.lead_html", ["mode": Markup.escape(mode)], context), error: error, notice: notice
        )
        return try self.views.render(page, template: "admin-invitations", status: status)
    }

    @Sendable func list(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        return try await self.page(context, notice: request.uri.queryParameters["sent"] != nil ? self.views.text("admin_invitations.notice_sent", [:], context) : nil)
    }

    struct InviteForm: Decodable {
        var email: String?
        var role: String?
    }

    @Sendable func invite(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let form = try await URLEncodedFormDecoder().decode(InviteForm.self, from: request, context: context)
        let role = form.role.flatMap(User.Role.init(rawValue:)) ?? .member
        do {
            try await self.accounts.invite(email: form.email ?? "", role: role, by: context.user)
        } catch AccountService.SignUpError.invalidEmail {
            return try await self.page(context, error: self.views.text("signup.error_email", [:], context), status: .unprocessableContent)
        }
        self.mailQueued()
        return Response(status: .seeOther, headers: [.location: "/admin/invitations?sent=1"])
    }

    @Sendable func revoke(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        try await self.database.revokeInvitation(id: try context.parameters.require("id", as: Int64.self))
        return Response(status: .seeOther, headers: [.location: "/admin/invitations"])
    }
}
