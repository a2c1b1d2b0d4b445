import EaselBlobs
import EaselStore
import Foundation
import Logging
import NIOCore

/// Consistent database backups kept in the blob store under `backups/`, newest N kept.
public struct BackupService: Sendable {
    public static let keyPrefix = "backups/"

    private let database: AppDatabase
    private let blobs: any BlobStore
    /// A folder on the same disk as the database for the snapshot before it is uploaded.
    private let workFolder: URL
    private let keep: Int
    private let logger: Logger

    public init(database: AppDatabase, blobs: any BlobStore, workFolder: URL, keep: Int, logger: Logger) {
        precondition(keep >= 1, "keep at least one backup")
        self.database = database
        self.blobs = blobs
        self.workFolder = workFolder
        self.keep = keep
        self.logger = logger
    }

    public struct Backup: Sendable, Equatable {
        public var key: BlobKey
        public var size: Int
        public var createdAt: Date?
    }

    /// Snapshots, verifies, stores, then prunes old backups. Returns the new backup.
    @discardableResult
    public func backUp(now: Date = Date()) async throws -> Backup {
        try FileManager.default.createDirectory(at: self.workFolder, withIntermediateDirectories: true)
        let name = "easel-\(AppDatabase.fileTimestamp(now)).db"
        let local = self.workFolder.appending(path: name)
        defer { try? FileManager.default.removeItem(at: local) }
        let facts = try await self.database.snapshot(to: local)
        let key = try BlobKey(Self.keyPrefix + name)
        try await self.blobs.put(key, body: FileStreams.read(local), contentType: "application/vnd.sqlite3")
        self.logger.info("backup stored", metadata: ["key": "\(key)", "bytes": "\(facts.sizeInBytes)", "store": "\(self.blobs.kind)"])
        try await self.prune()
        return Backup(key: key, size: facts.sizeInBytes, createdAt: now)
    }

    /// Backups in the store, newest first.
    public func list() async throws -> [Backup] {
        try await self.blobs.list(prefix: Self.keyPrefix + "easel-")
            .filter { $0.key.rawValue.hasSuffix(".db") }
            .sorted { $0.key > $1.key }
            .map { Backup(key: $0.key, size: $0.size, createdAt: $0.lastModified) }
    }

    /// Deletes all but the newest `keep` backups.
    public func prune() async throws {
        for old in try await self.list().dropFirst(self.keep) {
            try await self.blobs.delete(old.key)
            self.logger.info("old backup deleted", metadata: ["key": "\(old.key)"])
        }
    }

    /// Downloads a stored backup to `destination` (for `easel restore NAME`).
    public func download(_ key: BlobKey, to destination: URL) async throws {
        let object = try await self.blobs.get(key)
        try await FileStreams.write(object.body, to: destination)
    }
}

/// Reading and writing files as byte streams, in chunks, off the cooperative pool's hot path.
public enum FileStreams {
    /// Streams a file's bytes (optionally a sub-range) in chunks.
    public static func read(_ url: URL, range: ClosedRange<Int>? = nil) throws -> BlobByteStream {
        try DiskBlobStore.readStream(url, range: range)
    }

    /// Writes a stream to a file (replacing it).
    public static func write(_ stream: BlobByteStream, to url: URL) async throws {
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        for try await chunk in stream {
            try handle.write(contentsOf: Data(chunk.readableBytesView))
        }
        try handle.synchronize()
    }
}
