import Foundation
import Hummingbird
import Logging
import NIOCore

/// A part the instance needs in order to serve: the database, the blob store.
public struct ReadinessCheck: Sendable {
    public var name: String
    public var check: @Sendable () async throws -> Void

    public init(name: String, check: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.check = check
    }
}

/// `/healthz`: the process answers. `/readyz`: every part it needs answers too.
struct HealthController {
    let checks: [ReadinessCheck]
    /// A check slower than this counts as failing, so a hung bucket cannot hang the probe.
    let timeout: Duration

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/healthz", use: self.health)
        router.get("/readyz", use: self.ready)
    }

    @Sendable func health(_ request: Request, context: AppRequestContext) -> Response {
        Self.json(.ok, #"{"status":"ok"}"#)
    }

    @Sendable func ready(_ request: Request, context: AppRequestContext) async -> Response {
        var failures: [(String, String)] = []
        await withTaskGroup(of: (String, String?).self) { group in
            for check in self.checks {
                group.addTask {
                    do {
                        try await Self.withTimeout(self.timeout) { try await check.check() }
                        return (check.name, nil)
                    } catch {
                        return (check.name, String(describing: error))
                    }
                }
            }
            for await (name, failure) in group {
                if let failure { failures.append((name, failure)) }
            }
        }
        guard failures.isEmpty else {
            failures.sort { $0.0 < $1.0 }
            for (name, failure) in failures {
                context.logger.warning("not ready", metadata: ["part": "\(name)", "error": "\(failure)"])
            }
            struct NotReady: Encodable {
                var status = "unavailable"
                var failing: [String: String]
            }
            let body = NotReady(failing: Dictionary(failures, uniquingKeysWith: { first, _ in first }))
            let data = (try? JSONEncoder().encode(body)) ?? Data()
            return Self.json(.serviceUnavailable, String(decoding: data, as: UTF8.self))
        }
        return Self.json(.ok, #"{"status":"ready"}"#)
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: body))
        )
    }

    struct TimedOut: Error, CustomStringConvertible {
        var description: String { "did not answer in time" }
    }

    static func withTimeout(_ timeout: Duration, _ work: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await work() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw TimedOut()
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
