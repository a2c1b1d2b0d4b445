import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Who is calling the API, and with which scopes.
public struct APIPrincipal: Sendable {
    public enum Credential: Sendable {
        /// `Authorization: Bearer easel_…`: exactly the key's scopes.
        case key(APIKey)
        /// The session cookie: every scope (CSRFMiddleware has checked X-CSRF-Token on writes).
        case session(Session)
    }

    public let user: User
    public let scopes: Set<APIScope>
    public let credential: Credential

    /// The calling session's id, to mark "current" in the session list.
    var sessionID: Int64? {
        if case .session(let session) = self.credential { return session.id }
        return nil
    }
}

/// The context of every `/api/v1` route. The caller is reachable only through `require(_:)`,
/// so a handler cannot use the account without checking a scope first.
public struct APIContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let clientIP: String
    /// The signed-in session from the cookie, if any (set by SessionMiddleware).
    let sessionIdentity: Identity?
    /// Set by `APIAuthMiddleware`; private to this file so only `require` hands it out.
    fileprivate var principal: APIPrincipal?

    public init(context: AppRequestContext) {
        self.coreContext = context.coreContext
        self.clientIP = context.clientIP
        self.sessionIdentity = context.identity
        self.principal = nil
    }

    /// The caller, when they hold `scope`; otherwise a 401 (no credentials) or a 403 naming the scope.
    public func require(_ scope: APIScope) throws -> APIPrincipal {
        try self.require(anyOf: [scope])
    }

    /// The caller, when they hold at least one of `scopes` (the first is named when they hold none).
    public func require(anyOf scopes: [APIScope]) throws -> APIPrincipal {
        guard let principal = self.principal else { throw APIAuthError.missingCredentials() }
        guard scopes.contains(where: principal.scopes.contains) else { throw APIAuthError.insufficientScope(scopes) }
        return principal
    }

    /// snake_case keys and ISO 8601 dates, both ways.
    public var requestDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    public var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

/// The 401 and 403 answers of the API, with the `WWW-Authenticate` header of RFC 6750.
enum APIAuthError {
    static func missingCredentials() -> WebError {
        WebError(
            .unauthorized,
            code: "unauthorized",
            message: "Send an API key as \"Authorization: Bearer easel_…\" (create one on /account/keys), or sign in.",
            headers: [.wwwAuthenticate: #"Bearer realm="easel""#]
        )
    }

    static func invalidKey() -> WebError {
        WebError(
            .unauthorized,
            code: "invalid_api_key",
            message: "This API key is not valid: it is unknown, revoked or expired, or its account is suspended. Create a new key on /account/keys.",
            headers: [.wwwAuthenticate: #"Bearer realm="easel", error="invalid_token""#]
        )
    }

    static func insufficientScope(_ scopes: [APIScope]) -> WebError {
        let named = scopes.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")
        return WebError(
            .forbidden,
            code: "insufficient_scope",
            message: "This API key lacks the \(named) scope. Create a key that has it on /account/keys, or use one that does.",
            headers: [
                .wwwAuthenticate: #"Bearer realm="easel", error="insufficient_scope", scope="\#(scopes.map(\.rawValue).joined(separator: " "))""#
            ]
        )
    }
}

/// Finds the caller of an `/api/v1` route: a Bearer key when the request has an Authorization
/// header (it wins over a cookie, since its scopes are narrower), else the session cookie. A
/// request with neither, or with a key that does not authenticate, gets a 401 here.
struct APIAuthMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let apiKeys: APIKeyService
    /// Each key has its own bucket, so one runaway script cannot starve the rest.
    let limiter: RateLimiter
    let keyRateLimit: RateLimiter.Rule

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let authorization = request.headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer",
                let authenticated = try await self.apiKeys.authenticate(bearer: parts[1].trimmingCharacters(in: .whitespaces))
            else { throw APIAuthError.invalidKey() }
            if let wait = self.limiter.take([("api-key:\(authenticated.key.id!)", self.keyRateLimit)]) {
                let seconds = wait.retryAfterSeconds
                throw WebError(
                    .tooManyRequests, code: "rate_limited",
                    message: "This API key has made too many requests. Wait \(seconds) s (see Retry-After) and try again.",
                    headers: [.retryAfter: String(seconds)]
                )
            }
            context.principal = APIPrincipal(user: authenticated.user, scopes: authenticated.scopes, credential: .key(authenticated.key))
            context.logger[metadataKey: "api_key"] = "\(authenticated.key.prefix)"
        } else if let identity = context.sessionIdentity {
            context.principal = APIPrincipal(user: identity.user, scopes: Set(APIScope.allCases), credential: .session(identity.session))
        } else {
            throw APIAuthError.missingCredentials()
        }
        var response = try await next(request, context)
        // Answers carry personal data (and, once, a key): never keep them in a cache.
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}
