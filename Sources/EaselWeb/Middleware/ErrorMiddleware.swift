import Foundation
import Hummingbird
import Logging
import NIOCore

/// Turns every error into a page for browsers or `{"error":{"code","message"}}` for API
/// clients, chosen by the Accept header (and always JSON under /api/).
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let views: ViewRenderer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return self.response(for: error, request: request, context: context)
        }
    }

    func response(for error: any Error, request: Request, context: Context) -> Response {
        if error is SignInRequired, !Self.wantsJSON(request) {
            let next = request.uri.path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "/"
            return Response(status: .seeOther, headers: [.location: "/signin?next=\(next)"])
        }
        let problem = Self.describe(error, requestID: context.id)
        if problem.status.code >= 500 {
            context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        var headers = problem.headers
        if Self.wantsJSON(request) {
            let body = ErrorBody(error: .init(code: problem.code, message: problem.message, requestID: context.id))
            let data = (try? JSONEncoder().encode(body)) ?? Data("{}".utf8)
            headers[.contentType] = "application/json; charset=utf-8"
            return Response(status: problem.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        let heading = self.views.text(Self.heading(for: problem.status), [:], context)
        let page = ErrorPage(
            layout: self.views.layout(title: heading, context: context),
            status: problem.status.code,
            heading: heading,
            message: problem.localized.map { self.views.text($0.key, $0.arguments, context) } ?? problem.message,
            requestID: context.id
        )
        var response = (try? self.views.render(page, template: "error", status: problem.status))
            ?? Response(status: problem.status, body: .init(byteBuffer: ByteBuffer(string: problem.message)))
        for field in headers { response.headers.append(field) }
        return response
    }

    static func describe(_ error: any Error, requestID: String) -> WebError {
        switch error {
        case let error as WebError:
            return error
        case is SignInRequired:
            return WebError(.unauthorized, code: "unauthorized", key: "error.sign_in_first", english: "Sign in first: this needs an account.")
        case let error as HTTPError where error.status == .notFound:
            return .notFound()
        case let error as any HTTPResponseError:
            let status = error.status
            let message = (error as? HTTPError)?.body ?? Self.defaultMessage(for: status)
            return WebError(status, code: Self.code(for: status), message: message)
        default:
            return WebError(
                .internalServerError, code: "internal_error", key: "error.internal", ["id": requestID],
                english: "Something went wrong on our side. Please try again; if it keeps happening, tell the administrator the request id \(requestID)."
            )
        }
    }

    static func wantsJSON(_ request: Request) -> Bool {
        if request.uri.path.hasPrefix("/api/") { return true }
        let accept = request.headers[.accept]?.lowercased() ?? ""
        guard accept.contains("application/json") else { return false }
        // Browsers send text/html first; API clients ask for JSON.
        guard let html = accept.range(of: "text/html") else { return true }
        return accept.range(of: "application/json")!.lowerBound < html.lowerBound
    }

    /// The catalog key of the error page's heading.
    static func heading(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 404: "error.heading_not_found"
        case 400..<500: "error.heading_client"
        default: "error.heading_server"
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 413: "payload_too_large"
        case 429: "rate_limited"
        case 400..<500: "client_error"
        default: "server_error"
        }
    }

    static func defaultMessage(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 405: "This address does not accept that kind of request."
        case 413: "What you sent is too large."
        case 400..<500: "The request could not be handled: \(status.reasonPhrase)."
        default: "Something went wrong on our side. Please try again in a moment."
        }
    }

    struct ErrorBody: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
            var requestID: String

            enum CodingKeys: String, CodingKey {
                case code, message
                case requestID = "request_id"
            }
        }
        var error: Detail
    }
}
