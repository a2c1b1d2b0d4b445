import Foundation

/// A piece of background work the scheduler runs on a timer, and `easel jobs run NAME` runs once.
/// `run` must be idempotent: a run may be repeated after a crash.
public struct Job: Sendable {
    public var name: String
    public var summary: String
    public var interval: Duration
    /// Each wait is the interval stretched or shrunk by up to this fraction, so several
    /// instances (or jobs) do not all wake at the same moment.
    public var jitter: Double
    /// Frequent jobs (the mail queue) log successful runs at debug level only.
    public var quiet: Bool
    public var run: @Sendable () async throws -> Void

    public init(name: String, summary: String, interval: Duration, jitter: Double = 0.1, quiet: Bool = false, run: @escaping @Sendable () async throws -> Void) {
        precondition(interval > .zero, "a job needs a positive interval")
        precondition((0..<1).contains(jitter), "jitter is a fraction below 1")
        self.name = name
        self.summary = summary
        self.interval = interval
        self.jitter = jitter
        self.quiet = quiet
        self.run = run
    }
}
