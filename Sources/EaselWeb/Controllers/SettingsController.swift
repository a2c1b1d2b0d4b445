import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// The signed-in person's account page: who they are and where they are signed in.
struct SettingsController {
    let database: AppDatabase
    let views: ViewRenderer

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("account", context: SignedInContext.self)
        group.get(use: self.account)
        group.post("sessions/:id/revoke", use: self.revoke)
        group.post("sessions/revoke-others", use: self.revokeOthers)
    }

    struct SessionRow: Sendable {
        var id: Int64
        var device: String
        var ip: String
        /// Approximate, from a trusted proxy; nil when unknown.
        var country: String?
        var lastSeen: String
        var current: Bool
    }

    struct IdentityRow: Sendable {
        var id: Int64
        var issuer: String
        var email: String
    }

    struct AccountPage: Sendable {
        var layout: LayoutData
        var email: String
        var displayName: String
        var role: String
        var memberSince: String
        var sessions: [SessionRow]
        var otherSessions: Bool
        var twoFactor: Bool
        var identities: [IdentityRow]
        var notice: String?
    }

    @Sendable func account(_ request: Request, context: SignedInContext) async throws -> Response {
        let user = context.user
        let sessions = try await self.database.sessions(userID: user.id!)
        let rows = sessions.map { session in
            SessionRow(
                id: session.id!, device: self.views.device(session.userAgent, context), ip: session.ip, country: session.country,
                lastSeen: self.views.date(session.lastSeenAt, context), current: session.id == context.identity.session.id
            )
        }
        let notice: String? =
            switch request.uri.queryParameters["notice"].map(String.init) {
            case "revoked": self.views.text("account.notice_revoked", [:], context)
            case "revoked-others": self.views.text("account.notice_revoked_others", [:], context)
            case "linked": self.views.text("account.notice_linked", [:], context)
            case "unlinked": self.views.text("account.notice_unlinked", [:], context)
            default: nil
            }
        let page = AccountPage(
            layout: self.views.layout(title: self.views.text("account.title", [:], context), context: context), email: user.email,
            displayName: user.displayName.isEmpty ? "—" : user.displayName, role: self.views.text(user.role == .admin ? "account.role_admin" : "account.role_member", [:], context),
            memberSince: self.views.date(user.createdAt, context), sessions: rows, otherSessions: rows.count > 1, twoFactor: user.hasTwoFactor,
            identities: try await self.database.identities(userID: user.id!).map { IdentityRow(id: $0.id!, issuer: URL(string: $0.issuer)?.host ?? $0.issuer, email: $0.email ?? "") },
            notice: notice
        )
        return try self.views.render(page, template: "account")
    }

    @Sendable func revoke(_ request: Request, context: SignedInContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        guard try await self.database.deleteSession(id: id, userID: context.user.id!) else {
            throw WebError(.notFound, code: "not_found", key: "account.error_no_session", english: "That session no longer exists.")
        }
        return Response(status: .seeOther, headers: [.location: "/account?notice=revoked"])
    }

    @Sendable func revokeOthers(_ request: Request, context: SignedInContext) async throws -> Response {
        try await self.database.deleteSessions(userID: context.user.id!, keeping: context.identity.session.id)
        return Response(status: .seeOther, headers: [.location: "/account?notice=revoked-others"])
    }
}
