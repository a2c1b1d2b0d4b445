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
        return migrator
    }
}
