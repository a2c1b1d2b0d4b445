import GRDB

extension AppDatabase {
    /// Append-only: a shipped migration is never edited; changes go in a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("2026-11-25 job runs") { db in
            try db.create(table: "job_run") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("job", .text).notNull()
                t.column("started_at", .datetime).notNull()
                t.column("finished_at", .datetime)
                t.column("outcome", .text).notNull()
                    .check(sql: "outcome IN ('running', 'succeeded', 'failed', 'interrupted')")
                t.column("error", .text)
                t.column("trigger", .text).notNull().defaults(to: "timer")
                    .check(sql: "trigger IN ('timer', 'manual')")
                // A finished run has an end; a running one has none.
                t.check(sql: "(outcome = 'running') = (finished_at IS NULL)")
            }
            try db.create(index: "job_run_by_job", on: "job_run", columns: ["job", "started_at"])
            // A job never overlaps itself, even across processes (`easel jobs run` beside a server).
            try db.execute(sql: "CREATE UNIQUE INDEX job_run_one_running ON job_run(job) WHERE outcome = 'running'")
        }
        migrator.registerMigration("2026-11-25 accounts") { db in
            try db.create(table: "user") { t in
                t.autoIncrementedPrimaryKey("id")
                // Stored lowercased; NOCASE keeps the uniqueness check honest for ASCII too.
                t.column("email", .text).notNull().unique().collate(.nocase)
                t.column("email_verified_at", .datetime)
                // NULL for accounts that only sign in through OpenID Connect.
                t.column("password_hash", .text)
                t.column("display_name", .text).notNull().defaults(to: "")
                t.column("avatar_key", .text)
                t.column("role", .text).notNull().defaults(to: "member").check(sql: "role IN ('admin', 'member')")
                t.column("status", .text).notNull().defaults(to: "active").check(sql: "status IN ('active', 'suspended')")
                t.column("language", .text)
                t.column("theme", .text).notNull().defaults(to: "system").check(sql: "theme IN ('light', 'dark', 'system')")
                t.column("totp_secret", .text)
                t.column("totp_enabled_at", .datetime)
                // The last accepted TOTP time step: a code is never accepted twice.
                t.column("totp_last_step", .integer)
                t.column("age_confirmed_at", .datetime).notNull()
                t.column("terms_version", .text).notNull()
                t.column("terms_accepted_at", .datetime).notNull()
                t.column("created_at", .datetime).notNull()
                t.column("updated_at", .datetime).notNull()
                t.check(sql: "totp_enabled_at IS NULL OR totp_secret IS NOT NULL")
            }
            try db.create(table: "session") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
                // SHA-256 of the cookie's token: a leaked database does not leak sessions.
                t.column("token_hash", .blob).notNull().unique()
                t.column("csrf_token", .text).notNull()
                t.column("created_at", .datetime).notNull()
                t.column("last_seen_at", .datetime).notNull()
                t.column("expires_at", .datetime).notNull()
                t.column("user_agent", .text).notNull().defaults(to: "")
                t.column("ip", .text).notNull().defaults(to: "")
                t.column("country", .text)
            }
            try db.create(table: "email_token") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
                t.column("purpose", .text).notNull().check(sql: "purpose IN ('verify_email', 'reset_password', 'change_email')")
                t.column("token_hash", .blob).notNull().unique()
                // The 6-digit alternative to the link, for verification; hashed like the token.
                t.column("code_hash", .blob)
                t.column("new_email", .text)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("created_at", .datetime).notNull()
                t.column("expires_at", .datetime).notNull()
                t.column("used_at", .datetime)
            }
            try db.create(index: "email_token_by_user", on: "email_token", columns: ["user_id", "purpose"])
            // Sign-in identities at OpenID Connect providers, linked by (issuer, subject).
            try db.create(table: "identity") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
                t.column("issuer", .text).notNull()
                t.column("subject", .text).notNull()
                t.column("email", .text)
                t.column("created_at", .datetime).notNull()
                t.uniqueKey(["issuer", "subject"])
            }
            try db.create(table: "api_key") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
                t.column("name", .text).notNull()
                // The first characters of the key ("easel_ab12cd34"), shown in lists and used to find it.
                t.column("prefix", .text).notNull().unique()
                // SHA-256 of the whole key: the key itself is shown once and never stored.
                t.column("secret_hash", .blob).notNull()
                // Comma-separated scopes, e.g. "generate,read".
                t.column("scopes", .text).notNull()
                t.column("created_at", .datetime).notNull()
                t.column("expires_at", .datetime)
                t.column("last_used_at", .datetime)
                t.column("revoked_at", .datetime)
            }
            try db.create(table: "invitation") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("email", .text).notNull().collate(.nocase)
                t.column("token_hash", .blob).notNull().unique()
                t.column("role", .text).notNull().defaults(to: "member").check(sql: "role IN ('admin', 'member')")
                t.column("invited_by", .integer).references("user", onDelete: .setNull)
                t.column("created_at", .datetime).notNull()
                t.column("expires_at", .datetime).notNull()
                t.column("used_at", .datetime)
            }
            // Devices a person signed in from, to tell them about sign-ins from new ones.
            try db.create(table: "known_device") { t in
                t.column("user_id", .integer).notNull().references("user", onDelete: .cascade)
                t.column("fingerprint", .blob).notNull()
                t.column("first_seen_at", .datetime).notNull()
                t.primaryKey(["user_id", "fingerprint"])
            }
            try db.create(table: "recovery_code") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .integer).notNull().indexed().references("user", onDelete: .cascade)
                t.column("code_hash", .blob).notNull()
                t.column("used_at", .datetime)
            }
            try db.create(table: "login_failure") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("email", .text).notNull().collate(.nocase)
                t.column("ip", .text).notNull()
                t.column("at", .datetime).notNull()
            }
            try db.create(index: "login_failure_by_email", on: "login_failure", columns: ["email", "at"])
            try db.create(index: "login_failure_by_ip", on: "login_failure", columns: ["ip", "at"])
            try db.create(table: "mail_outbox") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("kind", .text).notNull()
                t.column("to_email", .text).notNull()
                t.column("to_name", .text)
                t.column("subject", .text).notNull()
                t.column("text_body", .text).notNull()
                t.column("html_body", .text)
                t.column("message_id", .text).notNull().unique()
                t.column("status", .text).notNull().defaults(to: "queued").check(sql: "status IN ('queued', 'sent', 'failed')")
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("next_attempt_at", .datetime).notNull()
                t.column("last_error", .text)
                t.column("transport", .text)
                t.column("created_at", .datetime).notNull()
                t.column("sent_at", .datetime)
                t.check(sql: "(status = 'sent') = (sent_at IS NOT NULL)")
            }
            try db.create(index: "mail_outbox_due", on: "mail_outbox", columns: ["status", "next_attempt_at"])
        }
        migrator.registerMigration("2026-11-26 generation") { db in
            try Self.createGenerationTables(db)
        }
        migrator.registerMigration("2026-11-27 billing") { db in
            try Self.createBillingTables(db)
        }
        migrator.registerMigration("2026-11-27 billing links") { db in
            try Self.addBillingLinks(db)
        }
        migrator.registerMigration("2026-11-28 privacy rights") { db in
            try Self.createPrivacyTables(db)
        }
        migrator.registerMigration("2026-11-28 exports") { db in
            try Self.createExportTables(db)
        }
        migrator.registerMigration("2026-11-28 analytics") { db in
            try Self.createAnalyticsTables(db)
        }
        migrator.registerMigration("2026-11-29 policies") { db in
            try Self.createPolicyTables(db)
        }
        migrator.registerMigration("2026-11-30 data keys") { db in
            try Self.createDataKeyTable(db)
        }
        migrator.registerMigration("2026-11-30 sealing existing data") { db in
            try Self.createSealingStateTable(db)
        }
        migrator.registerMigration("2026-11-30 mail owner") { db in
            // Whose mail it is, so a purge finds mail to addresses the person has since left.
            try db.alter(table: "mail_outbox") { t in
                t.add(column: "user_id", .integer).references("user", onDelete: .cascade)
            }
            try db.execute(sql: "UPDATE mail_outbox SET user_id = (SELECT id FROM user WHERE user.email = lower(mail_outbox.to_email))")
            try db.create(index: "mail_outbox_by_user", on: "mail_outbox", columns: ["user_id"])
        }
        return migrator
    }
}
