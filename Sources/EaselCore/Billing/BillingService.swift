import EaselIntegrations
import EaselStore
import Foundation
import Logging

public struct BillingError: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No such plan or pack in the catalog.
        case unknownItem
        /// A second subscription while one is active: the portal changes plans.
        case alreadySubscribed
        /// No Stripe customer yet, so nothing to manage.
        case noCustomer
        /// Stripe refused or could not be reached.
        case stripe
        /// The webhook's signature or body is not acceptable.
        case badWebhook
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// Stripe billing: Checkout and the Billing Portal on the way out, verified webhooks on the way
/// in. Credits are granted only in `handleWebhook`, after the signature is checked.
public struct BillingService: Sendable {
    public struct Settings: Sendable {
        public var webhookSecrets: [String]
        public var publicURL: URL
        public var signatureTolerance: TimeInterval

        public init(webhookSecrets: [String], publicURL: URL, signatureTolerance: TimeInterval = 300) {
            self.webhookSecrets = webhookSecrets
            self.publicURL = publicURL
            self.signatureTolerance = signatureTolerance
        }
    }

    public let catalog: BillingCatalog
    let database: AppDatabase
    let stripe: any StripeAPI
    let settings: Settings
    let mails: AccountMails
    let logger: Logger

    public init(database: AppDatabase, stripe: any StripeAPI, catalog: BillingCatalog, settings: Settings, mails: AccountMails, logger: Logger) {
        self.database = database
        self.stripe = stripe
        self.catalog = catalog
        self.settings = settings
        self.mails = mails
        self.logger = logger
    }

    // MARK: Checkout and portal

    /// A Checkout Session for a plan or pack; `requestKey` (from the page that offered it) makes a
    /// double submit the same session. Answers where to send the browser.
    public func checkout(user: User, itemID: String, requestKey: String, language: Language) async throws -> URL {
        let requestKey = String(requestKey.prefix(64))
        let userID = user.id!
        let mode: StripeCheckoutRequest.Mode
        let price: String
        var metadata = ["easel_user_id": String(userID), "easel_item": itemID]
        if let plan = self.catalog.plan(id: itemID) {
            let subscriptions = try await self.database.subscriptions(userID: userID)
            if subscriptions.contains(where: { !$0.hasEnded }) {
                throw BillingError(.alreadySubscribed, "You already have a subscription: change or cancel it with Manage subscription.")
            }
            mode = .subscription
            price = plan.stripePrice
            metadata["easel_kind"] = "subscription"
            // What a month brings, should the plan later leave the catalog.
            metadata["easel_credits"] = String(plan.monthlyCredits)
        } else if let pack = self.catalog.pack(id: itemID) {
            mode = .payment
            price = pack.stripePrice
            metadata["easel_kind"] = "pack"
            metadata["easel_credits"] = String(pack.credits)
        } else {
            throw BillingError(.unknownItem, "There is no plan or pack called \(itemID).")
        }
        let customer = try await self.customer(for: user, requestKey: requestKey)
        let base = self.settings.publicURL.absoluteString
        let request = StripeCheckoutRequest(
            mode: mode, customer: customer, price: price, clientReferenceID: String(userID), metadata: metadata,
            successURL: "\(base)/billing/success?session_id={CHECKOUT_SESSION_ID}&item=\(itemID)", cancelURL: "\(base)/pricing?canceled=1",
            locale: Self.checkoutLocale(language), subscriptionMetadata: mode == .subscription ? metadata : [:],
            paymentIntentMetadata: mode == .payment ? metadata : [:]
        )
        let key = "easel-checkout-\(userID)-\(itemID)-\(requestKey)"
        do {
            return try await self.stripe.createCheckoutSession(request, idempotencyKey: key).url
        } catch {
            self.logger.error("Stripe refused a checkout session", metadata: ["error": .string(error.message)])
            throw BillingError(.stripe, "Payments are not available right now. Please try again in a few minutes.")
        }
    }

    /// A Billing Portal session where the person manages their subscription and cards.
    public func portal(user: User) async throws -> URL {
        guard let customer = try await self.database.stripeCustomerID(userID: user.id!) else {
            throw BillingError(.noCustomer, "There is nothing to manage yet: buy a plan or pack first.")
        }
        do {
            return try await self.stripe.createPortalSession(
                customer: customer, returnURL: "\(self.settings.publicURL.absoluteString)/billing", idempotencyKey: "easel-portal-\(UUID().uuidString)"
            )
        } catch {
            self.logger.error("Stripe refused a portal session", metadata: ["error": .string(error.message)])
            throw BillingError(.stripe, "Managing the subscription is not available right now. Please try again in a few minutes.")
        }
    }

    /// The person's Stripe customer, made before their first checkout (the first one made is kept).
    func customer(for user: User, requestKey: String) async throws -> String {
        let userID = user.id!
        if let known = try await self.database.stripeCustomerID(userID: userID) { return known }
        do {
            let made = try await self.stripe.createCustomer(
                email: user.email, name: user.displayName.isEmpty ? nil : user.displayName, metadata: ["easel_user_id": String(userID)],
                // Per page, not per person: Stripe replays a key's first answer (a 500 too) for 24 hours.
                idempotencyKey: "easel-customer-\(userID)-\(requestKey)"
            )
            return try await self.database.linkStripeCustomer(userID: userID, customerID: made)
        } catch let error as StripeError {
            self.logger.error("Stripe refused to create a customer", metadata: ["error": .string(error.message)])
            throw BillingError(.stripe, "Payments are not available right now. Please try again in a few minutes.")
        }
    }

    static func checkoutLocale(_ language: Language) -> String {
        switch language {
        case .english: "en"
        case .spanish: "es"
        case .simplifiedChinese: "zh"
        }
    }

    // MARK: Webhooks

    /// Verifies and applies one webhook delivery. Throws `.badWebhook` (answer 400) for a bad
    /// signature or body; otherwise the event is applied or recorded as set aside (answer 200).
    public func handleWebhook(body: [UInt8], signature: String?, now: Date = Date()) async throws -> BillingEventOutcome {
        do {
            try StripeWebhookSignature.verify(
                payload: body, header: signature, secrets: self.settings.webhookSecrets, now: now, tolerance: self.settings.signatureTolerance
            )
        } catch {
            throw BillingError(.badWebhook, error.message)
        }
        let event: StripeEvent
        do {
            event = try StripeEvent.parse(body)
        } catch {
            throw BillingError(.badWebhook, error.message)
        }
        let record = BillingEvent(id: event.id, type: event.type, created: event.created)
        let outcome = try await self.apply(event, record, now: now)
        self.logger.info("stripe event", metadata: ["id": .string(event.id), "type": .string(event.type), "outcome": .string("\(outcome)")])
        return outcome
    }

    private func apply(_ event: StripeEvent, _ record: BillingEvent, now: Date) async throws -> BillingEventOutcome {
        let mail: BillingMailComposer = { [mails, catalog] mail, user in mails.billing(mail, to: user, catalog: catalog) }
        switch event.type {
        case "checkout.session.completed", "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed":
            guard let session = event.checkoutSession else { return try await self.setAside(record, "not a checkout session", now) }
            guard let outcome = try await self.checkoutOutcome(session, type: event.type) else {
                return try await self.setAside(record, "not a checkout made by this instance", now)
            }
            return try await self.database.applyCheckout(outcome, event: record, mail: mail, now: now)

        case "invoice.paid", "invoice.payment_failed":
            guard let invoice = event.invoice else { return try await self.setAside(record, "not an invoice", now) }
            guard let outcome = try await self.invoiceOutcome(invoice) else {
                // Maybe the catalog lacks the plan: a resend after fixing it must still apply.
                self.logger.error("an invoice of no known person or plan", metadata: ["invoice": .string(invoice.id), "price": .string(invoice.priceID ?? "")])
                return try await self.setAside(record, "an invoice of no known person or plan", now, retryable: true)
            }
            return event.type == "invoice.paid"
                ? try await self.database.applyInvoicePaid(outcome, event: record, mail: mail, now: now)
                : try await self.database.applyInvoiceFailed(outcome, event: record, mail: mail, now: now)

        case "customer.subscription.updated", "customer.subscription.deleted", "customer.subscription.created":
            guard let subscription = event.subscription else { return try await self.setAside(record, "not a subscription", now) }
            guard let userID = try await self.userID(customer: subscription.customer, metadata: subscription.metadata) else {
                return try await self.setAside(record, "a subscription of no known person", now)
            }
            let plan = subscription.priceID.flatMap { self.catalog.plan(stripePrice: $0) }
            let state = SubscriptionState(
                subscriptionID: subscription.id, userID: userID, planID: plan?.id ?? subscription.metadata["easel_item"], priceID: subscription.priceID,
                status: event.type == "customer.subscription.deleted" ? "canceled" : subscription.status,
                // Newer portals cancel with a date (cancel_at) rather than the flag.
                cancelAtPeriodEnd: subscription.cancelAtPeriodEnd || subscription.cancelAt != nil,
                currentPeriodEnd: subscription.cancelAt ?? subscription.currentPeriodEnd
            )
            return try await self.database.applySubscriptionState(state, event: record, mail: mail, now: now)

        case "invoice_payment.paid":
            // API 2025-03-31 and later: the link between an invoice and its payment intent.
            guard let invoiceID = event.object["invoice"]?.expandableID, let intent = event.object.at("payment", "payment_intent")?.expandableID else {
                return try await self.setAside(record, "an invoice payment without invoice or payment intent", now)
            }
            return try await self.database.applyInvoicePayment(invoiceID: invoiceID, paymentIntentID: intent, event: record, now: now)

        case "charge.succeeded", "charge.refunded", "charge.updated":
            guard let charge = event.charge else { return try await self.setAside(record, "not a charge", now) }
            let report = ChargeReport(
                chargeID: charge.id, paymentIntentID: charge.paymentIntent, invoiceID: charge.invoice, amount: charge.amount,
                amountRefunded: charge.amountRefunded, cardLast4: charge.cardLast4, billingCountry: charge.country
            )
            return try await self.database.applyCharge(report, event: record, now: now)

        default:
            return try await self.setAside(record, "not an event Easel uses", now)
        }
    }

    private func setAside(_ event: BillingEvent, _ reason: String, _ now: Date, retryable: Bool = false) async throws -> BillingEventOutcome {
        try await self.database.recordBillingEvent(event, ignoredBecause: reason, retryable: retryable, now: now)
    }

    /// Whose and what a session is, from what Easel put on it at checkout.
    func checkoutOutcome(_ session: StripeCheckoutSession, type: String) async throws -> CheckoutOutcome? {
        guard let userID = try await self.userID(customer: session.customer, metadata: session.metadata, clientReference: session.clientReferenceID) else {
            return nil
        }
        let itemID = session.metadata["easel_item"] ?? ""
        let status: Payment.Status =
            switch type {
            case "checkout.session.async_payment_failed": .failed
            case "checkout.session.async_payment_succeeded": .paid
            default: session.paymentStatus == "paid" || session.paymentStatus == "no_payment_required" ? .paid : .pending
            }
        if session.mode == "subscription" {
            return CheckoutOutcome(
                sessionID: session.id, userID: userID, kind: .subscription, productID: itemID, credits: 0, amount: session.amountTotal ?? 0,
                currency: session.currency ?? self.catalog.currency, status: status, paymentIntentID: nil, subscriptionID: session.subscription,
                billingCountry: session.country
            )
        }
        // The credits promised at checkout, even if the pack has left the catalog since.
        guard let credits = session.metadata["easel_credits"].flatMap(Int.init) ?? self.catalog.pack(id: itemID)?.credits, credits > 0 else {
            return nil
        }
        return CheckoutOutcome(
            sessionID: session.id, userID: userID, kind: .pack, productID: itemID, credits: credits, amount: session.amountTotal ?? 0,
            currency: session.currency ?? self.catalog.currency, status: status, paymentIntentID: session.paymentIntent, subscriptionID: nil,
            billingCountry: session.country
        )
    }

    func invoiceOutcome(_ invoice: StripeInvoice) async throws -> InvoiceOutcome? {
        guard let userID = try await self.userID(customer: invoice.customer, metadata: invoice.subscriptionMetadata) else { return nil }
        let plan = invoice.priceID.flatMap({ self.catalog.plan(stripePrice: $0) }) ?? invoice.subscriptionMetadata["easel_item"].flatMap({ self.catalog.plan(id: $0) })
        // A plan that has left the catalog still brings what was promised at checkout.
        guard let planID = plan?.id ?? invoice.subscriptionMetadata["easel_item"],
            let monthly = plan?.monthlyCredits ?? invoice.subscriptionMetadata["easel_credits"].flatMap(Int.init)
        else { return nil }
        // A month's credits come with the first invoice and each renewal only: a proration
        // invoice after a plan change is money, not another month.
        let bringsMonth = invoice.billingReason.map { ["subscription_create", "subscription_cycle", "subscription"].contains($0) } ?? true
        return InvoiceOutcome(
            invoiceID: invoice.id, userID: userID, subscriptionID: invoice.subscription, planID: planID, credits: bringsMonth ? monthly : 0,
            rolloverCap: plan?.rolloverCap, isRenewal: invoice.billingReason == "subscription_cycle",
            amount: invoice.amountPaid > 0 ? invoice.amountPaid : invoice.amountDue, currency: invoice.currency, paymentIntentID: invoice.paymentIntent,
            periodStart: invoice.periodStart, periodEnd: invoice.periodEnd
        )
    }

    /// The customer Easel made names the person; failing that, what Easel wrote on the object.
    func userID(customer: String?, metadata: [String: String], clientReference: String? = nil) async throws -> Int64? {
        if let customer, let known = try await self.database.userID(stripeCustomerID: customer) { return known }
        guard let claimed = (metadata["easel_user_id"] ?? clientReference).flatMap(Int64.init) else { return nil }
        return try await self.database.user(id: claimed) == nil ? nil : claimed
    }
}
