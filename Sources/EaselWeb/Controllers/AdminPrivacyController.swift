import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Admins: the log of data requests (downloads, exports, deletions, restrictions, consent
/// changes) with their dates and outcomes; and the immediate purge of an account reported as
/// under age, after a confirmation page.
struct AdminPrivacyController {
    let privacy: PrivacyService
    let database: AppDatabase
    let views: ViewRenderer
    let mailQueued: @Sendable () -> Void

    func addRoutes(to router: Router<AppRequestContext>) {
        router.group("admin/privacy", context: SignedInContext.self).get(use: self.log)
        let users = router.group("admin/users", context: SignedInContext.self)
        users.get(":id/under-age", use: self.confirmPage)
        users.post(":id/under-age", use: self.purgeUnderAge)
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "admin.error_admins_only", english: "Only administrators can manage accounts.")
        }
    }

    struct Row: Sendable {
        var date: String
        var kind: String
        /// The address while the account exists, else its pseudonym.
        var person: String
        var purged: Bool
        var outcome: String
    }

    struct LogPage: Sendable {
        var layout: LayoutData
        var notice: String?
        var rows: [Row]
        var empty: Bool
        var next: Int64?
        var purgeDays: String
    }

    @Sendable func log(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let before = request.uri.queryParameters["before"].flatMap { Int64(String($0)) }
        let entries = try await self.database.dataRequests(before: before, limit: 100)
        let rows = entries.map { entry in
            Row(
                date: self.views.date(entry.request.createdAt, context), kind: self.views.text("privacy.kind_\(entry.request.kind.rawValue)", [:], context),
                person: entry.email ?? entry.request.pseudonym ?? "—", purged: entry.email == nil, outcome: entry.request.outcome
            )
        }
        let page = LogPage(
            layout: self.views.layout(title: self.views.text("admin_privacy.title", [:], context), context: context),
            notice: request.uri.queryParameters["notice"] == "purged" ? self.views.text("admin_privacy.notice_purged", [:], context) : nil,
            rows: rows, empty: rows.isEmpty, next: entries.count == 100 ? entries.last?.request.id : nil,
            purgeDays: String(self.privacy.settings.purgeDays)
        )
        return try self.views.render(page, template: "admin-privacy")
    }

    struct ConfirmPage: Sendable {
        var layout: LayoutData
        var id: Int64
        var email: String
        var error: String?
    }

    func target(_ context: SignedInContext) async throws -> User {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let user = try await self.database.user(id: id) else {
            throw WebError(.notFound, code: "not_found", key: "admin.error_no_account", english: "There is no account with that number.")
        }
        guard user.id != context.user.id else {
            throw WebError(.conflict, code: "not_on_yourself", key: "admin_privacy.error_yourself", english: "You cannot purge your own account from here.")
        }
        return user
    }

    @Sendable func confirmPage(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.target(context)
        let page = ConfirmPage(layout: self.views.layout(title: self.views.text("admin_privacy.under_age_title", [:], context), context: context), id: user.id!, email: user.email)
        return try self.views.render(page, template: "admin-under-age")
    }

    struct ConfirmForm: Decodable {
        var email: String?
    }

    /// The admin types the account's address to confirm; the purge then runs at once (the same
    /// code as the timer's), and the data-request log records who did it.
    @Sendable func purgeUnderAge(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let user = try await self.target(context)
        let form = try await URLEncodedFormDecoder().decode(ConfirmForm.self, from: request, context: context)
        guard (form.email ?? "").trimmingCharacters(in: .whitespaces).lowercased() == user.email.lowercased() else {
            let page = ConfirmPage(
                layout: self.views.layout(title: self.views.text("admin_privacy.under_age_title", [:], context), context: context), id: user.id!, email: user.email,
                error: self.views.text("admin_privacy.error_email", [:], context)
            )
            return try self.views.render(page, template: "admin-under-age", status: .unprocessableContent)
        }
        try await self.privacy.purgeUnderAge(userID: user.id!, admin: context.user)
        self.mailQueued()
        return Response(status: .seeOther, headers: [.location: "/admin/privacy?notice=purged"])
    }
}
