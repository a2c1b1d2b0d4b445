import Dispatch
import EaselStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Runs jobs from `DispatchSourceTimer`s. A job never overlaps itself (the database refuses a
/// second running row), every run is recorded in `job_run`, and on shutdown the timers stop
/// and running jobs are allowed to finish.
public final class Scheduler: Service, Sendable {
    public enum RunError: Error, CustomStringConvertible, Equatable {
        case unknownJob(String, known: [String])
        case alreadyRunning(String)

        public var description: String {
            switch self {
            case .unknownJob(let name, let known): "no job named \"\(name)\"; jobs: \(known.joined(separator: ", "))"
            case .alreadyRunning(let name): "job \"\(name)\" is already running; try again when it has finished"
            }
        }
    }

    public let jobs: [Job]
    private let database: AppDatabase
    private let logger: Logger
    /// The shortest wait before a job's first timer run after start-up.
    private let startDelay: Duration
    private let queue = DispatchQueue(label: "easel.scheduler")
    private let state = Mutex(State())

    private struct State {
        var timers: [String: any DispatchSourceTimer] = [:]
        var running: [String: Task<Void, Never>] = [:]
        /// Jobs woken while running: they run again as soon as they finish.
        var wokenWhileRunning: Set<String> = []
        var stopped = false
    }

    public init(jobs: [Job], database: AppDatabase, logger: Logger, startDelay: Duration = .seconds(30)) {
        precondition(Set(jobs.map(\.name)).count == jobs.count, "job names are unique")
        self.jobs = jobs
        self.database = database
        self.logger = logger
        self.startDelay = startDelay
    }

    /// Service entry point: arms every timer, waits for graceful shutdown, then drains.
    public func run() async throws {
        try await self.database.markAbandonedJobRunsInterrupted()
        for job in self.jobs {
            let last = try await self.database.lastJobStart(job.name)
            self.arm(job, after: self.firstDelay(for: job, lastStart: last))
        }
        self.logger.info("scheduler started", metadata: ["jobs": "\(self.jobs.map(\.name).joined(separator: ","))"])
        try? await gracefulShutdown()
        await self.stop()
    }

    /// Stops the timers and waits for runs under way to finish.
    public func stop() async {
        let running = self.state.withLock { state -> [Task<Void, Never>] in
            state.stopped = true
            for timer in state.timers.values { timer.cancel() }
            state.timers.removeAll()
            return Array(state.running.values)
        }
        for task in running { await task.value }
        self.logger.info("scheduler stopped")
    }

    /// Runs `name` now (for `easel jobs run` and tests) and returns the recorded run.
    @discardableResult
    public func runNow(_ name: String) async throws -> JobRun {
        guard let job = self.jobs.first(where: { $0.name == name }) else {
            throw RunError.unknownJob(name, known: self.jobs.map(\.name))
        }
        guard let run = try await self.execute(job, trigger: .manual) else { throw RunError.alreadyRunning(name) }
        return run
    }

    /// Asks for a timer run of `name` as soon as possible (new mail was queued, say). Safe to
    /// call often: a running job runs once more after it finishes, never twice at once.
    public func wake(_ name: String) {
        guard let job = self.jobs.first(where: { $0.name == name }) else { return }
        let running = self.state.withLock { state -> Bool in
            guard !state.stopped, state.timers[name] != nil || state.running[name] != nil else { return true }
            if state.running[name] != nil {
                state.wokenWhileRunning.insert(name)
                return true
            }
            return false
        }
        if !running { self.arm(job, after: .zero) }
    }

    /// Runs the job once and records it; nil when a run of it is already going on.
    private func execute(_ job: Job, trigger: JobRun.Trigger) async throws -> JobRun? {
        guard let started = try await self.database.recordJobStarted(job.name, trigger: trigger) else {
            self.logger.notice("job skipped: already running", metadata: ["job": "\(job.name)"])
            return nil
        }
        let clock = ContinuousClock()
        let begin = clock.now
        var outcome = JobRun.Outcome.succeeded
        var message: String?
        do {
            try await job.run()
        } catch {
            outcome = .failed
            message = String(describing: error)
        }
        let elapsed = clock.now - begin
        try await self.database.recordJobFinished(started, outcome: outcome, error: message)
        var metadata: Logger.Metadata = ["job": "\(job.name)", "trigger": "\(trigger.rawValue)", "duration_ms": "\(elapsed.milliseconds)"]
        if let message { metadata["error"] = "\(message)" }
        if outcome == .failed {
            self.logger.error("job failed", metadata: metadata)
        } else {
            self.logger.log(level: job.quiet ? .debug : .info, "job finished", metadata: metadata)
        }
        var finished = started
        finished.outcome = outcome
        finished.error = message
        return finished
    }

    private func firstDelay(for job: Job, lastStart: Date?) -> Duration {
        // A restart should not push a daily job back by a day: plan from the last run. A job
        // that never ran is due now (a new instance gets its first backup within a minute).
        guard let lastStart else { return self.startDelay }
        let due = lastStart.addingTimeInterval(job.interval.seconds)
        let wait = Duration.seconds(max(0, due.timeIntervalSinceNow))
        return max(self.startDelay, wait)
    }

    private func jittered(_ job: Job) -> Duration {
        let factor = 1 + Double.random(in: -job.jitter...job.jitter)
        return .seconds(job.interval.seconds * factor)
    }

    /// One-shot timers re-armed after each run, so a slow run delays the next instead of
    /// piling up behind it.
    private func arm(_ job: Job, after delay: Duration) {
        self.state.withLock { state in
            guard !state.stopped else { return }
            let timer = DispatchSource.makeTimerSource(queue: self.queue)
            timer.schedule(deadline: .now() + .nanoseconds(Int(delay.nanoseconds)), leeway: .milliseconds(100))
            timer.setEventHandler { [weak self] in self?.fire(job) }
            state.timers[job.name]?.cancel()
            state.timers[job.name] = timer
            timer.resume()
        }
    }

    private func fire(_ job: Job) {
        self.state.withLock { state in
            guard !state.stopped, state.running[job.name] == nil else { return }
            state.running[job.name] = Task {
                do {
                    _ = try await self.execute(job, trigger: .timer)
                } catch {
                    self.logger.error("could not record job run", metadata: ["job": "\(job.name)", "error": "\(error)"])
                }
                let again = self.state.withLock { state -> Bool in
                    state.running.removeValue(forKey: job.name)
                    return state.wokenWhileRunning.remove(job.name) != nil
                }
                self.arm(job, after: again ? .zero : self.jittered(job))
            }
        }
    }
}


