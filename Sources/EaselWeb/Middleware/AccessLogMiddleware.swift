import EaselCore
import EaselStore
import Foundation
import Hummingbird
import Logging

/// One log line per request with status and duration; the request id rides in the logger's
/// metadata (`hb.request.id`), so every line a handler logs carries it too. With a recorder,
/// each request also goes to the `request_log` table (network only, never the address),
/// buffered so the response does not wait for the write. Health probes are left out.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    var recorder: TrafficRecorder?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let response = try await next(request, context)
            await self.logAndRecord(request, context: context, status: response.status.code, elapsed: clock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            await self.logAndRecord(request, context: context, status: status, elapsed: clock.now - start)
            throw error
        }
    }

    private func logAndRecord(_ request: Request, context: Context, status: Int, elapsed: Duration) async {
        self.log(request, context: context, status: status, elapsed: elapsed)
        let path = request.uri.path
        guard let recorder = self.recorder, path != "/healthz", path != "/readyz" else { return }
        let (seconds, attoseconds) = elapsed.components
        await recorder.logRequest(
            RequestLogEntry(
                at: Date(), network: ClientNetwork.truncate(context.clientIP), method: String(request.method.rawValue.prefix(16)),
                path: String(path.prefix(500)), status: min(599, max(100, status)),
                durationMS: (Double(seconds) * 1000 + Double(attoseconds) / 1e15).rounded(toPlaces: 1),
                userAgent: String((request.headers[.userAgent] ?? "").prefix(512)),
                referrerHost: ReferrerHost.from(request.headers[.referer], ownHost: nil)
            )
        )
    }

    private func log(_ request: Request, context: Context, status: Int, elapsed: Duration) {
        let (seconds, attoseconds) = elapsed.components
        let milliseconds = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        let level: Logger.Level = status >= 500 ? .error : (request.uri.path == "/healthz" ? .debug : .info)
        context.logger.log(
            level: level, "request",
            metadata: [
                "method": "\(request.method.rawValue)",
                "path": "\(request.uri.path)",
                "status": "\(status)",
                "ms": "\(String(format: "%.1f", milliseconds))",
            ]
        )
    }
}

extension Double {
    fileprivate func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
