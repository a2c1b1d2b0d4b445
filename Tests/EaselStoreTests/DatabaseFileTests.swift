import EaselTestSupport
import Foundation
import GRDB
import Testing

@testable import EaselStore

@Suite("Snapshots and restores")
struct DatabaseFileTests {
    /// Every row of every table, for comparing two databases.
    static func dump(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            var lines: [String] = []
            for table in tables {
                for row in try Row.fetchAll(db, sql: "SELECT * FROM \(table.quotedDatabaseIdentifier) ORDER BY 1") {
                    lines.append("\(table): \(row.description)")
                }
            }
            return lines
        }
    }

    @Test("A snapshot verifies, and restoring it gives an identical database")
    func snapshotRestoreRoundTrip() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let live = folder.url.appending(path: "easel.db")
        let database = try AppDatabase.open(path: live.path)
        for name in ["a", "b", "c"] {
            let run = try #require(try await database.recordJobStarted(name, trigger: .manual))
            try await database.recordJobFinished(run, outcome: .succeeded, error: nil)
        }
        let backup = folder.url.appending(path: "backup.db")
        let facts = try await database.snapshot(to: backup)
        #expect(facts.appliedMigrations == AppDatabase.knownMigrations)
        let before = try Self.dump(live.path)
        #expect(before.count >= 3)

        // Change the live database after the backup; the restore must undo it.
        _ = try await database.recordJobStarted("after-backup", trigger: .manual)
        try database.writer.close()

        let kept = try AppDatabase.restore(from: backup, into: live)
        #expect(kept != nil)
        #expect(try Self.dump(live.path) == before)
        // The replaced database is kept, with the change made after the backup.
        #expect(try Self.dump(kept!.path).contains { $0.contains("after-backup") })
        // No partial or staged files are left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder.url.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test("A corrupted backup is refused and the live database is left alone")
    func corruptedBackupIsRefused() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let live = folder.url.appending(path: "easel.db")
        let database = try AppDatabase.open(path: live.path)
        for i in 0..<200 {
            let run = try #require(try await database.recordJobStarted("job-\(i)", trigger: .manual))
            try await database.recordJobFinished(run, outcome: .succeeded, error: String(repeating: "e", count: 200))
        }
        let backup = folder.url.appending(path: "backup.db")
        try await database.snapshot(to: backup)
        try database.writer.close()
        let before = try Self.dump(live.path)

        // Overwrite a stretch in the middle of the file (the header stays valid).
        var bytes = try Data(contentsOf: backup)
        let start = bytes.count / 2
        for i in start..<min(start + 4096, bytes.count) { bytes[i] = 0xA5 }
        try bytes.write(to: backup)

        #expect(throws: DatabaseFileError.self) { try AppDatabase.verifyFile(at: backup) }
        #expect(throws: DatabaseFileError.self) { try AppDatabase.restore(from: backup, into: live) }
        #expect(try Self.dump(live.path) == before)
    }

    @Test("A file that is not a database is refused with a clear message")
    func notADatabase() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let bogus = folder.url.appending(path: "notes.txt")
        try Data(String(repeating: "hello ", count: 1000).utf8).write(to: bogus)
        do {
            try AppDatabase.verifyFile(at: bogus)
            Issue.record("a text file passed verification")
        } catch let error as DatabaseFileError {
            #expect(error.description.contains("not a readable SQLite database"))
            #expect(error.description.contains("nothing was changed"))
        }
    }

    @Test("A SQLite file from elsewhere, or from a newer Easel, is refused")
    func foreignOrNewerDatabase() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let foreign = folder.url.appending(path: "foreign.db")
        try DatabaseQueue(path: foreign.path).write { db in try db.execute(sql: "CREATE TABLE t(x)") }
        #expect(throws: DatabaseFileError.notAnEaselDatabase(path: foreign.path)) { try AppDatabase.verifyFile(at: foreign) }

        let newer = folder.url.appending(path: "newer.db")
        _ = try AppDatabase.open(path: newer.path)
        try DatabaseQueue(path: newer.path).write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('2099-01-01 from the future')")
        }
        #expect(throws: DatabaseFileError.newerThanThisBuild(path: newer.path, unknown: ["2099-01-01 from the future"])) {
            try AppDatabase.verifyFile(at: newer)
        }
    }
}
