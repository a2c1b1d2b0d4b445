import Foundation
import HTTPTypes
import Hummingbird

/// The headers of SECURITY.md on every response, errors included, plus the request id.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    /// HSTS only makes sense (and is only honoured) over HTTPS.
    let strictTransportSecurity: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        let headers: [(HTTPField.Name, String)] = [
            (.contentSecurityPolicy, Self.policy(nonce: context.cspNonce)),
            (.xContentTypeOptions, "nosniff"),
            (.referrerPolicy, "strict-origin-when-cross-origin"),
            (.xFrameOptions, "DENY"),
            (.crossOriginOpenerPolicy, "same-origin"),
            (.permissionsPolicy, "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
            (.xRequestID, context.id),
        ]
        for (name, value) in headers where response.headers[name] == nil {
            response.headers[name] = value
        }
        if self.strictTransportSecurity {
            response.headers[.strictTransportSecurity] = "max-age=63072000; includeSubDomains"
        }
        return response
    }

    static func policy(nonce: String) -> String {
        [
            "default-src 'self'",
            "script-src 'self' 'nonce-\(nonce)'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ].joined(separator: "; ")
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let crossOriginOpenerPolicy = Self("Cross-Origin-Opener-Policy")!
    static let permissionsPolicy = Self("Permissions-Policy")!
    static let xRequestID = Self("X-Request-Id")!
}
