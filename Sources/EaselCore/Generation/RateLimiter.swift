import Foundation
import Synchronization

/// Token buckets by key ("user:12", "ip:203.0.113.9", "key:7"): each holds up to `capacity`
/// tokens and gains `capacity` per `period`. In memory: a restart forgives everyone, which is
/// the right failure for a limit meant to smooth bursts, not to bill.
public final class RateLimiter: Sendable {
    public struct Rule: Sendable, Equatable {
        public var capacity: Int
        public var period: Duration

        public init(capacity: Int, per period: Duration) {
            self.capacity = capacity
            self.period = period
        }

        /// Zero capacity turns the limit off.
        public var isUnlimited: Bool { self.capacity <= 0 }

        var refillPerSecond: Double {
            Double(self.capacity) / max(self.period.seconds, 0.001)
        }
    }

    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    private let clock = ContinuousClock()

    public init() {}

    /// Takes one token from every key's bucket, or none when any bucket is empty; then it
    /// returns how long until that bucket has a token again.
    public func take(_ keys: [(key: String, rule: Rule)]) -> Duration? {
        let now = self.clock.now
        return self.buckets.withLock { buckets in
            var wait: Duration?
            var refilled: [(String, Bucket)] = []
            for (key, rule) in keys where !rule.isUnlimited {
                var bucket = buckets[key] ?? Bucket(tokens: Double(rule.capacity), updated: now)
                let elapsed = bucket.updated.duration(to: now).seconds
                bucket.tokens = min(Double(rule.capacity), bucket.tokens + elapsed * rule.refillPerSecond)
                bucket.updated = now
                if bucket.tokens < 1 {
                    let needed = (1 - bucket.tokens) / rule.refillPerSecond
                    let duration = Duration.milliseconds(Int((needed * 1000).rounded(.up)))
                    wait = max(wait ?? .zero, duration)
                }
                refilled.append((key, bucket))
            }
            for (key, var bucket) in refilled {
                if wait == nil { bucket.tokens -= 1 }
                buckets[key] = bucket
            }
            // Forget full buckets now and then, so the table does not grow without end.
            if buckets.count > 10_000 {
                buckets = buckets.filter { $0.value.tokens < 1 || $0.value.updated.duration(to: now) < .seconds(3600) }
            }
            return wait
        }
    }
}
