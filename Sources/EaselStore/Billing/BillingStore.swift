import Foundation
import GRDB

/// Billing writes. Each Stripe event is applied by one method, in one transaction that also
/// records the event's id: a repeat, or a second copy arriving at the same time (SQLite has one
/// writer, so the copies run one after the other), finds the record and changes nothing.
/// Credits move only through `appendLedgerEntry`, and only from these verified-event methods.
extension AppDatabase {
    // MARK: Customers

    public func stripeCustomerID(userID: Int64) async throws -> String? {
        try await self.writer.read { db in
            try String.fetchOne(db, sql: "SELECT stripe_customer_id FROM billing_customer WHERE user_id = ?", arguments: [userID])
        }
    }

    /// Remembers the Stripe customer made for a person (before their first checkout, so every
    /// later event names a known customer whatever order events arrive in). Keeps the first one.
    @discardableResult
    public func linkStripeCustomer(userID: Int64, customerID: String, now: Date = Date()) async throws -> String {
        try await self.writer.write { db in
            try db.execute(
                sql: "INSERT INTO billing_customer (stripe_customer_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                arguments: [customerID, userID, now]
            )
            return try String.fetchOne(db, sql: "SELECT stripe_customer_id FROM billing_customer WHERE user_id = ?", arguments: [userID]) ?? customerID
        }
    }

    public func userID(stripeCustomerID: String) async throws -> Int64? {
        try await self.writer.read { db in
            try Int64.fetchOne(db, sql: "SELECT user_id FROM billing_customer WHERE stripe_customer_id = ?", arguments: [stripeCustomerID])
        }
    }

    // MARK: Events

    /// Records an event that changes nothing (unknown type, unknown customer…), once.
    /// `retryable`: set aside for a reason an admin can fix (a plan missing from the catalog), so
    /// the same event resent later is applied rather than taken for a repeat.
    @discardableResult
    public func recordBillingEvent(_ event: BillingEvent, ignoredBecause reason: String, retryable: Bool = false, now: Date = Date()) async throws
        -> BillingEventOutcome
    {
        try await self.writer.write { db in
            guard try Self.claimEvent(db, event, now: now) else { return .duplicate }
            try db.execute(
                sql: "UPDATE stripe_event SET outcome = ? WHERE id = ?", arguments: [(retryable ? Self.retryablePrefix : "ignored: ") + reason, event.id]
            )
            return .ignored(reason)
        }
    }

    static let retryablePrefix = "set aside, may be resent: "

    /// Inserts the event's record; false when it was applied before. An event set aside as
    /// retryable may be claimed again.
    private static func claimEvent(_ db: Database, _ event: BillingEvent, now: Date) throws -> Bool {
        try db.execute(
            sql: """
                INSERT INTO stripe_event (id, type, created_at, received_at, outcome) VALUES (?, ?, ?, ?, 'applying')
                ON CONFLICT(id) DO UPDATE SET outcome = 'applying', received_at = excluded.received_at
                WHERE stripe_event.outcome LIKE '\(Self.retryablePrefix)%'
                """,
            arguments: [event.id, event.type, event.created, now]
        )
        return db.changesCount == 1
    }

    private static func settleEvent(_ db: Database, _ event: BillingEvent, _ outcome: BillingEventOutcome) throws {
        try db.execute(sql: "UPDATE stripe_event SET outcome = ? WHERE id = ?", arguments: [outcome.recorded, event.id])
    }

    /// Runs one event's change in one transaction, unless the event was applied before.
    private func apply(_ event: BillingEvent, now: Date, _ change: @escaping @Sendable (Database) throws -> BillingEventOutcome) async throws -> BillingEventOutcome {
        try await self.writer.write { db in
            guard try Self.claimEvent(db, event, now: now) else { return .duplicate }
            let outcome = try change(db)
            try Self.settleEvent(db, event, outcome)
            return outcome
        }
    }

    public func billingEvents(limit: Int = 50) async throws -> [StripeEventRecord] {
        try await self.writer.read { db in
            try StripeEventRecord.order(Column("received_at").desc).limit(limit).fetchAll(db)
        }
    }

    // MARK: Checkout

    /// checkout.session.completed, .async_payment_succeeded and .async_payment_failed. Packs: the
    /// payment is recorded, and its credits granted once it is paid. Subscriptions: the
    /// subscription is recorded (its credits come with each paid invoice).
    public func applyCheckout(_ outcome: CheckoutOutcome, event: BillingEvent, mail: @escaping BillingMailComposer, now: Date = Date()) async throws
        -> BillingEventOutcome
    {
        try await self.apply(event, now: now) { db in
            guard let user = try User.fetchOne(db, key: outcome.userID) else { return .ignored("no such account") }
            switch outcome.kind {
            case .subscription:
                guard let subscriptionID = outcome.subscriptionID else { return .ignored("no subscription on the session") }
                _ = try Self.ensureSubscription(db, id: subscriptionID, userID: outcome.userID, planID: outcome.productID, now: now)
                try Self.mailStartedOnce(db, subscriptionID: subscriptionID, user: user, mail: mail, now: now)
                return .applied
            case .pack:
                var payment =
                    try Payment.filter(Column("checkout_session_id") == outcome.sessionID).fetchOne(db)
                    ?? Payment(
                        id: nil, userID: outcome.userID, pseudonym: nil, kind: .pack, productID: outcome.productID, checkoutSessionID: outcome.sessionID,
                        invoiceID: nil, paymentIntentID: nil, subscriptionID: nil, amount: outcome.amount, currency: outcome.currency, status: .pending,
                        cardLast4: nil, billingCountry: nil, credits: outcome.credits, amountRefunded: 0, amountRefundedOutside: 0, creditsTakenBack: 0,
                        creditsOwed: 0, periodStart: nil, periodEnd: nil, createdAt: now, paidAt: nil, updatedAt: now
                    )
                payment.paymentIntentID = payment.paymentIntentID ?? outcome.paymentIntentID
                payment.billingCountry = payment.billingCountry ?? outcome.billingCountry
                // Paid is final; failed only replaces pending.
                let becomesPaid = payment.status != .paid && outcome.status == .paid
                if becomesPaid {
                    payment.status = .paid
                    payment.paidAt = now
                } else if payment.status == .pending && outcome.status == .failed {
                    payment.status = .failed
                }
                payment.updatedAt = now
                try payment.save(db)
                if becomesPaid {
                    try Self.grantPurchase(db, payment: &payment, reason: "pack \(payment.productID)", now: now)
                    try Self.queue(mail(.receipt(payment), user), db, now)
                } else if payment.status == .failed && outcome.status == .failed {
                    try Self.queue(mail(.paymentFailed(amount: payment.amount, currency: payment.currency), user), db, now)
                }
                return .applied
            }
        }
    }

    // MARK: Invoices

    /// invoice.paid: the period's credits, once per invoice; at a renewal with a rollover cap,
    /// unspent credits above the cap expire first (never more than the last period brought).
    public func applyInvoicePaid(_ invoice: InvoiceOutcome, event: BillingEvent, mail: @escaping BillingMailComposer, now: Date = Date()) async throws
        -> BillingEventOutcome
    {
        try await self.apply(event, now: now) { db in
            guard let user = try User.fetchOne(db, key: invoice.userID) else { return .ignored("no such account") }
            var payment = try Self.invoicePayment(db, invoice, now: now)
            guard payment.status != .paid else { return .applied }
            if let subscriptionID = invoice.subscriptionID {
                _ = try Self.ensureSubscription(db, id: subscriptionID, userID: invoice.userID, planID: invoice.planID, now: now)
                if !invoice.isRenewal && invoice.credits > 0 {
                    try Self.mailStartedOnce(db, subscriptionID: subscriptionID, user: user, mail: mail, now: now)
                }
                // A paid invoice ends a past_due spell unless a newer event said otherwise.
                try db.execute(
                    sql: """
                        UPDATE subscription SET status = 'active', updated_at = ?
                        WHERE stripe_subscription_id = ? AND status = 'past_due' AND (state_at IS NULL OR state_at <= ?)
                        """,
                    arguments: [now, subscriptionID, event.created]
                )
                // The paid period's end, until a subscription event says more.
                if let periodEnd = invoice.periodEnd {
                    try db.execute(
                        sql: """
                            UPDATE subscription SET current_period_end = ?
                            WHERE stripe_subscription_id = ? AND (current_period_end IS NULL OR current_period_end < ?)
                            """,
                        arguments: [periodEnd, subscriptionID, periodEnd]
                    )
                }
            }
            // The period before this one, by period dates (not arrival order); none expire when a
            // later period was already paid (its renewal did the trimming).
            let laterPaid =
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM payment WHERE subscription_id = ? AND status = 'paid' AND period_start > ?)",
                    arguments: [invoice.subscriptionID, invoice.periodStart]
                ) ?? false
            if invoice.isRenewal, !laterPaid, let cap = invoice.rolloverCap, let subscriptionID = invoice.subscriptionID {
                let previous =
                    try Int.fetchOne(
                        db,
                        sql: """
                            SELECT credits FROM payment WHERE subscription_id = ? AND status = 'paid' AND id <> ? AND period_end <= ?
                            ORDER BY period_end DESC LIMIT 1
                            """,
                        arguments: [subscriptionID, payment.id, invoice.periodStart]
                    ) ?? 0
                let balance = try Int.fetchOne(db, sql: "SELECT balance FROM credit_balance WHERE user_id = ?", arguments: [invoice.userID]) ?? 0
                let expiring = max(0, min(balance - cap, previous))
                if expiring > 0 {
                    try Self.appendLedgerEntry(
                        db, userID: invoice.userID, kind: .expire, amount: -expiring, paymentRef: invoice.invoiceID,
                        reason: "rollover above \(cap) at renewal", now: now
                    )
                }
            }
            payment.status = .paid
            payment.paidAt = now
            payment.updatedAt = now
            try payment.update(db)
            try Self.grantPurchase(db, payment: &payment, reason: "plan \(invoice.planID)", now: now)
            try Self.queue(mail(.receipt(payment), user), db, now)
            return .applied
        }
    }

    /// invoice.payment_failed: the subscription is past due and the person is told.
    public func applyInvoiceFailed(_ invoice: InvoiceOutcome, event: BillingEvent, mail: @escaping BillingMailComposer, now: Date = Date()) async throws
        -> BillingEventOutcome
    {
        try await self.apply(event, now: now) { db in
            guard let user = try User.fetchOne(db, key: invoice.userID) else { return .ignored("no such account") }
            var payment = try Self.invoicePayment(db, invoice, now: now)
            guard payment.status != .paid else { return .ignored("the invoice was paid meanwhile") }
            payment.status = .failed
            payment.updatedAt = now
            try payment.update(db)
            if let subscriptionID = invoice.subscriptionID {
                _ = try Self.ensureSubscription(db, id: subscriptionID, userID: invoice.userID, planID: invoice.planID, now: now)
                try db.execute(
                    sql: """
                        UPDATE subscription SET status = 'past_due', state_at = ?, updated_at = ?
                        WHERE stripe_subscription_id = ? AND status NOT IN ('canceled', 'incomplete_expired') AND (state_at IS NULL OR state_at <= ?)
                        """,
                    arguments: [event.created, now, subscriptionID, event.created]
                )
            }
            try Self.queue(mail(.paymentFailed(amount: invoice.amount, currency: invoice.currency), user), db, now)
            return .applied
        }
    }

    private static func invoicePayment(_ db: Database, _ invoice: InvoiceOutcome, now: Date) throws -> Payment {
        if let existing = try Payment.filter(Column("invoice_id") == invoice.invoiceID).fetchOne(db) { return existing }
        var invoice = invoice
        if invoice.paymentIntentID == nil {
            invoice.paymentIntentID = try String.fetchOne(
                db, sql: "SELECT payment_intent_id FROM stripe_invoice_payment WHERE invoice_id = ?", arguments: [invoice.invoiceID]
            )
        }
        var payment = Payment(
            id: nil, userID: invoice.userID, pseudonym: nil, kind: .subscription, productID: invoice.planID, checkoutSessionID: nil,
            invoiceID: invoice.invoiceID, paymentIntentID: invoice.paymentIntentID, subscriptionID: invoice.subscriptionID, amount: invoice.amount,
            currency: invoice.currency, status: .pending, cardLast4: nil, billingCountry: nil, credits: invoice.credits, amountRefunded: 0,
            amountRefundedOutside: 0, creditsTakenBack: 0, creditsOwed: 0, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd,
            createdAt: now, paidAt: nil, updatedAt: now
        )
        try payment.insert(db)
        return payment
    }

    // MARK: Subscriptions

    /// customer.subscription.updated and .deleted: applied only when newer than the state held,
    /// and an ended subscription never comes back. Mails say what changed.
    public func applySubscriptionState(_ state: SubscriptionState, event: BillingEvent, mail: @escaping BillingMailComposer, now: Date = Date()) async throws
        -> BillingEventOutcome
    {
        try await self.apply(event, now: now) { db in
            guard let user = try User.fetchOne(db, key: state.userID) else { return .ignored("no such account") }
            _ = try Self.ensureSubscription(db, id: state.subscriptionID, userID: state.userID, planID: state.planID, now: now)
            guard var subscription = try Subscription.fetchOne(db, key: state.subscriptionID) else { return .ignored("no subscription") }
            if let held = subscription.stateAt, held > event.created { return .ignored("older than the state held") }
            if subscription.hasEnded && !Subscription.endedStatuses.contains(state.status) { return .ignored("the subscription has ended") }
            let before = subscription
            subscription.status = state.status
            subscription.cancelAtPeriodEnd = state.cancelAtPeriodEnd
            subscription.currentPeriodEnd = state.currentPeriodEnd ?? subscription.currentPeriodEnd
            if let planID = state.planID { subscription.planID = planID }
            if let priceID = state.priceID { subscription.priceID = priceID }
            subscription.stateAt = event.created
            subscription.updatedAt = now
            try subscription.update(db)
            if ["active", "trialing", "past_due"].contains(subscription.status) {
                try Self.mailStartedOnce(db, subscriptionID: subscription.stripeSubscriptionID, user: user, mail: mail, now: now)
            }

            if subscription.hasEnded && !before.hasEnded {
                try Self.queue(mail(.subscriptionEnded(planID: subscription.planID), user), db, now)
            } else if subscription.cancelAtPeriodEnd && !before.cancelAtPeriodEnd {
                try Self.queue(mail(.subscriptionCancelScheduled(periodEnd: subscription.currentPeriodEnd), user), db, now)
            } else if let before = before.planID, let after = subscription.planID, before != after {
                try Self.queue(mail(.subscriptionChanged(planID: after), user), db, now)
            }
            return .applied
        }
    }

    /// "Subscription started", whichever event first shows the subscription alive.
    private static func mailStartedOnce(_ db: Database, subscriptionID: String, user: User, mail: BillingMailComposer, now: Date) throws {
        try db.execute(
            sql: """
                UPDATE subscription SET started_mailed = 1
                WHERE stripe_subscription_id = ? AND started_mailed = 0 AND status NOT IN ('canceled', 'incomplete_expired', 'incomplete')
                """,
            arguments: [subscriptionID]
        )
        guard db.changesCount == 1 else { return }
        let planID = try String.fetchOne(db, sql: "SELECT plan_id FROM subscription WHERE stripe_subscription_id = ?", arguments: [subscriptionID])
        try Self.queue(mail(.subscriptionStarted(planID: planID), user), db, now)
    }

    /// The subscription's row, made if missing; true when it was made now.
    private static func ensureSubscription(_ db: Database, id: String, userID: Int64, planID: String?, now: Date) throws -> Bool {
        try db.execute(
            sql: """
                INSERT INTO subscription (stripe_subscription_id, user_id, plan_id, status, cancel_at_period_end, created_at, updated_at)
                VALUES (?, ?, ?, 'active', 0, ?, ?) ON CONFLICT DO NOTHING
                """,
            arguments: [id, userID, planID, now, now]
        )
        return db.changesCount == 1
    }

    public func subscriptions(userID: Int64) async throws -> [Subscription] {
        try await self.writer.read { db in
            try Subscription.filter(Column("user_id") == userID).order(Column("created_at").desc).fetchAll(db)
        }
    }

    public func allSubscriptions(limit: Int = 500) async throws -> [Subscription] {
        try await self.writer.read { db in
            try Subscription.order(Column("created_at").desc).limit(limit).fetchAll(db)
        }
    }

    // MARK: Charges and refunds

    /// charge.succeeded / charge.refunded: card details for the payment record, and refunds,
    /// which take back that payment's unspent credits (the rest is owed). A charge that arrives
    /// before its payment is kept and settled when the payment is.
    public func applyCharge(_ charge: ChargeReport, event: BillingEvent, now: Date = Date()) async throws -> BillingEventOutcome {
        try await self.apply(event, now: now) { db in
            try db.execute(
                sql: """
                    INSERT INTO stripe_charge (id, payment_intent_id, invoice_id, amount, amount_refunded, card_last4, billing_country, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET
                        payment_intent_id = COALESCE(payment_intent_id, excluded.payment_intent_id),
                        invoice_id = COALESCE(invoice_id, excluded.invoice_id),
                        amount_refunded = MAX(amount_refunded, excluded.amount_refunded),
                        card_last4 = COALESCE(excluded.card_last4, card_last4),
                        billing_country = COALESCE(excluded.billing_country, billing_country),
                        updated_at = excluded.updated_at
                    """,
                arguments: [
                    charge.chargeID, charge.paymentIntentID, charge.invoiceID, charge.amount, charge.amountRefunded, charge.cardLast4,
                    charge.billingCountry, now,
                ]
            )
            guard var payment = try Self.payment(db, paymentIntentID: charge.paymentIntentID, invoiceID: charge.invoiceID) else {
                return .ignored("kept until its payment arrives")
            }
            try Self.settleCharges(db, payment: &payment, now: now)
            return .applied
        }
    }

    /// invoice_payment.paid (Stripe API 2025-03-31 on): which payment intent paid an invoice, so
    /// refunds of its charge find the payment. Kept when it arrives before the invoice.
    public func applyInvoicePayment(invoiceID: String, paymentIntentID: String, event: BillingEvent, now: Date = Date()) async throws -> BillingEventOutcome {
        try await self.apply(event, now: now) { db in
            try db.execute(
                sql: "INSERT INTO stripe_invoice_payment (invoice_id, payment_intent_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                arguments: [invoiceID, paymentIntentID, now]
            )
            guard var payment = try Payment.filter(Column("invoice_id") == invoiceID).fetchOne(db) else { return .ignored("kept until its invoice arrives") }
            if payment.paymentIntentID == nil {
                payment.paymentIntentID = paymentIntentID
                payment.updatedAt = now
                try payment.update(db)
            }
            try Self.settleCharges(db, payment: &payment, now: now)
            return .applied
        }
    }

    private static func payment(_ db: Database, paymentIntentID: String?, invoiceID: String?) throws -> Payment? {
        if let paymentIntentID, let found = try Payment.filter(Column("payment_intent_id") == paymentIntentID).fetchOne(db) { return found }
        if let invoiceID, let found = try Payment.filter(Column("invoice_id") == invoiceID).fetchOne(db) { return found }
        return nil
    }

    /// Copies what the payment's charges say (card, country, refunded) and takes back credits.
    private static func settleCharges(_ db: Database, payment: inout Payment, now: Date) throws {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let intent = payment.paymentIntentID {
            conditions.append("payment_intent_id = ?")
            _ = arguments.append(contentsOf: [intent])
        }
        if let invoice = payment.invoiceID {
            conditions.append("invoice_id = ?")
            _ = arguments.append(contentsOf: [invoice])
        }
        guard !conditions.isEmpty else { return }
        let rows = try Row.fetchAll(
            db, sql: "SELECT amount_refunded, card_last4, billing_country FROM stripe_charge WHERE \(conditions.joined(separator: " OR ")) ORDER BY id",
            arguments: arguments
        )
        guard !rows.isEmpty else { return }
        payment.amountRefunded = max(payment.amountRefunded, rows.reduce(0) { $0 + ($1["amount_refunded"] as Int) })
        if payment.cardLast4 == nil { payment.cardLast4 = rows.compactMap { $0["card_last4"] as String? }.last }
        if payment.billingCountry == nil { payment.billingCountry = rows.compactMap { $0["billing_country"] as String? }.last }
        payment.updatedAt = now
        try payment.update(db)
        try Self.takeBackRefundedCredits(db, payment: &payment, now: now)
    }

    /// A paid payment's credits, as a purchase entry (once: the ledger's unique index), then any
    /// refund already known for it.
    private static func grantPurchase(_ db: Database, payment: inout Payment, reason: String, now: Date) throws {
        if payment.credits > 0 {
            let granted = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM credit_ledger WHERE payment_ref = ? AND kind = 'purchase')", arguments: [payment.reference]
            ) ?? false
            if !granted, let userID = payment.userID {
                try Self.appendLedgerEntry(db, userID: userID, kind: .purchase, amount: payment.credits, paymentRef: payment.reference, reason: reason, now: now)
            }
        }
        try Self.settleCharges(db, payment: &payment, now: now)
    }

    /// The one place a refund takes credits back: the refunded share of the payment's credits,
    /// less what was taken or recorded before; as much as the balance holds, the rest owed.
    private static func takeBackRefundedCredits(_ db: Database, payment: inout Payment, now: Date) throws {
        guard payment.status == .paid, payment.amount > 0, let userID = payment.userID else { return }
        let due = payment.credits * payment.totalRefunded / payment.amount
        let outstanding = due - payment.creditsTakenBack - payment.creditsOwed
        guard outstanding > 0 else { return }
        let balance = try Int.fetchOne(db, sql: "SELECT balance FROM credit_balance WHERE user_id = ?", arguments: [userID]) ?? 0
        let taking = min(balance, outstanding)
        if taking > 0 {
            try Self.appendLedgerEntry(
                db, userID: userID, kind: .adjust, amount: -taking, paymentRef: payment.reference, reason: "refund of \(payment.reference)", now: now
            )
        }
        payment.creditsTakenBack += taking
        payment.creditsOwed += outstanding - taking
        payment.updatedAt = now
        try payment.update(db)
    }

    /// An admin records money given back outside Easel (the total so far); credits follow as for
    /// a Stripe refund.
    @discardableResult
    public func recordOutsideRefund(paymentID: Int64, totalAmount: Int, now: Date = Date()) async throws -> Payment? {
        try await self.writer.write { db in
            guard var payment = try Payment.fetchOne(db, key: paymentID) else { return nil }
            payment.amountRefundedOutside = max(0, min(totalAmount, payment.amount))
            payment.updatedAt = now
            try payment.update(db)
            try Self.takeBackRefundedCredits(db, payment: &payment, now: now)
            return payment
        }
    }

    // MARK: Reading

    public func payments(userID: Int64?, before: Int64? = nil, limit: Int = 50) async throws -> [Payment] {
        try await self.writer.read { db in
            var request = Payment.all()
            if let userID { request = request.filter(Column("user_id") == userID) }
            if let before { request = request.filter(Column("id") < before) }
            return try request.order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    public func payment(id: Int64) async throws -> Payment? {
        try await self.writer.read { db in try Payment.fetchOne(db, key: id) }
    }

    public func payment(checkoutSessionID: String) async throws -> Payment? {
        try await self.writer.read { db in try Payment.filter(Column("checkout_session_id") == checkoutSessionID).fetchOne(db) }
    }

    /// Payments whose refunds left credits owed, for admins.
    public func paymentsWithCreditsOwed() async throws -> [Payment] {
        try await self.writer.read { db in
            try Payment.filter(Column("credits_owed") > 0).order(Column("id").desc).fetchAll(db)
        }
    }

    /// Paid money by month (UTC) and currency since `since`, oldest first.
    public func revenueByMonth(since: Date) async throws -> [MonthlyRevenue] {
        try await self.writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT strftime('%Y-%m', paid_at) AS month, currency, SUM(amount) AS gross,
                           SUM(MIN(amount, amount_refunded + amount_refunded_outside)) AS refunded, COUNT(*) AS payments
                    FROM payment WHERE status = 'paid' AND paid_at >= ?
                    GROUP BY month, currency ORDER BY month, currency
                    """,
                arguments: [since]
            ).map { row in
                MonthlyRevenue(month: row["month"], currency: row["currency"], gross: row["gross"], refunded: row["refunded"], payments: row["payments"])
            }
        }
    }

    // MARK: Retention

    /// At an account's purge: payment records stay (for the 7 years the law asks) under a
    /// pseudonym instead of the person; the customer link and subscriptions lose the person.
    public func pseudonymiseBillingRecords(userID: Int64, pseudonym: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(sql: "UPDATE payment SET user_id = NULL, pseudonym = ?, updated_at = ? WHERE user_id = ?", arguments: [pseudonym, now, userID])
            try db.execute(sql: "UPDATE subscription SET user_id = NULL, updated_at = ? WHERE user_id = ?", arguments: [now, userID])
            try db.execute(sql: "DELETE FROM billing_customer WHERE user_id = ?", arguments: [userID])
        }
    }

    /// Payment records past their retention (7 years after the payment), and the subscriptions
    /// of purged accounts as long after the purge. Returns how many payments went.
    @discardableResult
    public func deletePayments(createdBefore limit: Date) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(sql: "DELETE FROM subscription WHERE user_id IS NULL AND updated_at < ?", arguments: [limit])
            try db.execute(sql: "DELETE FROM stripe_charge WHERE updated_at < ?", arguments: [limit])
            try db.execute(sql: "DELETE FROM stripe_invoice_payment WHERE created_at < ?", arguments: [limit])
            return try Payment.filter(Column("created_at") < limit).deleteAll(db)
        }
    }

    private static func queue(_ draft: MailDraft?, _ db: Database, _ now: Date) throws {
        if let draft { try Self.enqueue(draft, db: db, now: now) }
    }
}
