import EaselStore
import Hummingbird

/// While a person's account awaits deletion, signing in leads only to the page that offers to
/// cancel it (and to their data download); every other page sends them there, and every other
/// change is refused. Signed-out requests and static files pass untouched.
struct DeletionPendingMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let database: AppDatabase

    static let allowedPaths: Set<String> = [
        "/account/deletion", "/account/deletion/cancel", "/signout", "/account/privacy/download", "/unsubscribe", "/billing", "/billing/portal",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let identity = context.identity, let userID = identity.user.id else { return try await next(request, context) }
        let path = request.uri.path
        // Their exports stay downloadable (the ready mail links there), and billing reachable to cancel a subscription.
        if path.hasPrefix("/static/") || Self.allowedPaths.contains(path) || Self.isExportPath(path) { return try await next(request, context) }
        guard try await self.database.privacyState(userID: userID)?.deletionPending == true else { return try await next(request, context) }
        if request.method == .get || request.method == .head {
            return Response(status: .seeOther, headers: [.location: "/account/deletion"])
        }
        throw WebError(
            .forbidden, code: "deletion_pending", key: "privacy.error_deletion_pending",
            english: "This account is waiting to be deleted. Cancel the deletion first (Settings → Privacy) to use it again."
        )
    }

    static func isExportPath(_ path: String) -> Bool {
        guard path.hasPrefix("/account/privacy/exports/") else { return false }
        return path.hasSuffix("/download") || path.hasSuffix("/status")
    }
}
