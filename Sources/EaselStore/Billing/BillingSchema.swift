import GRDB

extension AppDatabase {
    /// Stripe billing: the events applied, each person's Stripe customer, subscriptions,
    /// payments (only what the privacy policy allows: ids, last four digits, country, amount,
    /// currency, statuses) and the charges that refunds arrive on.
    static func createBillingTables(_ db: Database) throws {
        // Every webhook event applied, by Stripe's id: a repeat finds its row and changes nothing.
        try db.create(table: "stripe_event") { t in
            t.primaryKey("id", .text)
            t.column("type", .text).notNull()
            t.column("created_at", .datetime).notNull()
            t.column("received_at", .datetime).notNull()
            // What applying it did, for admins: "applied", or why it was set aside.
            t.column("outcome", .text).notNull()
        }

        try db.create(table: "billing_customer") { t in
            t.primaryKey("stripe_customer_id", .text)
            t.column("user_id", .integer).notNull().unique().references("user", onDelete: .cascade)
            t.column("created_at", .datetime).notNull()
        }

        try db.create(table: "subscription") { t in
            t.primaryKey("stripe_subscription_id", .text)
            // Null once the account is purged; the record stays for the accounts' retention period.
            t.column("user_id", .integer).references("user", onDelete: .setNull)
            t.column("plan_id", .text)
            t.column("price_id", .text)
            t.column("status", .text).notNull()
            t.column("cancel_at_period_end", .boolean).notNull().defaults(to: false)
            t.column("current_period_end", .datetime)
            // The creation time of the Stripe event whose state this is: older events never
            // overwrite newer state, whatever order they arrive in.
            t.column("state_at", .datetime)
            t.column("created_at", .datetime).notNull()
            t.column("updated_at", .datetime).notNull()
        }
        try db.create(index: "subscription_by_user", on: "subscription", columns: ["user_id"])

        try db.create(table: "payment") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).references("user", onDelete: .setNull)
            // Set when the account is purged: the record is kept (7 years) without saying whose.
            t.column("pseudonym", .text)
            t.column("kind", .text).notNull().check(sql: "kind IN ('pack', 'subscription')")
            // The catalog's pack or plan id at the time.
            t.column("product_id", .text).notNull()
            t.column("checkout_session_id", .text).unique()
            t.column("invoice_id", .text).unique()
            t.column("payment_intent_id", .text).unique()
            t.column("subscription_id", .text)
            t.column("amount", .integer).notNull().check(sql: "amount >= 0")
            t.column("currency", .text).notNull()
            t.column("status", .text).notNull().check(sql: "status IN ('pending', 'paid', 'failed')")
            t.column("card_last4", .text).check(sql: "card_last4 IS NULL OR (length(card_last4) = 4 AND card_last4 GLOB '[0-9][0-9][0-9][0-9]')")
            t.column("billing_country", .text)
            t.column("credits", .integer).notNull().check(sql: "credits >= 0")
            // Refunds: what Stripe reported on the payment's charges, and what an admin recorded
            // as refunded outside Easel.
            t.column("amount_refunded", .integer).notNull().defaults(to: 0)
            t.column("amount_refunded_outside", .integer).notNull().defaults(to: 0)
            t.column("credits_taken_back", .integer).notNull().defaults(to: 0)
            // Credits a refund should have taken back but the person had already spent.
            t.column("credits_owed", .integer).notNull().defaults(to: 0)
            t.column("period_start", .datetime)
            t.column("period_end", .datetime)
            t.column("created_at", .datetime).notNull()
            t.column("paid_at", .datetime)
            t.column("updated_at", .datetime).notNull()
            t.check(sql: "checkout_session_id IS NOT NULL OR invoice_id IS NOT NULL")
            t.check(sql: "credits_taken_back >= 0 AND credits_owed >= 0 AND credits_taken_back + credits_owed <= credits")
            t.check(sql: "amount_refunded >= 0 AND amount_refunded_outside >= 0")
        }
        try db.create(index: "payment_by_user", on: "payment", columns: ["user_id", "id"])
        try db.create(index: "payment_by_paid_at", on: "payment", columns: ["paid_at"])

        // Charges as Stripe reports them (charge.succeeded, charge.refunded): card details for the
        // payment record, and refunds, kept even when they arrive before the payment they belong to.
        try db.create(table: "stripe_charge") { t in
            t.primaryKey("id", .text)
            t.column("payment_intent_id", .text).indexed()
            t.column("invoice_id", .text).indexed()
            t.column("amount", .integer).notNull()
            t.column("amount_refunded", .integer).notNull()
            t.column("card_last4", .text)
            t.column("billing_country", .text)
            t.column("updated_at", .datetime).notNull()
        }

        // One purchase entry per payment, however often its events repeat.
        try db.execute(sql: """
            CREATE UNIQUE INDEX credit_ledger_once_per_payment ON credit_ledger(payment_ref)
                WHERE payment_ref IS NOT NULL AND kind = 'purchase';
            """)
    }

    /// Second billing migration: which payment intent paid an invoice (newer Stripe API versions
    /// say so in their own event), and whether "subscription started" was mailed.
    static func addBillingLinks(_ db: Database) throws {
        try db.create(table: "stripe_invoice_payment") { t in
            t.primaryKey("invoice_id", .text)
            t.column("payment_intent_id", .text).notNull()
            t.column("created_at", .datetime).notNull()
        }
        try db.alter(table: "subscription") { t in
            t.add(column: "started_mailed", .boolean).notNull().defaults(to: false)
        }
    }
}
