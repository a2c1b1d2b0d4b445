import Foundation
import GRDB

/// "Export everything": one ZIP of a person's originals, uploads, avatar and records, built in
/// the background and kept for a few days.
public struct DataExport: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "data_export"

    public enum Status: String, Codable, Sendable, CaseIterable {
        case queued, running, ready, failed

        /// Still to be built: a person has at most one of these.
        public var isActive: Bool { self == .queued || self == .running }
    }

    public var id: Int64?
    public var userID: Int64
    public var status: Status
    /// Files written into the archive so far, and how many it will hold.
    public var entriesDone: Int
    public var entriesTotal: Int
    /// Bytes of file content read so far, and how many there are.
    public var bytesDone: Int64
    public var bytesTotal: Int64
    /// Where the finished archive is, and its size; set when ready.
    public var blobKey: String?
    public var size: Int64?
    /// Builds started; a build cut short by a restart is started again from the beginning.
    public var attempts: Int
    public var failure: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// When a ready or failed export is removed.
    public var expiresAt: Date?
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, status, size, attempts, failure
        case userID = "user_id"
        case entriesDone = "entries_done"
        case entriesTotal = "entries_total"
        case bytesDone = "bytes_done"
        case bytesTotal = "bytes_total"
        case blobKey = "blob_key"
        case createdAt = "created_at"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case expiresAt = "expires_at"
        case updatedAt = "updated_at"
    }

    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let userID = Column(CodingKeys.userID)
        public static let status = Column(CodingKeys.status)
        public static let expiresAt = Column(CodingKeys.expiresAt)
    }

    /// `exports/u<user>/<id>.zip`: one prefix per person, so a purge finds every export.
    public static func blobKey(userID: Int64, exportID: Int64) -> String { "exports/u\(userID)/\(exportID).zip" }

    public func isExpired(at now: Date) -> Bool { self.expiresAt.map { $0 <= now } ?? false }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// What a person has, counted before an export starts, for its progress.
public struct DataExportTotals: Sendable, Equatable {
    public var images: Int
    public var imageBytes: Int64
    public var uploads: Int
    public var uploadBytes: Int64
}

extension AppDatabase {
    static func createExportTables(_ db: Database) throws {
        try db.create(table: "data_export") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().references("user", onDelete: .cascade)
            t.column("status", .text).notNull().defaults(to: "queued").check(sql: "status IN ('queued', 'running', 'ready', 'failed')")
            t.column("entries_done", .integer).notNull().defaults(to: 0).check(sql: "entries_done >= 0")
            t.column("entries_total", .integer).notNull().defaults(to: 0).check(sql: "entries_total >= 0")
            t.column("bytes_done", .integer).notNull().defaults(to: 0).check(sql: "bytes_done >= 0")
            t.column("bytes_total", .integer).notNull().defaults(to: 0).check(sql: "bytes_total >= 0")
            t.column("blob_key", .text).unique()
            t.column("size", .integer)
            t.column("attempts", .integer).notNull().defaults(to: 0)
            t.column("failure", .text)
            t.column("created_at", .datetime).notNull()
            t.column("started_at", .datetime)
            t.column("finished_at", .datetime)
            t.column("expires_at", .datetime)
            t.column("updated_at", .datetime).notNull()
            // Finished exports have an end and an expiry; a ready one has its archive.
            t.check(sql: "(status IN ('ready', 'failed')) = (finished_at IS NOT NULL)")
            t.check(sql: "(status IN ('ready', 'failed')) = (expires_at IS NOT NULL)")
            t.check(sql: "status <> 'ready' OR (blob_key IS NOT NULL AND size IS NOT NULL)")
            t.check(sql: "status <> 'failed' OR failure IS NOT NULL")
        }
        try db.create(index: "data_export_by_user", on: "data_export", columns: ["user_id", "id"])
        // One export at a time per person: a second press finds the running one.
        try db.execute(sql: """
            CREATE UNIQUE INDEX data_export_one_active ON data_export(user_id) WHERE status IN ('queued', 'running');
            CREATE INDEX data_export_by_expiry ON data_export(expires_at) WHERE expires_at IS NOT NULL;
            """)
    }

    // MARK: Writes, one transaction each

    /// Queues an export for the person, or returns the one already queued or running
    /// (`created` false), so pressing twice never builds twice.
    public func requestDataExport(userID: Int64, now: Date = Date()) async throws -> (export: DataExport, created: Bool) {
        try await self.writer.write { db in
            if let active = try Self.activeDataExport(db, userID: userID) { return (active, false) }
            var export = DataExport(
                id: nil, userID: userID, status: .queued, entriesDone: 0, entriesTotal: 0, bytesDone: 0, bytesTotal: 0, blobKey: nil,
                size: nil, attempts: 0, failure: nil, createdAt: now, startedAt: nil, finishedAt: nil, expiresAt: nil, updatedAt: now
            )
            try export.insert(db)
            return (export, true)
        }
    }

    static func activeDataExport(_ db: Database, userID: Int64) throws -> DataExport? {
        try DataExport.filter(DataExport.Columns.userID == userID)
            .filter([DataExport.Status.queued.rawValue, DataExport.Status.running.rawValue].contains(DataExport.Columns.status))
            .fetchOne(db)
    }

    /// Exports left `running` by a build that never finished (the process stopped or crashed):
    /// queued again to start over, or failed after `maximumAttempts` builds. A live build
    /// records progress at least twice a second, so only exports silent since `staleBefore`
    /// count as interrupted — a run in another process (`easel jobs run`) is left alone.
    @discardableResult
    public func requeueInterruptedDataExports(maximumAttempts: Int, retention: TimeInterval, staleBefore: Date, now: Date = Date()) async throws -> Int {
        try await self.writer.write { db in
            let interrupted = try DataExport.filter(DataExport.Columns.status == DataExport.Status.running.rawValue)
                .filter(Column("updated_at") < staleBefore).fetchAll(db)
            for var export in interrupted {
                if export.attempts >= maximumAttempts {
                    export.status = .failed
                    export.failure = "stopped \(export.attempts) times before finishing"
                    export.finishedAt = now
                    export.expiresAt = now.addingTimeInterval(retention)
                    try Self.insertDataRequest(db, userID: export.userID, kind: .export, outcome: "failed: \(export.failure!)", now: now)
                } else {
                    export.status = .queued
                }
                export.updatedAt = now
                try export.update(db)
            }
            return interrupted.count
        }
    }

    /// The oldest queued export, now running, with its counters reset and its totals set.
    public func claimNextDataExport(now: Date = Date()) async throws -> (DataExport, DataExportTotals)? {
        try await self.writer.write { db in
            guard var export = try DataExport.filter(DataExport.Columns.status == DataExport.Status.queued.rawValue)
                .order(DataExport.Columns.id).fetchOne(db)
            else { return nil }
            let totals = try Self.dataExportTotals(db, userID: export.userID)
            export.status = .running
            export.attempts += 1
            export.entriesDone = 0
            export.bytesDone = 0
            export.bytesTotal = totals.imageBytes + totals.uploadBytes
            export.startedAt = now
            export.updatedAt = now
            try export.update(db)
            return (export, totals)
        }
    }

    /// Progress of a running export, for the page.
    public func recordDataExportProgress(id: Int64, entriesDone: Int, entriesTotal: Int, bytesDone: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE data_export SET entries_done = ?, entries_total = ?, bytes_done = ?, bytes_total = max(bytes_total, ?), updated_at = ?
                    WHERE id = ? AND status = 'running'
                    """,
                arguments: [entriesDone, entriesTotal, bytesDone, bytesDone, now, id]
            )
        }
    }

    /// The archive is stored: the export is ready until `expiresAt`, and its mail is queued in
    /// the same transaction. False when this build (`attempt`) no longer owns the export.
    public func completeDataExport(
        id: Int64, attempt: Int, blobKey: String, size: Int64, entries: Int, missing: Int = 0, expiresAt: Date, mail: MailDraft?, now: Date = Date()
    ) async throws -> Bool {
        try await self.writer.write { db in
            guard var export = try DataExport.fetchOne(db, key: id), export.status == .running, export.attempts == attempt else { return false }
            export.status = .ready
            export.blobKey = blobKey
            export.size = size
            export.entriesDone = entries
            export.entriesTotal = entries
            export.bytesDone = max(export.bytesDone, export.bytesTotal)
            export.finishedAt = now
            export.expiresAt = expiresAt
            export.updatedAt = now
            try export.update(db)
            if let mail { try Self.enqueue(mail, db: db, now: now) }
            let note = missing > 0 ? ", \(missing) missing from storage" : ""
            try Self.insertDataRequest(db, userID: export.userID, kind: .export, outcome: "ready: \(entries) files, \(size) bytes\(note)", now: now)
            return true
        }
    }

    /// A build that cannot succeed (not one cut short by a stop): kept with its reason until `expiresAt`.
    public func failDataExport(id: Int64, reason: String, expiresAt: Date, now: Date = Date()) async throws {
        try await self.writer.write { db in
            guard var export = try DataExport.fetchOne(db, key: id), export.status.isActive else { return }
            export.status = .failed
            export.failure = reason
            export.finishedAt = now
            export.expiresAt = expiresAt
            export.updatedAt = now
            try export.update(db)
            try Self.insertDataRequest(db, userID: export.userID, kind: .export, outcome: "failed: \(reason)", now: now)
        }
    }

    /// Removes the row of an expired export, after its archive has been deleted from storage.
    public func deleteDataExport(id: Int64) async throws {
        try await self.writer.write { db in
            _ = try DataExport.deleteOne(db, key: id)
        }
    }

    // MARK: Reading

    public func dataExport(id: Int64) async throws -> DataExport? {
        try await self.writer.read { db in try DataExport.fetchOne(db, key: id) }
    }

    /// A person's exports, newest first.
    public func dataExports(userID: Int64, limit: Int = 10) async throws -> [DataExport] {
        try await self.writer.read { db in
            try DataExport.filter(DataExport.Columns.userID == userID).order(DataExport.Columns.id.desc).limit(limit).fetchAll(db)
        }
    }

    /// Ready or failed exports past their time.
    public func expiredDataExports(now: Date = Date(), limit: Int = 500) async throws -> [DataExport] {
        try await self.writer.read { db in
            try DataExport.filter(DataExport.Columns.expiresAt <= now).order(DataExport.Columns.expiresAt).limit(limit).fetchAll(db)
        }
    }

    static func dataExportTotals(_ db: Database, userID: Int64) throws -> DataExportTotals {
        let images = try Row.fetchOne(db, sql: "SELECT count(*), coalesce(sum(bytes), 0) FROM image WHERE user_id = ?", arguments: [userID])!
        let uploads = try Row.fetchOne(db, sql: "SELECT count(*), coalesce(sum(bytes), 0) FROM upload WHERE user_id = ?", arguments: [userID])!
        return DataExportTotals(images: images[0], imageBytes: images[1], uploads: uploads[0], uploadBytes: uploads[1])
    }

    // MARK: A person's records, oldest first, keyset-paged by id (for the archive)

    public func exportedTasks(userID: Int64, after: Int64, limit: Int) async throws -> [GenerationTask] {
        try await self.writer.read { db in
            try GenerationTask.filter(GenerationTask.Columns.userID == userID && GenerationTask.Columns.id > after)
                .order(GenerationTask.Columns.id).limit(limit).fetchAll(db)
        }
    }

    /// Which uploads each task used, in order.
    public func exportedTaskReferences(taskIDs: [Int64]) async throws -> [Int64: [Int64]] {
        guard !taskIDs.isEmpty else { return [:] }
        return try await self.writer.read { db in
            var references: [Int64: [Int64]] = [:]
            let rows = try Row.fetchAll(
                db, sql: "SELECT task_id, upload_id FROM task_reference WHERE task_id IN (\(taskIDs.map { _ in "?" }.joined(separator: ","))) ORDER BY task_id, position",
                arguments: StatementArguments(taskIDs)
            )
            for row in rows { references[row[0], default: []].append(row[1]) }
            return references
        }
    }

    public func exportedImages(userID: Int64, after: Int64, limit: Int) async throws -> [StoredImage] {
        try await self.writer.read { db in
            try StoredImage.filter(StoredImage.Columns.userID == userID && StoredImage.Columns.id > after)
                .order(StoredImage.Columns.id).limit(limit).fetchAll(db)
        }
    }

    public func exportedUploads(userID: Int64, after: Int64, limit: Int) async throws -> [Upload] {
        try await self.writer.read { db in
            try Upload.filter(Column("user_id") == userID && Column("id") > after).order(Column("id")).limit(limit).fetchAll(db)
        }
    }

    public func exportedLedger(userID: Int64, after: Int64, limit: Int) async throws -> [LedgerEntry] {
        try await self.writer.read { db in
            try LedgerEntry.filter(LedgerEntry.Columns.userID == userID && LedgerEntry.Columns.id > after)
                .order(LedgerEntry.Columns.id).limit(limit).fetchAll(db)
        }
    }

    public func exportedPayments(userID: Int64, after: Int64, limit: Int) async throws -> [Payment] {
        try await self.writer.read { db in
            try Payment.filter(Column("user_id") == userID && Column("id") > after).order(Column("id")).limit(limit).fetchAll(db)
        }
    }
}
