import Foundation

/// One document fetched from the provider (discovery or key set), kept until it expires.
///
/// Callers that arrive while a fetch is running wait for that fetch instead of starting their
/// own, so a burst of sign-ins after expiry costs the provider one request.
actor OIDCCache<Value: Sendable> {
    struct Fetched: Sendable {
        var value: Value
        var lifetime: TimeInterval
    }

    typealias Fetch = @Sendable () async -> Result<Fetched, OIDCError>

    private var stored: (value: Value, expiresAt: Date)?
    private var running: Task<Result<Fetched, OIDCError>, Never>?
    private var lastEarlyRefresh: Date?

    struct Lookup: Sendable {
        var value: Value
        /// true when this call fetched (or joined a fetch), so asking again would gain nothing.
        var fetchedNow: Bool
    }

    /// The stored value while it is fresh, else a new one.
    func value(now: Date, fetch: @escaping Fetch) async -> Result<Lookup, OIDCError> {
        if let stored = self.stored, now < stored.expiresAt {
            return .success(Lookup(value: stored.value, fetchedNow: false))
        }
        return await self.fetchShared(now: now, fetch: fetch).map { Lookup(value: $0, fetchedNow: true) }
    }

    /// Fetches again before the stored value expires, unless that was already done less than
    /// `minimumInterval` ago; `nil` then.
    func refreshEarly(now: Date, minimumInterval: TimeInterval, fetch: @escaping Fetch) async -> Result<Value, OIDCError>? {
        if let last = self.lastEarlyRefresh, now.timeIntervalSince(last) < minimumInterval, now >= last {
            return nil
        }
        self.lastEarlyRefresh = now
        return await self.fetchShared(now: now, fetch: fetch)
    }

    private func fetchShared(now: Date, fetch: @escaping Fetch) async -> Result<Value, OIDCError> {
        let task: Task<Result<Fetched, OIDCError>, Never>
        if let running = self.running {
            task = running
        } else {
            task = Task { await fetch() }
            self.running = task
        }
        let result = await task.value
        if self.running == task {
            self.running = nil
            if case .success(let fetched) = result {
                self.stored = (fetched.value, now.addingTimeInterval(fetched.lifetime))
            }
        }
        return result.map(\.value)
    }
}
