import Foundation
import GRDB

/// Snapshots, checks and restores of the database file, for backups.
public enum DatabaseFileError: Error, CustomStringConvertible, Equatable {
    case notADatabase(path: String, reason: String)
    case damaged(path: String, problems: String)
    case newerThanThisBuild(path: String, unknown: [String])
    case notAnEaselDatabase(path: String)

    public var description: String {
        switch self {
        case .notADatabase(let path, let reason):
            "\(path) is not a readable SQLite database (\(reason)); nothing was changed"
        case .damaged(let path, let problems):
            "\(path) is damaged: integrity check says \(problems); nothing was changed"
        case .newerThanThisBuild(let path, let unknown):
            "\(path) was written by a newer Easel (unknown migrations: \(unknown.joined(separator: ", "))); upgrade Easel first"
        case .notAnEaselDatabase(let path):
            "\(path) is a SQLite database but not an Easel one (no migration history); nothing was changed"
        }
    }
}

/// What a verified database file holds.
public struct DatabaseFileFacts: Sendable, Equatable {
    public var appliedMigrations: [String]
    public var sizeInBytes: Int
}

extension AppDatabase {
    /// Writes a consistent snapshot of the database to `destination`: `VACUUM INTO` a temporary
    /// name beside it, check it, then rename, so `destination` is never a partial file.
    public func snapshot(to destination: URL) async throws -> DatabaseFileFacts {
        let temporary = destination.deletingLastPathComponent()
            .appending(path: ".\(destination.lastPathComponent).\(UUID().uuidString).partial")
        defer { try? FileManager.default.removeItem(at: temporary) }
        // VACUUM cannot run inside a transaction; on a pool this uses a reader, so writers go on.
        try self.writer.unsafeReentrantRead { db in
            try db.execute(sql: "VACUUM INTO ?", arguments: [temporary.path])
        }
        let facts = try Self.verifyFile(at: temporary)
        try FileSystemSync.fsyncFile(at: temporary)
        guard rename(temporary.path, destination.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: destination.path])
        }
        try FileSystemSync.fsyncDirectory(destination.deletingLastPathComponent())
        return facts
    }

    /// Opens the file read-only and checks it: a SQLite database, `PRAGMA integrity_check` ok,
    /// an Easel migration history with no migration this build does not know.
    public static func verifyFile(at url: URL) throws -> DatabaseFileFacts {
        let path = url.path
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size > 0 else { throw DatabaseFileError.notADatabase(path: path, reason: "the file is empty or missing") }
        var configuration = Configuration()
        configuration.readonly = true
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw DatabaseFileError.notADatabase(path: path, reason: Self.reason(error))
        }
        return try queue.read { db in
            let problems: [String]
            do {
                problems = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            } catch {
                throw DatabaseFileError.notADatabase(path: path, reason: Self.reason(error))
            }
            guard problems == ["ok"] else {
                throw DatabaseFileError.damaged(path: path, problems: problems.prefix(3).joined(separator: "; "))
            }
            guard try db.tableExists("grdb_migrations") else { throw DatabaseFileError.notAnEaselDatabase(path: path) }
            let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
            let unknown = applied.filter { !Self.knownMigrations.contains($0) }
            guard unknown.isEmpty else { throw DatabaseFileError.newerThanThisBuild(path: path, unknown: unknown) }
            return DatabaseFileFacts(appliedMigrations: applied, sizeInBytes: size)
        }
    }

    /// Replaces the database at `databasePath` with the verified backup at `backup`.
    /// Only for a stopped instance: the caller holds the data folder's lock. The current
    /// database is kept beside it as `<name>.before-restore-<time>`. Returns that path, if any.
    @discardableResult
    public static func restore(from backup: URL, into databasePath: URL, now: Date = Date()) throws -> URL? {
        let fileManager = FileManager.default
        let folder = databasePath.deletingLastPathComponent()
        let staged = folder.appending(path: ".\(databasePath.lastPathComponent).restoring")
        try? fileManager.removeItem(at: staged)
        defer { try? fileManager.removeItem(at: staged) }
        try fileManager.copyItem(at: backup, to: staged)
        // Check the copy we will actually use, not the original.
        _ = try Self.verifyFile(at: staged)
        try FileSystemSync.fsyncFile(at: staged)

        var keptPath: URL?
        if fileManager.fileExists(atPath: databasePath.path) {
            // Fold any WAL into the main file first, so the kept copy is complete on its own.
            do {
                let old = try DatabaseQueue(path: databasePath.path)
                try old.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
                try old.close()
            } catch {
                // A damaged current database is a reason to restore, not a reason to stop.
            }
            let stamp = Self.fileTimestamp(now)
            let kept = folder.appending(path: "\(databasePath.lastPathComponent).before-restore-\(stamp)")
            try fileManager.moveItem(at: databasePath, to: kept)
            keptPath = kept
        }
        for suffix in ["-wal", "-shm"] {
            try? fileManager.removeItem(atPath: databasePath.path + suffix)
        }
        try fileManager.moveItem(at: staged, to: databasePath)
        try FileSystemSync.fsyncDirectory(folder)
        return keptPath
    }

    /// "20261125T133500Z": sorts by time, safe in file names and blob keys.
    public static func fileTimestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    private static func reason(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error.resultCode)" }
        return "\(error)"
    }
}

/// fsync helpers: a rename is only durable once the folder holding it is synced.
public enum FileSystemSync {
    public static func fsyncFile(at url: URL) throws {
        let handle = try FileHandle(forUpdating: url)
        defer { try? handle.close() }
        try handle.synchronize()
    }

    public static func fsyncDirectory(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = fsync(fd)
    }
}
