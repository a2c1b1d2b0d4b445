import Crypto
import EaselStore
import Foundation
import Logging
import ServiceLifecycle

/// Buffers request-log rows and page views in memory and writes them in batches (after a
/// second, or at once when a batch is full), so a request never waits on a database write.
/// Also holds the day's visitor salt, in memory only: it is replaced at the first page view of
/// each UTC day and never written anywhere, so once a day is over nobody (the operator
/// included) can recompute that day's visitor hashes from an address.
public actor TrafficRecorder: Service {
    public struct Settings: Sendable {
        /// Write the request log (EASEL_LOG_RETENTION_DAYS above zero).
        public var logRequests: Bool
        /// Count page views (EASEL_ANALYTICS=on).
        public var analytics: Bool
        public var flushAfter: Duration
        public var batchSize: Int
        /// Past this many waiting rows (the database is stuck) new ones are dropped, not kept.
        public var maximumBuffered: Int

        public init(logRequests: Bool, analytics: Bool, flushAfter: Duration = .seconds(1), batchSize: Int = 500, maximumBuffered: Int = 20_000) {
            self.logRequests = logRequests
            self.analytics = analytics
            self.flushAfter = flushAfter
            self.batchSize = batchSize
            self.maximumBuffered = maximumBuffered
        }
    }

    public nonisolated let settings: Settings
    private let database: AppDatabase
    private let logger: Logger
    private var requests: [RequestLogEntry] = []
    private var views: [PageViewEntry] = []
    private var screens: [(token: String, bucket: String)] = []
    private var flushScheduled = false
    private var flushingNow = false
    private var dropped = 0
    private var salt: (day: String, bytes: SymmetricKey)?

    public init(settings: Settings, database: AppDatabase, logger: Logger) {
        self.settings = settings
        self.database = database
        self.logger = logger
    }

    /// Service entry point: waits for shutdown, then writes what is still buffered.
    public func run() async throws {
        try? await gracefulShutdown()
        await self.flush()
    }

    public func logRequest(_ entry: RequestLogEntry) {
        guard self.settings.logRequests, self.hasRoom() else { return }
        self.requests.append(entry)
        self.scheduleFlush()
    }

    public func recordView(_ view: PageViewEntry) {
        guard self.settings.analytics, self.hasRoom() else { return }
        self.views.append(view)
        self.scheduleFlush()
    }

    /// The beacon's screen size for the page view that handed out `token`.
    public func recordScreen(token: String, bucket: String) {
        guard self.settings.analytics else { return }
        if let index = self.views.firstIndex(where: { $0.beaconToken == token }) {
            if self.views[index].screen == nil {
                self.views[index].screen = bucket
                self.views[index].beaconToken = nil
            }
            return
        }
        guard self.hasRoom() else { return }
        self.screens.append((token, bucket))
        self.scheduleFlush()
    }

    /// SHA-256(salt of `at`'s UTC day ‖ network ‖ user agent). A new day gets a new random
    /// salt and the old one is forgotten; nil for a time before the current salt's day, whose
    /// salt is gone.
    public func visitorHash(network: String, userAgent: String, at: Date) -> Data? {
        let day = UTCDay.string(at)
        if let salt = self.salt, salt.day > day { return nil }
        if self.salt?.day != day { self.salt = (day, SymmetricKey(size: .bits256)) }
        var hasher = SHA256()
        self.salt!.bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        hasher.update(data: Data(network.utf8))
        hasher.update(data: [0])
        hasher.update(data: Data(userAgent.utf8))
        return Data(hasher.finalize())
    }

    /// The days for which a salt is held (at most one): for tests and the privacy docs' claim.
    public var saltDays: [String] { self.salt.map { [$0.day] } ?? [] }

    /// Writes everything buffered now.
    public func flush() async {
        self.flushScheduled = false
        self.flushingNow = false
        let requests = self.requests
        let views = self.views
        let screens = self.screens
        self.requests = []
        self.views = []
        self.screens = []
        guard !requests.isEmpty || !views.isEmpty || !screens.isEmpty else { return }
        do {
            try await self.database.recordTraffic(requests: requests, views: views, screens: screens)
        } catch {
            self.logger.error(
                "could not write the request log and page views", metadata: ["rows": "\(requests.count + views.count)", "error": "\(error)"])
        }
        if self.dropped > 0 {
            self.logger.warning("request log rows dropped while the database was slow", metadata: ["rows": "\(self.dropped)"])
            self.dropped = 0
        }
    }

    private func hasRoom() -> Bool {
        guard self.requests.count + self.views.count + self.screens.count < self.settings.maximumBuffered else {
            self.dropped += 1
            return false
        }
        return true
    }

    private func scheduleFlush() {
        let pending = self.requests.count + self.views.count + self.screens.count
        if pending >= self.settings.batchSize {
            guard !self.flushingNow else { return }
            self.flushingNow = true
            Task { await self.flush() }
            return
        }
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        let delay = self.settings.flushAfter
        Task {
            try? await Task.sleep(for: delay)
            await self.flush()
        }
    }
}
