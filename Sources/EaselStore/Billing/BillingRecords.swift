import Foundation
import GRDB

/// One payment: a credit pack bought through Checkout, or a subscription invoice. Only what the
/// privacy policy allows is kept — never a card number.
public struct Payment: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "payment"

    public enum Kind: String, Codable, Sendable { case pack, subscription }
    public enum Status: String, Codable, Sendable { case pending, paid, failed }

    public var id: Int64?
    public var userID: Int64?
    public var pseudonym: String?
    public var kind: Kind
    public var productID: String
    public var checkoutSessionID: String?
    public var invoiceID: String?
    public var paymentIntentID: String?
    public var subscriptionID: String?
    public var amount: Int
    public var currency: String
    public var status: Status
    public var cardLast4: String?
    public var billingCountry: String?
    public var credits: Int
    public var amountRefunded: Int
    public var amountRefundedOutside: Int
    public var creditsTakenBack: Int
    public var creditsOwed: Int
    public var periodStart: Date?
    public var periodEnd: Date?
    public var createdAt: Date
    public var paidAt: Date?
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, pseudonym, kind, amount, currency, status, credits
        case userID = "user_id"
        case productID = "product_id"
        case checkoutSessionID = "checkout_session_id"
        case invoiceID = "invoice_id"
        case paymentIntentID = "payment_intent_id"
        case subscriptionID = "subscription_id"
        case cardLast4 = "card_last4"
        case billingCountry = "billing_country"
        case amountRefunded = "amount_refunded"
        case amountRefundedOutside = "amount_refunded_outside"
        case creditsTakenBack = "credits_taken_back"
        case creditsOwed = "credits_owed"
        case periodStart = "period_start"
        case periodEnd = "period_end"
        case createdAt = "created_at"
        case paidAt = "paid_at"
        case updatedAt = "updated_at"
    }

    /// The Stripe id the ledger's purchase entry points at.
    public var reference: String { self.checkoutSessionID ?? self.invoiceID ?? "payment-\(self.id ?? 0)" }
    /// Refunded in Stripe and outside it, never counted past the amount.
    public var totalRefunded: Int { min(self.amount, self.amountRefunded + self.amountRefundedOutside) }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A subscription as the latest Stripe event about it left it.
public struct Subscription: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "subscription"

    public var stripeSubscriptionID: String
    public var userID: Int64?
    public var planID: String?
    public var priceID: String?
    /// Stripe's status: active, past_due, canceled, incomplete, incomplete_expired, trialing, unpaid, paused.
    public var status: String
    public var cancelAtPeriodEnd: Bool
    public var currentPeriodEnd: Date?
    public var stateAt: Date?
    public var startedMailed: Bool
    public var createdAt: Date
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case status
        case startedMailed = "started_mailed"
        case stripeSubscriptionID = "stripe_subscription_id"
        case userID = "user_id"
        case planID = "plan_id"
        case priceID = "price_id"
        case cancelAtPeriodEnd = "cancel_at_period_end"
        case currentPeriodEnd = "current_period_end"
        case stateAt = "state_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    /// States a subscription never leaves.
    public static let endedStatuses: Set<String> = ["canceled", "incomplete_expired"]
    public var hasEnded: Bool { Self.endedStatuses.contains(self.status) }
}

/// A webhook event as recorded when it was applied (or set aside).
public struct StripeEventRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "stripe_event"

    public var id: String
    public var type: String
    public var createdAt: Date
    public var receivedAt: Date
    public var outcome: String

    enum CodingKeys: String, CodingKey {
        case id, type, outcome
        case createdAt = "created_at"
        case receivedAt = "received_at"
    }
}

/// The Stripe event being applied: its id makes applying it once, its creation time orders state.
public struct BillingEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var created: Date

    public init(id: String, type: String, created: Date) {
        self.id = id
        self.type = type
        self.created = created
    }
}

/// What applying an event did.
public enum BillingEventOutcome: Sendable, Equatable {
    case applied
    /// Already applied before (a repeat, or the other of two copies arriving at once).
    case duplicate
    /// Recorded but changes nothing, with the reason.
    case ignored(String)

    var recorded: String {
        switch self {
        case .applied: "applied"
        case .duplicate: "duplicate"
        case .ignored(let reason): "ignored: \(reason)"
        }
    }
}

/// The mails billing events cause, composed by the caller in the person's language.
public enum BillingMail: Sendable, Equatable {
    case receipt(Payment)
    case subscriptionStarted(planID: String?)
    case subscriptionChanged(planID: String?)
    case subscriptionCancelScheduled(periodEnd: Date?)
    case subscriptionEnded(planID: String?)
    case paymentFailed(amount: Int, currency: String)
}

public typealias BillingMailComposer = @Sendable (BillingMail, User) -> MailDraft?

/// A Checkout Session's outcome, from checkout.session.completed or its async follow-ups.
public struct CheckoutOutcome: Sendable, Equatable {
    public var sessionID: String
    public var userID: Int64
    public var kind: Payment.Kind
    public var productID: String
    /// For packs: the credits it buys.
    public var credits: Int
    public var amount: Int
    public var currency: String
    public var status: Payment.Status
    public var paymentIntentID: String?
    public var subscriptionID: String?
    public var billingCountry: String?

    public init(
        sessionID: String, userID: Int64, kind: Payment.Kind, productID: String, credits: Int, amount: Int, currency: String, status: Payment.Status,
        paymentIntentID: String?, subscriptionID: String?, billingCountry: String?
    ) {
        self.sessionID = sessionID
        self.userID = userID
        self.kind = kind
        self.productID = productID
        self.credits = credits
        self.amount = amount
        self.currency = currency
        self.status = status
        self.paymentIntentID = paymentIntentID
        self.subscriptionID = subscriptionID
        self.billingCountry = billingCountry
    }
}

/// A subscription invoice, paid or failed.
public struct InvoiceOutcome: Sendable, Equatable {
    public var invoiceID: String
    public var userID: Int64
    public var subscriptionID: String?
    public var planID: String
    public var credits: Int
    /// At a renewal, a balance above this is trimmed (by at most the last period's credits).
    public var rolloverCap: Int?
    public var isRenewal: Bool
    public var amount: Int
    public var currency: String
    public var paymentIntentID: String?
    public var periodStart: Date?
    public var periodEnd: Date?

    public init(
        invoiceID: String, userID: Int64, subscriptionID: String?, planID: String, credits: Int, rolloverCap: Int?, isRenewal: Bool, amount: Int,
        currency: String, paymentIntentID: String?, periodStart: Date?, periodEnd: Date?
    ) {
        self.invoiceID = invoiceID
        self.userID = userID
        self.subscriptionID = subscriptionID
        self.planID = planID
        self.credits = credits
        self.rolloverCap = rolloverCap
        self.isRenewal = isRenewal
        self.amount = amount
        self.currency = currency
        self.paymentIntentID = paymentIntentID
        self.periodStart = periodStart
        self.periodEnd = periodEnd
    }
}

/// A subscription's state from customer.subscription.updated or .deleted.
public struct SubscriptionState: Sendable, Equatable {
    public var subscriptionID: String
    public var userID: Int64
    public var planID: String?
    public var priceID: String?
    public var status: String
    public var cancelAtPeriodEnd: Bool
    public var currentPeriodEnd: Date?

    public init(subscriptionID: String, userID: Int64, planID: String?, priceID: String?, status: String, cancelAtPeriodEnd: Bool, currentPeriodEnd: Date?) {
        self.subscriptionID = subscriptionID
        self.userID = userID
        self.planID = planID
        self.priceID = priceID
        self.status = status
        self.cancelAtPeriodEnd = cancelAtPeriodEnd
        self.currentPeriodEnd = currentPeriodEnd
    }
}

/// A charge as Stripe reports it: card details for the payment record and what was refunded.
public struct ChargeReport: Sendable, Equatable {
    public var chargeID: String
    public var paymentIntentID: String?
    public var invoiceID: String?
    public var amount: Int
    public var amountRefunded: Int
    public var cardLast4: String?
    public var billingCountry: String?

    public init(chargeID: String, paymentIntentID: String?, invoiceID: String?, amount: Int, amountRefunded: Int, cardLast4: String?, billingCountry: String?) {
        self.chargeID = chargeID
        self.paymentIntentID = paymentIntentID
        self.invoiceID = invoiceID
        self.amount = amount
        self.amountRefunded = amountRefunded
        self.cardLast4 = cardLast4
        self.billingCountry = billingCountry
    }
}

/// Money in one month and currency, for the admin chart.
public struct MonthlyRevenue: Sendable, Equatable {
    /// "2026-11"
    public var month: String
    public var currency: String
    public var gross: Int
    public var refunded: Int
    public var payments: Int

    public init(month: String, currency: String, gross: Int, refunded: Int, payments: Int) {
        self.month = month
        self.currency = currency
        self.gross = gross
        self.refunded = refunded
        self.payments = payments
    }
}
