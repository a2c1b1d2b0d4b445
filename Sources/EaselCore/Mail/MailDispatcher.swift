import EaselIntegrations
import EaselStore
import Foundation
import Logging

/// Sends queued mail from the outbox. Runs only as the scheduler's `mail` job, so two sends of
/// the same mail never race; a mail is marked sent in its own transaction right after delivery.
public struct MailDispatcher: Sendable {
    /// Waits before the 2nd, 3rd, … attempt; after the last, the mail is marked failed.
    public static let retryDelays: [TimeInterval] = [60, 300, 1800, 7200, 21600]

    private let database: AppDatabase
    /// Nil is the `log` transport: mail is only kept for the admin mailbox page.
    private let transport: (any MailTransport)?
    private let from: MailAddress
    private let logger: Logger

    public init(database: AppDatabase, transport: (any MailTransport)?, from: MailAddress, logger: Logger) {
        self.database = database
        self.transport = transport
        self.from = from
        self.logger = logger
    }

    public var transportName: String { self.transport?.name ?? "log" }

    /// Tries every due mail once; returns how many were delivered.
    @discardableResult
    public func sendDue(now: Date = Date()) async throws -> Int {
        var delivered = 0
        for mail in try await self.database.dueMails(now: now, limit: 50) {
            guard let id = mail.id else { continue }
            guard let transport = self.transport else {
                try await self.database.markMailSent(id: id, transport: "log", now: now)
                self.logger.info("mail kept in the dev mailbox", metadata: ["mail": "\(id)", "kind": "\(mail.kind)"])
                delivered += 1
                continue
            }
            let message = MailMessage(
                from: self.from, to: [MailAddress(mail.toEmail, name: mail.toName)], subject: mail.subject,
                text: mail.textBody, html: mail.htmlBody, messageID: mail.messageID, date: mail.createdAt, headers: mail.extraHeaders
            )
            let failure: MailDeliveryError?
            do {
                try await transport.send(message)
                failure = nil
            } catch {
                failure = error
            }
            guard let failure else {
                try await self.database.markMailSent(id: id, transport: transport.name)
                delivered += 1
                self.logger.info("mail sent", metadata: ["mail": "\(id)", "kind": "\(mail.kind)", "transport": "\(transport.name)"])
                continue
            }
            let attempt = mail.attempts + 1
            let retryAt = failure.isPermanent || attempt > Self.retryDelays.count ? nil : now.addingTimeInterval(Self.retryDelays[attempt - 1])
            try await self.database.markMailAttemptFailed(id: id, error: failure.description, retryAt: retryAt, transport: transport.name)
            self.logger.warning(
                retryAt == nil ? "mail failed for good" : "mail failed, will retry",
                metadata: ["mail": "\(id)", "kind": "\(mail.kind)", "attempt": "\(attempt)", "error": "\(failure.description)"]
            )
        }
        return delivered
    }
}
