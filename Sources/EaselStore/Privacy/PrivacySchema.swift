import GRDB

extension AppDatabase {
    /// Self-service data rights: each person's privacy state (deletion requested, processing
    /// restricted, marketing consent), the log of data requests that outlives the person under
    /// a pseudonym, extra mail headers (List-Unsubscribe), and a ledger trigger that lets a
    /// purge null the references ON DELETE SET NULL makes (and nothing else).
    static func createPrivacyTables(_ db: Database) throws {
        try db.create(table: "account_privacy") { t in
            t.primaryKey("user_id", .integer).references("user", onDelete: .cascade)
            // Set by the person (or an admin, for an account reported as under age); the purge
            // job removes the account EASEL_ACCOUNT_PURGE_DAYS later.
            t.column("deletion_requested_at", .datetime)
            t.column("deletion_reason", .text).check(sql: "deletion_reason IS NULL OR deletion_reason IN ('self', 'under_age')")
            // Set when a purge begins: from then on signing in cannot cancel, and a purge that
            // stopped half-way is finished by the next run.
            t.column("purge_started_at", .datetime)
            // Chosen when the purge begins and given to the records kept (payments, data
            // requests): random, so it says nothing about the person.
            t.column("pseudonym", .text)
            // "Restrict processing": no generation and no non-essential mail while set.
            t.column("restricted_at", .datetime)
            // Marketing mail only with this set (opt-in; off by default).
            t.column("marketing_opt_in_at", .datetime)
            t.column("updated_at", .datetime).notNull()
            t.check(sql: "(deletion_requested_at IS NULL) = (deletion_reason IS NULL)")
            t.check(sql: "purge_started_at IS NULL OR deletion_requested_at IS NOT NULL")
        }
        try db.execute(sql: "CREATE INDEX account_privacy_deletions ON account_privacy(deletion_requested_at) WHERE deletion_requested_at IS NOT NULL")

        // What people asked for and what came of it. Kept after a purge: `user_id` becomes NULL
        // and `pseudonym` (random, shared only with the person's payment records) stands in.
        try db.create(table: "data_request") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).references("user", onDelete: .setNull)
            t.column("pseudonym", .text)
            t.column("kind", .text).notNull().check(
                sql: """
                    kind IN ('access', 'export', 'images_deleted', 'deletion_requested', 'deletion_canceled', 'purged',
                             'under_age_purged', 'restriction_on', 'restriction_off', 'marketing_opt_in', 'marketing_opt_out',
                             'analytics_opt_out', 'analytics_opt_in')
                    """
            )
            // What happened, in a few words ("completed", "scheduled for 2026-12-28", "failed: …").
            t.column("outcome", .text).notNull()
            // The admin who acted, when one did (under-age purges).
            t.column("actor_id", .integer).references("user", onDelete: .setNull)
            t.column("created_at", .datetime).notNull()
        }
        try db.create(index: "data_request_by_user", on: "data_request", columns: ["user_id", "id"])
        try db.create(index: "data_request_by_time", on: "data_request", columns: ["created_at"])

        // Extra headers of a queued mail as a JSON object (List-Unsubscribe on non-essential mail).
        try db.alter(table: "mail_outbox") { t in
            t.add(column: "headers", .text)
        }

        // Deleting a task or an admin sets the ledger's task_id or actor_id to NULL (an UPDATE):
        // allow exactly that, so accounts can be purged; every other change is still refused.
        try db.execute(
            sql: """
                DROP TRIGGER credit_ledger_append_only;
                CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE ON credit_ledger
                WHEN NOT (
                    NEW.id = OLD.id AND NEW.user_id = OLD.user_id AND NEW.kind = OLD.kind AND NEW.amount = OLD.amount
                    AND NEW.balance_after = OLD.balance_after AND NEW.payment_ref IS OLD.payment_ref
                    AND NEW.reason = OLD.reason AND NEW.created_at = OLD.created_at
                    AND (NEW.task_id IS OLD.task_id OR NEW.task_id IS NULL)
                    AND (NEW.actor_id IS OLD.actor_id OR NEW.actor_id IS NULL)
                )
                BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;
                """
        )
    }
}
