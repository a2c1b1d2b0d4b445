import EaselStore
import Foundation
import Hummingbird

/// The dev mailbox: every mail Easel queued, with its status. With EASEL_MAIL=log this is where
/// verification and reset mails are read, so `make run` needs no mail server. Admins only —
/// except that with EASEL_MAIL=log and no confirmed admin yet, it is open, so the first person
/// can read the mail that confirms their own (admin) account.
struct AdminMailboxController {
    let database: AppDatabase
    let views: ViewRenderer
    let transport: String

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("admin/mailbox", use: self.list)
        router.get("admin/mailbox/:id", use: self.show)
    }

    struct MailRow: Sendable {
        var id: Int64
        var to: String
        var subject: String
        var status: String
        var sent: Bool
        var failed: Bool
        var createdAt: String
    }

    struct MailboxPage: Sendable {
        var layout: LayoutData
        var mails: [MailRow]
        var empty: Bool
        var transport: String
        var logTransport: Bool
    }

    struct MailPage: Sendable {
        var layout: LayoutData
        var mail: MailRow
        var text: String
        /// The links in the mail, clickable, so a developer can follow a verification link.
        var links: [String]
        var lastError: String?
        var attempts: Int
    }

    func requireAccess(_ context: AppRequestContext) async throws {
        if context.identity?.user.role == .admin { return }
        if self.transport == "log", try await !self.database.hasConfirmedAdmin() { return }
        guard context.identity != nil else { throw SignInRequired() }
        throw WebError(.forbidden, code: "forbidden", message: "Only administrators can open the mailbox.")
    }

    static func row(_ mail: OutboxMail) -> MailRow {
        MailRow(
            id: mail.id!, to: mail.toEmail, subject: mail.subject, status: mail.status.rawValue, sent: mail.status == .sent,
            failed: mail.status == .failed, createdAt: SettingsController.format(mail.createdAt)
        )
    }

    static func links(in text: String) -> [String] {
        text.split(whereSeparator: { $0.isWhitespace }).map(String.init).filter { $0.hasPrefix("https://") || $0.hasPrefix("http://") }
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await self.requireAccess(context)
        let mails = try await self.database.recentMails(limit: 200).map(Self.row)
        let page = MailboxPage(
            layout: self.views.layout(title: "Mailbox", context: context), mails: mails, empty: mails.isEmpty,
            transport: self.transport, logTransport: self.transport == "log"
        )
        return try self.views.render(page, template: "admin-mailbox")
    }

    @Sendable func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await self.requireAccess(context)
        let id = try context.parameters.require("id", as: Int64.self)
        guard let mail = try await self.database.mail(id: id) else { throw WebError.notFound("There is no mail with that number.") }
        let page = MailPage(
            layout: self.views.layout(title: mail.subject, context: context), mail: Self.row(mail), text: mail.textBody,
            links: Self.links(in: mail.textBody), lastError: mail.lastError, attempts: mail.attempts
        )
        return try self.views.render(page, template: "admin-mail")
    }
}
