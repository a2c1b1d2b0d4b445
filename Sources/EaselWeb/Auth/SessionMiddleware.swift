import EaselCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MultipartKit
import NIOCore

/// Finds the session named by the cookie and puts the signed-in person in the context. Also
/// keeps the anonymous CSRF cookie for forms shown before sign-in.
struct SessionMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let accounts: AccountService
    let cookies: CookiePolicy

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        // Static files and probes need no session lookup.
        let path = request.uri.path
        if path.hasPrefix("/static/") || path == "/healthz" || path == "/readyz" {
            return try await next(request, context)
        }
        var clearSession = false
        if let token = request.cookies[self.cookies.sessionName]?.value, !token.isEmpty {
            if let (session, user) = try await self.accounts.authenticate(token: token) {
                context.identity = Identity(user: user, session: session)
            } else {
                clearSession = true
            }
        }
        var newCSRF: String?
        if context.identity == nil {
            if let existing = request.cookies[self.cookies.csrfName]?.value, existing.count >= 32 {
                context.anonymousCSRF = existing
            } else {
                newCSRF = SecureToken.make()
                context.anonymousCSRF = newCSRF
            }
        }
        var response = try await next(request, context)
        if clearSession { response.setCookie(self.cookies.clearedSession()) }
        if let newCSRF, request.method == .get || request.method == .head {
            response.setCookie(self.cookies.csrf(newCSRF))
        }
        return response
    }
}

/// Refuses state-changing requests made with a cookie unless they carry the synchronizer
/// token (form field `_csrf`, URL-encoded or multipart, or header `X-CSRF-Token`) and, when the
/// browser sends one, an Origin matching the public URL. Requests with an API key (no cookie
/// involved) pass.
struct CSRFMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let publicOrigin: String
    /// The most a multipart form may hold: it is read whole to find its token.
    var multipartLimit = 2 * 1_048_576
    static let formField = "_csrf"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard ![.get, .head, .options].contains(request.method) else { return try await next(request, context) }
        // No session means no ambient authority to abuse: API calls with a key (or with nothing,
        // which the API answers with 401) pass. Anonymous forms still need their token.
        if context.identity == nil, request.headers[.authorization]?.lowercased().hasPrefix("bearer ") == true || request.uri.path.hasPrefix("/api/") {
            return try await next(request, context)
        }
        // Webhooks carry their sender's signature instead (checked by their handler).
        if context.identity == nil, request.uri.path.hasPrefix("/webhooks/") {
            return try await next(request, context)
        }
        // One-click unsubscribe (RFC 8058) comes from mail providers without cookies or a form
        // token; the signed token in its URL is the authority, and it can only unsubscribe.
        if request.uri.path == "/unsubscribe" {
            return try await next(request, context)
        }
        if let origin = request.headers[.origin], origin != self.publicOrigin {
            throw WebError(
                .forbidden, code: "csrf_failed", key: "error.cross_site", ["origin": origin], english: "This request came from another site (\(origin)), so it was refused."
            )
        }
        let expected = context.csrfToken
        var request = request
        var sent = request.headers[HTTPField.Name("X-CSRF-Token")!]
        if sent == nil, request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true {
            let body = try await request.collectBody(upTo: context.maxUploadSize)
            sent = Self.formValue(Self.formField, in: String(buffer: body))
        } else if sent == nil, let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("multipart/form-data"),
            let boundary = GenerationAPIController.boundary(contentType)
        {
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: self.multipartLimit)
            } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
                let megabytes = String(max(1, self.multipartLimit / 1_048_576))
                throw WebError(
                    .contentTooLarge, code: "too_large", key: "error.form_too_large", ["mb": megabytes],
                    english: "What you sent is larger than \(megabytes) MB. Choose a smaller file and try again."
                )
            }
            struct TokenField: Decodable {
                var _csrf: String?
            }
            sent = (try? FormDataDecoder().decode(TokenField.self, from: body, boundary: boundary))?._csrf
        }
        guard !expected.isEmpty, let sent, SecureToken.equal(sent, expected) else {
            throw WebError(
                .forbidden, code: "csrf_failed", key: "error.csrf", english: "This form has expired or did not come from this site. Go back, reload the page and try again."
            )
        }
        return try await next(request, context)
    }

    static func refusal(_ message: String) -> WebError {
        WebError(.forbidden, code: "csrf_failed", message: message)
    }

    static func formValue(_ name: String, in body: String) -> String? {
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }
}
