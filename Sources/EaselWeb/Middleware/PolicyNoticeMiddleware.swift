import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// After a material change of the Privacy Policy or Terms, a signed-in person's page views
/// lead to /policy/notice until they acknowledge it. Only page views (GET or HEAD asking for
/// HTML, or saying nothing) are sent there: the API, images, downloads and form posts pass.
struct PolicyNoticeMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let policy: PolicyService

    static let allowedPaths: Set<String> = [
        "/policy/notice", "/privacy", "/terms", "/cookies", "/signout", "/unsubscribe", "/account/privacy", "/account/privacy/download",
        "/account/deletion", "/healthz", "/readyz", "/favicon.ico",
    ]
    static let allowedPrefixes = ["/static/", "/api/", "/blobs/", "/avatars/", "/a/", "/webhooks/"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let user = context.identity?.user, request.method == .get || request.method == .head else { return try await next(request, context) }
        let path = request.uri.path
        if Self.allowedPaths.contains(path) || Self.allowedPrefixes.contains(where: path.hasPrefix) { return try await next(request, context) }
        // Images, scripts and fetch() calls ask for something else; a page view asks for HTML.
        if let accept = request.headers[.accept], !accept.contains("text/html") { return try await next(request, context) }
        guard try await self.policy.pendingNotice(for: user) != nil else { return try await next(request, context) }
        let back = request.uri.description
        let location = back == "/" ? "/policy/notice" : "/policy/notice?next=\(back.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        return Response(status: .seeOther, headers: [.location: location])
    }
}
