import EaselStore
import Foundation

/// The mails of the data rights: each step of an account deletion is confirmed by mail.
extension AccountMails {
    /// Mail kinds, as the outbox records them.
    public static let deletionRequestedKind = "account_deletion_requested"
    public static let deletionCanceledKind = "account_deletion_canceled"
    /// The goodbye mail: the retention job removes its outbox row once it is sent.
    public static let purgedKind = "account_purged"

    public func deletionRequested(to email: String, name: String?, purgeOn date: Date, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: Self.deletionRequestedKind, name: "deletion_requested", to: (email, name), language: language,
            arguments: ["date": language.dateTime(date)], paragraphs: ["p1", "p2", "p3"],
            action: ("mail.deletion_requested.action", "\(self.publicURL.absoluteString)/signin")
        )
    }

    public func deletionCanceled(to email: String, name: String?, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: Self.deletionCanceledKind, name: "deletion_canceled", to: (email, name), language: language,
            action: ("mail.deletion_canceled.action", "\(self.publicURL.absoluteString)/account/privacy")
        )
    }

    public func accountPurged(to email: String, name: String?, language: Language) -> MailDraft {
        self.localizedDraft(kind: Self.purgedKind, name: "account_purged", to: (email, name), language: language, action: nil)
    }

    /// A non-essential mail (a newsletter, say): the one-click unsubscribe link goes at the end,
    /// and into the List-Unsubscribe headers (RFC 2369 and RFC 8058).
    public func nonEssential(
        kind: String, to email: String, name: String?, subject: String, paragraphs: [String], unsubscribeURL: String, unsubscribeMailto: String?,
        language: Language
    ) -> MailDraft {
        var draft = self.draft(
            kind: kind, to: (email, name), subject: subject,
            paragraphs: paragraphs + [self.text("mail.unsubscribe_footer", ["url": unsubscribeURL], language)], action: nil, language: language
        )
        var list = "<\(unsubscribeURL)>"
        if let unsubscribeMailto { list += ", <\(unsubscribeMailto)>" }
        draft.headers = ["List-Unsubscribe": list, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"]
        return draft
    }
}
