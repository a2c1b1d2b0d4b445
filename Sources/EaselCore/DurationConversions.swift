import Foundation

extension Duration {
    public var seconds: TimeInterval {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    public var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Whole seconds, rounded up and at least 1: what a `Retry-After` header says.
    public var retryAfterSeconds: Int {
        let (seconds, attoseconds) = self.components
        return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}
