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
        /// "Mail goes out through smtp. …", in the page's language.
        var transportText: String
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
        /// "To … · queued …", in the page's language.
        var summary: String
        /// "2 attempts", in the page's language.
        var attemptsText: String
    }

    func requireAccess(_ context: AppRequestContext) async throws {
        if context.identity?.user.role == .admin { return }
        if self.transport == "log", try await !self.database.hasConfirmedAdmin() { return }
        guard context.identity != nil else { throw SignInRequired() }
        throw WebError(.forbidden, code: "forbidden", key: "admin_mailbox.error_admins_only", english: "Only administrators can open the mailbox.")
    }

    func row(_ mail: OutboxMail, _ context: some PageContext) -> MailRow {
        MailRow(
            id: mail.id!, to: mail.toEmail, subject: mail.subject, status: self.views.text("admin_mailbox.status_\(mail.status.rawValue)", [:], context), sent: mail.status == .sent,
            failed: mail.status == .failed, createdAt: self.views.date(mail.createdAt, context)
        )
    }

    static func links(in text: String) -> [String] {
        text.split(whereSeparator: { $0.isWhitespace }).map(String.init).filter { $0.hasPrefix("https://") || $0.hasPrefix("http://") }
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await self.requireAccess(context)
        let mails = try await self.database.recentMails(limit: 200).map { self.row($0, context) }
        let page = MailboxPage(
            layout: self.views.layout(title: self.views.text("layout.mailbox", [:], context), context: context), mails: mails, empty: mails.isEmpty,
            transport: self.transport, transportText: self.views.text("admin_mailbox.transport", ["transport": self.transport], context), logTransport: self.transport == "log"
        )
        return try self.views.render(page, template: "admin-mailbox")
    }

    @Sendable func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await self.requireAccess(context)
        let id = try context.parameters.require("id", as: Int64.self)
        guard let mail = try await self.database.mail(id: id) else { throw WebError(.notFound, code: "not_found", key: "admin_mailbox.error_no_mail", english: "There is no mail with that number.") }
        let row = self.row(mail, context)
        let page = MailPage(
            layout: self.views.layout(title: mail.subject, context: context), mail: row, text: mail.textBody,
            links: Self.links(in: mail.textBody), lastError: mail.lastError, attempts: mail.attempts,
            summary: self.views.text("admin_mailbox.summary", ["to": row.to, "date": row.createdAt], context),
            attemptsText: self.views.text(mail.attempts == 1 ? "admin_mailbox.attempts_one" : "admin_mailbox.attempts_other", ["count": String(mail.attempts)], context)
        )
        return try self.views.render(page, template: "admin-mail")
    }
}
