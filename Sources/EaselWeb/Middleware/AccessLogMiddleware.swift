import Foundation
import Hummingbird
import Logging

/// One log line per request with status and duration; the request id rides in the logger's
/// metadata (`hb.request.id`), so every line a handler logs carries it too.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let response = try await next(request, context)
            self.log(request, context: context, status: response.status.code, elapsed: clock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            self.log(request, context: context, status: status, elapsed: clock.now - start)
            throw error
        }
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
