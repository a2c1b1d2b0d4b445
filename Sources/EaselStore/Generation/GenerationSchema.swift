import GRDB

extension AppDatabase {
    /// Credits, uploads, tasks and images. The invariants the issue promises live here: a
    /// balance never below zero, a ledger nobody edits, one reservation, capture and refund per
    /// task, charges that add up, and one image row per result slot.
    static func createGenerationTables(_ db: Database) throws {
        // The current balance per person, kept in the same transaction as each ledger row
        // (AppDatabase.appendLedgerEntry) and re-derivable from the ledger (`easel credits verify`).
        try db.create(table: "credit_balance") { t in
            t.primaryKey("user_id", .integer).references("user", onDelete: .cascade)
            t.column("balance", .integer).notNull().check(sql: "balance >= 0")
            t.column("updated_at", .datetime).notNull()
        }

        try db.create(table: "upload") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
            t.column("blob_key", .text).notNull().unique()
            t.column("format", .text).notNull().check(sql: "format IN ('png', 'jpeg', 'webp')")
            t.column("width", .integer).notNull().check(sql: "width > 0")
            t.column("height", .integer).notNull().check(sql: "height > 0")
            t.column("bytes", .integer).notNull()
            t.column("sha256", .text).notNull()
            t.column("created_at", .datetime).notNull()
        }

        try db.create(table: "generation_task") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().references("user", onDelete: .cascade)
            t.column("status", .text).notNull().defaults(to: "queued")
                .check(sql: "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')")
            t.column("provider", .text).notNull()
            t.column("model", .text).notNull()
            t.column("prompt", .text).notNull()
            t.column("size", .text).notNull()
            t.column("quality", .text).notNull()
            t.column("count", .integer).notNull().check(sql: "count BETWEEN 1 AND 10")
            t.column("reference_count", .integer).notNull().defaults(to: 0).check(sql: "reference_count BETWEEN 0 AND 16")
            t.column("progress", .integer).notNull().defaults(to: 0).check(sql: "progress BETWEEN 0 AND 100")
            t.column("credits_reserved", .integer).notNull().check(sql: "credits_reserved >= 0")
            t.column("credits_charged", .integer).notNull().defaults(to: 0).check(sql: "credits_charged >= 0")
            t.column("credits_refunded", .integer).notNull().defaults(to: 0).check(sql: "credits_refunded >= 0")
            // Set once, before anything else, by an asynchronous provider; a task with one is
            // only ever polled, never submitted again.
            t.column("provider_task_id", .text)
            t.column("attempts", .integer).notNull().defaults(to: 0)
            t.column("next_attempt_at", .datetime).notNull()
            t.column("failure_code", .text)
            t.column("failure_message", .text)
            t.column("idempotency_key", .text)
            t.column("request_hash", .blob)
            t.column("api_key_id", .integer).references("api_key", onDelete: .setNull)
            t.column("created_at", .datetime).notNull()
            t.column("started_at", .datetime)
            t.column("finished_at", .datetime)
            t.column("updated_at", .datetime).notNull()
            // Finished tasks have an end, and their credits are settled: every reserved credit
            // is either charged or refunded. Running ones have charged nothing yet.
            t.check(sql: "(status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL)")
            t.check(sql: "credits_charged + credits_refunded <= credits_reserved")
            t.check(sql: "status NOT IN ('succeeded', 'failed', 'canceled') OR credits_charged + credits_refunded = credits_reserved")
            t.check(sql: "status = 'succeeded' OR credits_charged = 0")
            t.check(sql: "(idempotency_key IS NULL) = (request_hash IS NULL)")
        }
        try db.create(index: "generation_task_by_user", on: "generation_task", columns: ["user_id", "id"])
        try db.execute(sql: """
            CREATE UNIQUE INDEX generation_task_idempotency ON generation_task(user_id, idempotency_key)
                WHERE idempotency_key IS NOT NULL;
            CREATE UNIQUE INDEX generation_task_provider_id ON generation_task(provider, provider_task_id)
                WHERE provider_task_id IS NOT NULL;
            CREATE INDEX generation_task_due ON generation_task(next_attempt_at) WHERE status IN ('queued', 'running');
            CREATE INDEX generation_task_by_status ON generation_task(status, id);
            """)

        try db.create(table: "task_reference") { t in
            t.column("task_id", .integer).notNull().references("generation_task", onDelete: .cascade)
            t.column("position", .integer).notNull().check(sql: "position BETWEEN 0 AND 15")
            t.column("upload_id", .integer).notNull().indexed().references("upload", onDelete: .restrict)
            t.primaryKey(["task_id", "position"])
        }

        // Append-only: rows are never changed. Sign rules per kind are checked here; the
        // balance they move is kept in credit_balance by the one method that inserts them.
        try db.create(table: "credit_ledger") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().references("user", onDelete: .cascade)
            t.column("kind", .text).notNull()
                .check(sql: "kind IN ('grant', 'purchase', 'reserve', 'capture', 'refund', 'adjust', 'expire')")
            t.column("amount", .integer).notNull()
            t.column("balance_after", .integer).notNull().check(sql: "balance_after >= 0")
            t.column("task_id", .integer).references("generation_task", onDelete: .setNull)
            // A payment's id at the payment provider (Stripe), for purchases.
            t.column("payment_ref", .text)
            t.column("reason", .text).notNull().defaults(to: "")
            // The admin who granted or adjusted, when one did.
            t.column("actor_id", .integer).references("user", onDelete: .setNull)
            t.column("created_at", .datetime).notNull()
            t.check(sql: """
                CASE kind
                    WHEN 'grant' THEN amount > 0
                    WHEN 'purchase' THEN amount > 0
                    WHEN 'refund' THEN amount > 0
                    WHEN 'reserve' THEN amount < 0
                    WHEN 'expire' THEN amount < 0
                    WHEN 'capture' THEN amount = 0
                    ELSE amount <> 0
                END
                """)
        }
        try db.create(index: "credit_ledger_by_user", on: "credit_ledger", columns: ["user_id", "id"])
        // One reservation, one capture and one refund per task, however often a worker retries.
        try db.execute(sql: """
            CREATE UNIQUE INDEX credit_ledger_once_per_task ON credit_ledger(task_id, kind)
                WHERE task_id IS NOT NULL AND kind IN ('reserve', 'capture', 'refund');
            CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE ON credit_ledger
                BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;
            """)

        try db.create(table: "image") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().references("user", onDelete: .cascade)
            t.column("task_id", .integer).references("generation_task", onDelete: .setNull)
            // Which result of its task this is (0-based): a retried finish cannot add a second row.
            t.column("result_index", .integer).notNull()
            t.column("blob_key", .text).notNull().unique()
            t.column("thumb_key", .text).notNull().unique()
            t.column("format", .text).notNull().check(sql: "format IN ('png', 'jpeg', 'webp')")
            t.column("width", .integer).notNull()
            t.column("height", .integer).notNull()
            t.column("bytes", .integer).notNull()
            t.column("sha256", .text).notNull()
            t.column("provider", .text).notNull()
            t.column("model", .text).notNull()
            t.column("quality", .text).notNull()
            t.column("size", .text).notNull()
            t.column("prompt", .text).notNull()
            t.column("created_at", .datetime).notNull()
        }
        try db.create(index: "image_by_user", on: "image", columns: ["user_id", "id"])
        try db.execute(sql: "CREATE UNIQUE INDEX image_one_per_result ON image(task_id, result_index) WHERE task_id IS NOT NULL")
    }
}
