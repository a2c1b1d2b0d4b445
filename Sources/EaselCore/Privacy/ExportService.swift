import EaselBlobs
import EaselStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// "Export everything" (the right to portability): a ZIP of a person's originals, uploads,
/// picture and records, built in the background by the `exports` job, streamed straight into
/// the blob store (`exports/u<user>/<id>.zip`), mailed when ready and removed after the
/// retention period by the `export-expiry` job.
///
/// Memory stays flat: the archive is pulled through `ZipStreamWriter` one chunk at a time by
/// the blob store's streaming put (a disk file, or an S3 multipart upload of one part at a
/// time), and records are read a page at a time. Every state lives in `data_export`, so a
/// build cut short by a stop or a crash is started again from the beginning by the next run.
///
/// A `Service` only so that a graceful shutdown can cut a long build short (the next start
/// builds it again) instead of making the scheduler wait for it.
public final class ExportService: Service, Sendable {
    public struct Settings: Sendable {
        /// How long a finished export is kept (EASEL_EXPORT_RETENTION_DAYS).
        public var retentionDays: Int
        /// Builds an export may take before it is given up (each restart starts one).
        public var maximumAttempts: Int
        /// Every entry with ZIP64 fields (tests of that path).
        public var forceZip64: Bool
        /// A `running` export without progress for this long was cut short (a live build
        /// reports progress every half second).
        public var staleAfter: TimeInterval

        public init(retentionDays: Int = 7, maximumAttempts: Int = 3, forceZip64: Bool = false, staleAfter: TimeInterval = 120) {
            self.retentionDays = retentionDays
            self.maximumAttempts = maximumAttempts
            self.forceZip64 = forceZip64
            self.staleAfter = staleAfter
        }

        public var retention: TimeInterval { TimeInterval(self.retentionDays) * 86400 }
    }

    public static let buildJobName = "exports"
    public static let expiryJobName = "export-expiry"

    public let settings: Settings
    private let database: AppDatabase
    private let blobs: any BlobStore
    private let mails: AccountMails
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let lastStatistics = Mutex<ExportStatistics?>(nil)
    private let currentRun = Mutex<Task<Void, any Error>?>(nil)
    /// Wakes the mail job, so the "export ready" mail goes at once (set once the scheduler exists).
    private let mailQueued = Mutex<@Sendable () -> Void>({})

    public func onMailQueued(_ wake: @escaping @Sendable () -> Void) {
        self.mailQueued.withLock { $0 = wake }
    }

    public init(settings: Settings, database: AppDatabase, blobs: any BlobStore, mails: AccountMails, logger: Logger) {
        self.settings = settings
        self.database = database
        self.blobs = blobs
        self.mails = mails
        self.logger = logger
    }

    /// What the last build measured (the benchmark and the memory test read it).
    public var statisticsOfLastBuild: ExportStatistics? { self.lastStatistics.withLock { $0 } }

    // MARK: Service

    /// Waits for graceful shutdown, then makes a build under way stop at its next chunk.
    public func run() async throws {
        try? await gracefulShutdown()
        self.stop()
    }

    /// A build under way stops at its next chunk, leaving its export `running` for the next start.
    public func stop() {
        self.stopping.store(true, ordering: .relaxed)
    }

    // MARK: Requests

    /// Queues an export for `user`, or returns the one already queued or running.
    public func request(for user: User, now: Date = Date()) async throws -> (export: DataExport, created: Bool) {
        try await self.database.requestDataExport(userID: user.id!, now: now)
    }

    /// The person's exports, newest first.
    public func exports(userID: Int64) async throws -> [DataExport] {
        try await self.database.dataExports(userID: userID)
    }

    /// The person's own export, or nil (someone else's is as good as missing).
    public func export(id: Int64, ownedBy userID: Int64) async throws -> DataExport? {
        guard let export = try await self.database.dataExport(id: id), export.userID == userID else { return nil }
        return export
    }

    // MARK: Jobs

    public func jobs(buildInterval: Duration = .seconds(60), expiryInterval: Duration = .seconds(3600)) -> [Job] {
        [
            Job(name: Self.buildJobName, summary: "Build requested \"Export everything\" archives (woken at each request)", interval: buildInterval, quiet: true) {
                try await self.runPending()
            },
            Job(name: Self.expiryJobName, summary: "Remove exports \(self.settings.retentionDays) days after they were made", interval: expiryInterval) {
                try await self.removeExpired()
            },
        ]
    }

    /// The `exports` job: restarts builds a stop or crash cut short (silent for `staleAfter`),
    /// then builds every queued export, one after the other.
    public func runPending(now: @escaping @Sendable () -> Date = Date.init) async throws {
        // One run at a time in this process too (a woken job beside a direct call, in tests or
        // `easel jobs run`): a second caller waits for the run under way, then looks again.
        while true {
            let (run, mine) = self.currentRun.withLock { current -> (Task<Void, any Error>, Bool) in
                if let current { return (current, false) }
                let run = Task { try await self.runPendingOnce(now: now) }
                current = run
                return (run, true)
            }
            if !mine {
                _ = try? await run.value
                continue
            }
            let result = await run.result
            self.currentRun.withLock { $0 = nil }
            return try result.get()
        }
    }

    private func runPendingOnce(now: @escaping @Sendable () -> Date) async throws {
        let started = now()
        let requeued = try await self.database.requeueInterruptedDataExports(
            maximumAttempts: self.settings.maximumAttempts, retention: self.settings.retention,
            staleBefore: started.addingTimeInterval(-self.settings.staleAfter), now: started
        )
        if requeued > 0 { self.logger.notice("restarting interrupted exports", metadata: ["count": "\(requeued)"]) }
        while !self.stopping.load(ordering: .relaxed), let (export, totals) = try await self.database.claimNextDataExport(now: now()) {
            do {
                try await self.build(export, totals: totals, now: now)
            } catch is CancellationError {
                // Stopping: the export stays `running`, and the next run starts it again.
                return
            }
        }
    }

    /// Builds one claimed export. A stop leaves it `running` (to be built again); any other
    /// failure marks it failed with a reason the person can read.
    func build(_ export: DataExport, totals: DataExportTotals, now: @escaping @Sendable () -> Date) async throws {
        let id = export.id!
        let key = DataExport.blobKey(userID: export.userID, exportID: id)
        guard let user = try await self.database.user(id: export.userID) else { return }
        let started = ContinuousClock.now
        let plan = ExportArchivePlan(user: user, database: self.database, blobs: self.blobs, siteName: self.mails.siteName, now: now())
        let database = self.database
        let lastReport = Mutex(ContinuousClock.now - .seconds(60))
        let producer = ExportArchiveProducer(
            plan: plan, totals: totals, forceZip64: self.settings.forceZip64,
            shouldStop: { [self] in self.stopping.load(ordering: .relaxed) },
            progress: { progress in
                // At most a few writes a second, and always the last file.
                let due = lastReport.withLock { last in
                    guard ContinuousClock.now - last >= .milliseconds(500) || progress.entriesDone == progress.entriesTotal else { return false }
                    last = .now
                    return true
                }
                guard due else { return }
                try? await database.recordDataExportProgress(
                    id: id, entriesDone: progress.entriesDone, entriesTotal: progress.entriesTotal, bytesDone: progress.bytesDone, now: now()
                )
            }
        )
        let info: BlobInfo
        do {
            info = try await self.blobs.put(try BlobKey(key), body: producer.stream(), contentType: "application/zip")
        } catch {
            if error is CancellationError || self.stopping.load(ordering: .relaxed) {
                self.logger.notice("export interrupted; it starts again at the next run", metadata: ["export": "\(id)"])
                throw CancellationError()
            }
            self.logger.error("export failed", metadata: ["export": "\(id)", "error": "\(error)"])
            try await self.database.failDataExport(
                id: id, reason: Self.reason(for: error), expiresAt: now().addingTimeInterval(self.settings.retention), now: now()
            )
            return
        }
        let statistics = producer.statistics
        self.lastStatistics.withLock { $0 = statistics }
        let finishedAt = now()
        let expiresAt = finishedAt.addingTimeInterval(self.settings.retention)
        let mail = self.mails.exportReady(to: user, exportID: id, size: Int64(info.size), expiresAt: expiresAt)
        let completed = try await self.database.completeDataExport(
            id: id, attempt: export.attempts, blobKey: key, size: Int64(info.size), entries: statistics.entries, missing: statistics.missing.count, expiresAt: expiresAt, mail: mail,
            now: finishedAt
        )
        if !completed {
            // Removed while it was being built (the account was purged): drop the archive too.
            if try await self.database.dataExport(id: id) == nil { try? await self.blobs.delete(try BlobKey(key)) }
            return
        }
        self.mailQueued.withLock { $0 }()
        self.logger.info(
            "export ready",
            metadata: [
                "export": "\(id)", "entries": "\(statistics.entries)", "bytes": "\(info.size)", "duration_ms": "\((ContinuousClock.now - started).milliseconds)",
                "largest_buffer": "\(max(statistics.largestInput, statistics.largestOutput))",
            ]
        )
    }

    static func reason(for error: any Error) -> String {
        if let blobError = error as? BlobError { return "storage: \(blobError.description)" }
        return String(describing: error)
    }

    /// The `export-expiry` job: deletes each expired archive, then its row (in that order, so a
    /// crash in between leaves a row the next run finishes, never an archive nobody knows of).
    @discardableResult
    public func removeExpired(now: Date = Date()) async throws -> Int {
        var removed = 0
        while true {
            let expired = try await self.database.expiredDataExports(now: now, limit: 200)
            if expired.isEmpty { return removed }
            for export in expired {
                if let key = export.blobKey {
                    try await self.blobs.delete(try BlobKey(key))
                }
                try await self.database.deleteDataExport(id: export.id!)
                removed += 1
            }
        }
    }
}
