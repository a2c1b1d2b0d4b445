import Foundation
import GRDB

/// One run of a scheduled job, as recorded in `job_run`.
public struct JobRun: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord, Identifiable {
    public static let databaseTableName = "job_run"

    public enum Outcome: String, Codable, Sendable {
        case running, succeeded, failed
        /// The process stopped while the run was going on.
        case interrupted
    }

    public enum Trigger: String, Codable, Sendable {
        case timer, manual
    }

    public var id: Int64?
    public var job: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var outcome: Outcome
    public var error: String?
    public var trigger: Trigger

    public enum Columns {
        static let job = Column(CodingKeys.job)
        static let startedAt = Column(CodingKeys.startedAt)
        static let outcome = Column(CodingKeys.outcome)
    }

    enum CodingKeys: String, CodingKey {
        case id, job, outcome, error, trigger
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

extension AppDatabase {
    /// Records that `job` started; returns the run to finish later, or nil when a run of the
    /// same job is already going on (in this process or another).
    public func recordJobStarted(_ job: String, trigger: JobRun.Trigger, at date: Date = Date()) async throws -> JobRun? {
        try await self.writer.write { db in
            var run = JobRun(id: nil, job: job, startedAt: date, finishedAt: nil, outcome: .running, error: nil, trigger: trigger)
            do {
                try run.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                return nil
            }
            return run
        }
    }

    /// When `job` last started, whatever the outcome; the scheduler plans the next run from it.
    public func lastJobStart(_ job: String) async throws -> Date? {
        try await self.writer.read { db in
            try Date.fetchOne(db, JobRun.filter(JobRun.Columns.job == job).select(max(JobRun.Columns.startedAt)))
        }
    }

    /// Records how a run ended.
    public func recordJobFinished(_ run: JobRun, outcome: JobRun.Outcome, error: String?, at date: Date = Date()) async throws {
        precondition(outcome != .running, "a finished run has an outcome")
        try await self.writer.write { db in
            var finished = run
            finished.finishedAt = date
            finished.outcome = outcome
            finished.error = error.map { String($0.prefix(2000)) }
            try finished.update(db)
        }
    }

    /// At start-up: runs left "running" by a process that stopped are marked interrupted.
    @discardableResult
    public func markAbandonedJobRunsInterrupted(at date: Date = Date()) async throws -> Int {
        try await self.writer.write { db in
            try JobRun.filter(JobRun.Columns.outcome == JobRun.Outcome.running.rawValue)
                .updateAll(db, Column("outcome").set(to: JobRun.Outcome.interrupted.rawValue), Column("finished_at").set(to: date))
        }
    }

    /// The newest runs, newest first; of one job when `job` is given.
    public func recentJobRuns(job: String? = nil, limit: Int = 20) async throws -> [JobRun] {
        try await self.writer.read { db in
            var request = JobRun.all()
            if let job { request = request.filter(JobRun.Columns.job == job) }
            return try request.order(JobRun.Columns.startedAt.desc, Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    /// Trims the history so it does not grow for ever: keeps the newest `keep` runs per job.
    @discardableResult
    public func pruneJobRuns(keepingPerJob keep: Int) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    DELETE FROM job_run WHERE id IN (
                      SELECT id FROM (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) AS n FROM job_run
                      ) WHERE n > ?
                    )
                    """,
                arguments: [keep]
            )
            return db.changesCount
        }
    }
}
