import Foundation
import GRDB

/// Easel's SQLite database. Every write is one method named for its intent running exactly
/// one transaction; no SQL lives outside this module.
public struct AppDatabase: Sendable {
    /// A `DatabasePool` in production (WAL: readers never block the writer); tests may pass an
    /// in-memory `DatabaseQueue`.
    public let writer: any DatabaseWriter

    /// Wraps `writer` and brings its schema up to date.
    public init(_ writer: any DatabaseWriter) throws {
        self.writer = writer
        try Self.migrator.migrate(writer)
    }

    /// Opens (creating if needed) the database file at `path` in WAL mode and migrates it.
    public static func open(path: String) throws -> AppDatabase {
        try AppDatabase(DatabasePool(path: path, configuration: Self.configuration()))
    }

    /// An in-memory database for tests.
    public static func inMemory() throws -> AppDatabase {
        try AppDatabase(DatabaseQueue(configuration: Self.configuration()))
    }

    /// busy_timeout first, then synchronous=NORMAL and foreign keys (GRDB turns those on, and
    /// DatabasePool turns on WAL). NORMAL survives application crashes; a power loss may lose
    /// the last commits (docs/operations.md says so).
    public static func configuration() -> Configuration {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        return configuration
    }

    /// Names of migrations this build knows, oldest first.
    public static var knownMigrations: [String] { Self.migrator.migrations }

    /// The migrations already applied to the database.
    public func appliedMigrations() throws -> [String] {
        try self.writer.read { db in try Self.migrator.appliedMigrations(db) }
    }

    /// Cheap check for `/readyz`: the database answers a query.
    public func ping() async throws {
        _ = try await self.writer.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    /// The journal mode SQLite reports ("wal" for a file database).
    public func journalMode() throws -> String {
        try self.writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// Nightly upkeep: fold the WAL back into the main file and let SQLite refresh its
    /// statistics. Runs outside a transaction, as both pragmas require.
    public func checkpointAndOptimize() async throws {
        try await self.writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            try db.execute(sql: "PRAGMA optimize")
        }
    }
}
