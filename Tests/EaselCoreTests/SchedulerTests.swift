import EaselStore
import EaselTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import EaselCore

/// Counts runs and the most runs seen at the same time.
final class RunTracker: Sendable {
    private let state = Mutex((runs: 0, current: 0, peak: 0))

    func begin() { self.state.withLock { $0.runs += 1; $0.current += 1; $0.peak = max($0.peak, $0.current) } }
    func end() { self.state.withLock { $0.current -= 1 } }
    var runs: Int { self.state.withLock { $0.runs } }
    var peak: Int { self.state.withLock { $0.peak } }
    var current: Int { self.state.withLock { $0.current } }
}

/// A gate a job waits at until the test opens it.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

func waitUntil(_ timeout: Duration = .seconds(120), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

@Suite("Scheduler")
struct SchedulerTests {
    let logger = Logger(label: "test")

    @Test("A manual run is recorded with its outcome and error")
    func manualRunsAreRecorded() async throws {
        struct DiskFull: Error, CustomStringConvertible { var description: String { "disk full" } }
        let database = try AppDatabase.inMemory()
        let scheduler = Scheduler(
            jobs: [
                Job(name: "ok", summary: "", interval: .seconds(3600)) {},
                Job(name: "broken", summary: "", interval: .seconds(3600)) { throw DiskFull() },
            ],
            database: database, logger: self.logger
        )
        let ok = try await scheduler.runNow("ok")
        #expect(ok.outcome == .succeeded)
        let broken = try await scheduler.runNow("broken")
        #expect(broken.outcome == .failed)
        #expect(broken.error == "disk full")
        let recorded = try await database.recentJobRuns(job: "broken")
        #expect(recorded.count == 1)
        #expect(recorded[0].outcome == .failed)
        #expect(recorded[0].error == "disk full")
        #expect(recorded[0].trigger == .manual)
        #expect(recorded[0].finishedAt != nil)
        await #expect(throws: Scheduler.RunError.unknownJob("nope", known: ["ok", "broken"])) { try await scheduler.runNow("nope") }
    }

    @Test("A job never overlaps itself: a second run while one is going on is refused")
    func manualRunsDoNotOverlap() async throws {
        let database = try AppDatabase.inMemory()
        let gate = Gate()
        let tracker = RunTracker()
        let scheduler = Scheduler(
            jobs: [Job(name: "slow", summary: "", interval: .seconds(3600)) { tracker.begin(); await gate.wait(); tracker.end() }],
            database: database, logger: self.logger
        )
        let first = Task { try await scheduler.runNow("slow") }
        #expect(try await waitUntil { tracker.current == 1 })
        await #expect(throws: Scheduler.RunError.alreadyRunning("slow")) { try await scheduler.runNow("slow") }
        gate.open()
        #expect(try await first.value.outcome == .succeeded)
        #expect(tracker.runs == 1)
        // Once finished, it can run again.
        #expect(try await scheduler.runNow("slow").outcome == .succeeded)
    }

    @Test("Timers run jobs repeatedly, never two at once, and record each run")
    func timersRunWithoutOverlap() async throws {
        let database = try AppDatabase.inMemory()
        let tracker = RunTracker()
        // Each run takes longer than the interval: overlap would show as peak > 1.
        let job = Job(name: "tick", summary: "", interval: .milliseconds(50), jitter: 0.2) {
            tracker.begin()
            try await Task.sleep(for: .milliseconds(120))
            tracker.end()
        }
        let scheduler = Scheduler(jobs: [job], database: database, logger: self.logger, startDelay: .milliseconds(10))
        let group = ServiceGroup(services: [scheduler], logger: self.logger)
        let running = Task { try await group.run() }
        #expect(try await waitUntil { tracker.runs >= 3 })
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(tracker.peak == 1)
        #expect(tracker.current == 0, "shutdown waited for the run under way")
        let runsAtStop = tracker.runs
        let recorded = try await database.recentJobRuns(job: "tick", limit: 100)
        #expect(recorded.count == runsAtStop)
        #expect(recorded.allSatisfy { $0.outcome == .succeeded && $0.trigger == .timer })
        // After shutdown no timer fires again.
        try await Task.sleep(for: .milliseconds(300))
        #expect(tracker.runs == runsAtStop)
    }

    @Test("Shutdown lets a running job finish before it returns")
    func shutdownDrainsRunningJobs() async throws {
        let database = try AppDatabase.inMemory()
        let gate = Gate()
        let tracker = RunTracker()
        let job = Job(name: "long", summary: "", interval: .seconds(3600)) { tracker.begin(); await gate.wait(); tracker.end() }
        let scheduler = Scheduler(jobs: [job], database: database, logger: self.logger, startDelay: .milliseconds(1))
        let group = ServiceGroup(services: [scheduler], logger: self.logger)
        let running = Task { try await group.run() }
        #expect(try await waitUntil { tracker.current == 1 })
        await group.triggerGracefulShutdown()
        try await Task.sleep(for: .milliseconds(100))
        #expect(tracker.current == 1, "still running: shutdown waits")
        gate.open()
        try await running.value
        #expect(tracker.current == 0)
        #expect(try await database.recentJobRuns(job: "long").first?.outcome == .succeeded)
    }

    @Test("After a restart, a job that ran recently waits for the rest of its interval")
    func plansFromLastRun() async throws {
        let database = try AppDatabase.inMemory()
        let tracker = RunTracker()
        let previous = try #require(try await database.recordJobStarted("daily", trigger: .timer, at: Date().addingTimeInterval(-60)))
        try await database.recordJobFinished(previous, outcome: .succeeded, error: nil)
        let scheduler = Scheduler(
            jobs: [Job(name: "daily", summary: "", interval: .seconds(86400)) { tracker.begin(); tracker.end() }],
            database: database, logger: self.logger, startDelay: .milliseconds(1)
        )
        let group = ServiceGroup(services: [scheduler], logger: self.logger)
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(300))
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(tracker.runs == 0)
    }
}
