import Testing

/// A suite trait that starts one test peer before the suite it marks, makes it `current`'s value
/// while the suite runs, and stops it after, whether or not the suite threw.
///
/// It takes the task-local rather than owning one because a generic type cannot have a static
/// stored property (which `@TaskLocal` needs): each suite declares its own and passes `$peer`.
public struct PeerScope<Peer: Sendable>: SuiteTrait, TestScoping {
    private let current: TaskLocal<Peer?>
    private let start: @Sendable () async throws -> Peer
    private let stop: @Sendable (Peer) async -> Void

    public init(
        _ current: TaskLocal<Peer?>,
        start: @escaping @Sendable () async throws -> Peer,
        stop: @escaping @Sendable (Peer) async -> Void
    ) {
        self.current = current
        self.start = start
        self.stop = stop
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let peer = try await self.start()
        do {
            try await self.current.withValue(peer) {
                try await function()
            }
        } catch {
            await self.stop(peer)
            throw error
        }
        await self.stop(peer)
    }
}
