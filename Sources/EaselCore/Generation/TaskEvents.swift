import Foundation
import Synchronization

/// Tells listeners (the server-sent events of `/api/v1/generations/{id}/events`) that a task
/// changed. Only a nudge with the latest progress: listeners read the task itself from the
/// database, so a missed nudge costs a little latency, never a wrong state.
public final class TaskEvents: Sendable {
    public struct Change: Sendable, Equatable {
        public var taskID: Int64
        /// Progress known in memory (between database writes), when there is one.
        public var progress: Int?
    }

    private struct Listener {
        var taskID: Int64
        var continuation: AsyncStream<Change>.Continuation
    }

    private let listeners = Mutex<[UUID: Listener]>([:])

    public init() {}

    /// A stream of changes to `taskID`; it ends when the caller stops iterating.
    public func changes(of taskID: Int64) -> AsyncStream<Change> {
        let (stream, continuation) = AsyncStream<Change>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        self.listeners.withLock { $0[id] = Listener(taskID: taskID, continuation: continuation) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }

    public func publish(_ taskID: Int64, progress: Int? = nil) {
        let targets = self.listeners.withLock { $0.values.filter { $0.taskID == taskID }.map(\.continuation) }
        for continuation in targets { continuation.yield(Change(taskID: taskID, progress: progress)) }
    }
}
