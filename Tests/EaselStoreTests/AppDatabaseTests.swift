import EaselTestSupport
import Foundation
import GRDB
import Testing

@testable import EaselStore

@Suite("Database")
struct AppDatabaseTests {
    @Test("A fresh database gets every migration")
    func freshDatabaseIsMigrated() throws {
        let database = try AppDatabase.inMemory()
        #expect(try database.appliedMigrations() == AppDatabase.knownMigrations)
        #expect(!AppDatabase.knownMigrations.isEmpty)
    }

    @Test("Opening an existing database keeps its rows and applies only what is missing")
    func existingDatabaseIsMigratedInPlace() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = folder.url.appending(path: "easel.db").path
        // An "older" database: only the first migration, plus a row.
        do {
            let pool = try DatabasePool(path: path, configuration: AppDatabase.configuration())
            try AppDatabase.migrator.migrate(pool, upTo: AppDatabase.knownMigrations[0])
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO job_run (job, started_at, finished_at, outcome, trigger) VALUES ('old', '2026-01-01 00:00:00', '2026-01-01 00:00:01', 'succeeded', 'timer')")
            }
            try pool.close()
        }
        let reopened = try AppDatabase.open(path: path)
        #expect(try reopened.appliedMigrations() == AppDatabase.knownMigrations)
        let runs = try await reopened.recentJobRuns(job: "old")
        #expect(runs.count == 1)
    }

    @Test("A file database runs in WAL mode with foreign keys on and synchronous=NORMAL")
    func fileDatabaseUsesWAL() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try AppDatabase.open(path: folder.url.appending(path: "easel.db").path)
        #expect(try database.journalMode() == "wal")
        let (foreignKeys, synchronous, busyTimeout) = try database.writer.read { db in
            (
                try Int.fetchOne(db, sql: "PRAGMA foreign_keys"), try Int.fetchOne(db, sql: "PRAGMA synchronous"),
                try Int.fetchOne(db, sql: "PRAGMA busy_timeout")
            )
        }
        #expect(foreignKeys == 1)
        #expect(synchronous == 1)
        #expect((busyTimeout ?? 0) >= 5000)
    }

    @Test("A job cannot have two running runs at once; finishing frees it")
    func oneRunningRunPerJob() async throws {
        let database = try AppDatabase.inMemory()
        let first = try #require(try await database.recordJobStarted("backup", trigger: .timer))
        #expect(try await database.recordJobStarted("backup", trigger: .manual) == nil)
        #expect(try await database.recordJobStarted("other", trigger: .manual) != nil)
        try await database.recordJobFinished(first, outcome: .failed, error: "disk full")
        let second = try await database.recordJobStarted("backup", trigger: .manual)
        #expect(second != nil)
        let runs = try await database.recentJobRuns(job: "backup")
        #expect(runs.map(\.outcome) == [.running, .failed])
        #expect(runs.last?.error == "disk full")
    }

    @Test("Runs left running by a stopped process are marked interrupted")
    func abandonedRunsAreInterrupted() async throws {
        let database = try AppDatabase.inMemory()
        _ = try await database.recordJobStarted("backup", trigger: .timer)
        #expect(try await database.markAbandonedJobRunsInterrupted() == 1)
        #expect(try await database.recentJobRuns(job: "backup").first?.outcome == .interrupted)
        #expect(try await database.recordJobStarted("backup", trigger: .timer) != nil)
    }

    @Test("The schema refuses a finished run without an end time")
    func schemaHoldsRunInvariant() throws {
        let database = try AppDatabase.inMemory()
        #expect(throws: DatabaseError.self) {
            try database.writer.write { db in
                try db.execute(sql: "INSERT INTO job_run (job, started_at, outcome) VALUES ('x', CURRENT_TIMESTAMP, 'succeeded')")
            }
        }
    }

    @Test("Pruning keeps the newest runs of each job")
    func pruneKeepsNewest() async throws {
        let database = try AppDatabase.inMemory()
        for i in 0..<5 {
            let run = try #require(try await database.recordJobStarted("a", trigger: .timer, at: Date(timeIntervalSince1970: Double(i))))
            try await database.recordJobFinished(run, outcome: .succeeded, error: nil)
        }
        let other = try #require(try await database.recordJobStarted("b", trigger: .timer))
        try await database.recordJobFinished(other, outcome: .succeeded, error: nil)
        #expect(try await database.pruneJobRuns(keepingPerJob: 2) == 3)
        let kept = try await database.recentJobRuns(job: "a")
        #expect(kept.map { Int($0.startedAt.timeIntervalSince1970) } == [4, 3])
        #expect(try await database.recentJobRuns(job: "b").count == 1)
    }

    @Test("Checkpoint and optimize run on a WAL database")
    func checkpointAndOptimize() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = folder.url.appending(path: "easel.db").path
        let database = try AppDatabase.open(path: path)
        _ = try await database.recordJobStarted("x", trigger: .timer)
        try await database.checkpointAndOptimize()
        // TRUNCATE leaves an empty WAL file.
        let walSize = (try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? -1
        #expect(walSize == 0)
    }
}
