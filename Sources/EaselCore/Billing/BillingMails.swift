import EaselStore
import Foundation

extension AccountMails {
    /// The mail a billing event causes, in the person's language (queued in the event's transaction).
    public func billing(_ mail: BillingMail, to user: User, catalog: BillingCatalog) -> MailDraft {
        let language = Language(code: user.language) ?? .english
        let billingURL = "\(self.publicURL.absoluteString)/billing"
        func planName(_ id: String?) -> String { id.flatMap { catalog.plan(id: $0)?.name } ?? id ?? "—" }
        func day(_ date: Date?) -> String {
            guard let date else { return "—" }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: language.rawValue)
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateStyle = .long
            formatter.timeStyle = .none
            return formatter.string(from: date)
        }
        let recipient = (user.email, Optional(user.displayName).flatMap { $0.isEmpty ? nil : $0 })
        switch mail {
        case .receipt(let payment):
            let item =
                payment.kind == .pack
                ? (catalog.pack(id: payment.productID)?.name ?? payment.productID) : planName(payment.productID)
            let card = payment.cardLast4.map { self.text("mail.receipt.card", ["last4": $0], language) } ?? ""
            return self.localizedDraft(
                kind: "billing_receipt", name: "receipt", to: recipient, language: language,
                arguments: [
                    "item": item, "amount": MoneyFormat.string(amount: payment.amount, currency: payment.currency),
                    "credits": String(payment.credits), "reference": payment.reference, "card": card,
                ],
                paragraphs: payment.credits > 0 ? ["p1", "p2", "p3"] : ["p1", "p3"], action: ("mail.receipt.action", billingURL)
            )
        case .subscriptionStarted(let planID):
            return self.localizedDraft(
                kind: "subscription_started", name: "subscription_started", to: recipient, language: language, arguments: ["plan": planName(planID)],
                action: ("mail.subscription.action", billingURL)
            )
        case .subscriptionChanged(let planID):
            return self.localizedDraft(
                kind: "subscription_changed", name: "subscription_changed", to: recipient, language: language, arguments: ["plan": planName(planID)],
                paragraphs: ["p1"], action: ("mail.subscription.action", billingURL)
            )
        case .subscriptionCancelScheduled(let periodEnd):
            return self.localizedDraft(
                kind: "subscription_canceling", name: "subscription_canceling", to: recipient, language: language, arguments: ["date": day(periodEnd)],
                action: ("mail.subscription.action", billingURL)
            )
        case .subscriptionEnded(let planID):
            return self.localizedDraft(
                kind: "subscription_ended", name: "subscription_ended", to: recipient, language: language, arguments: ["plan": planName(planID)],
                action: ("mail.subscription_ended.action", "\(self.publicURL.absoluteString)/pricing")
            )
        case .paymentFailed(let amount, let currency):
            return self.localizedDraft(
                kind: "payment_failed", name: "payment_failed", to: recipient, language: language,
                arguments: ["amount": MoneyFormat.string(amount: amount, currency: currency)],
                action: ("mail.payment_failed.action", billingURL)
            )
        }
    }
}
