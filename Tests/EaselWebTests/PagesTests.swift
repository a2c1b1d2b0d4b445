import CompressNIO
import EaselBlobs
import EaselTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Pages, errors and headers")
struct PagesTests {
    @Test("The home page is HTML from the template, with the configured site name")
    func homePage() async throws {
        try await withTestApp(["EASEL_SITE_NAME": "Studio <Nine>"]) { _, client in
            let response = try await client.execute(uri: "/", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            #expect(response.text.hasPrefix("<!doctype html>"))
            // Escaped, not injected.
            #expect(response.text.contains("Studio &lt;Nine&gt;"))
            #expect(!response.text.contains("Studio <Nine>"))
            #expect(response.text.contains("/static/app.css?v="))
        }
    }

    @Test("Every response carries the security headers; HSTS only over TLS")
    func securityHeaders() async throws {
        try await withTestApp { _, client in
            for path in ["/", "/healthz", "/no-such-page", "/static/app.css"] {
                let response = try await client.execute(uri: path, method: .get)
                let csp = try #require(response.headers[HTTPField.Name("Content-Security-Policy")!])
                for directive in ["default-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "object-src 'none'", "base-uri 'none'", "'nonce-"] {
                    #expect(csp.contains(directive), "\(path): CSP lacks \(directive)")
                }
                // No third party anywhere: every source is this site, none, a nonce, or inline data.
                let sources = csp.split(separator: ";").flatMap { $0.split(separator: " ").dropFirst() }
                #expect(sources.allSatisfy { ["'self'", "'none'", "data:", "blob:"].contains($0) || $0.hasPrefix("'nonce-") }, "\(path): \(csp)")
                #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
                #expect(response.headers[HTTPField.Name("Referrer-Policy")!] == "strict-origin-when-cross-origin")
                #expect(response.headers[HTTPField.Name("X-Request-Id")!]?.isEmpty == false)
                #expect(response.headers[HTTPField.Name("Strict-Transport-Security")!] == nil)
            }
        }
    }

    @Test("Each request gets its own CSP nonce")
    func noncesDiffer() async throws {
        try await withTestApp { _, client in
            let first = try await client.execute(uri: "/", method: .get).headers[HTTPField.Name("Content-Security-Policy")!]
            let second = try await client.execute(uri: "/", method: .get).headers[HTTPField.Name("Content-Security-Policy")!]
            #expect(first != nil && first != second)
        }
    }

    @Test("An unknown address is a real 404 page for browsers and JSON for API clients")
    func notFound() async throws {
        try await withTestApp { _, client in
            let page = try await client.execute(uri: "/nothing-here", method: .get, headers: [.accept: "text/html,application/xhtml+xml,*/*;q=0.8"])
            #expect(page.status == .notFound)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.text.contains("Page not found"))
            #expect(page.text.contains("href=\"/\""))

            let json = try await client.execute(uri: "/nothing-here", method: .get, headers: [.accept: "application/json"])
            #expect(json.status == .notFound)
            let body = try JSONSerialization.jsonObject(with: Data(json.text.utf8)) as? [String: [String: String]]
            #expect(body?["error"]?["code"] == "not_found")
            #expect(body?["error"]?["message"]?.isEmpty == false)

            let api = try await client.execute(uri: "/api/v1/nothing", method: .get)
            #expect(api.status == .notFound)
            #expect(api.headers[.contentType]?.hasPrefix("application/json") == true)
        }
    }

    @Test("HTML is gzipped for clients that accept it")
    func gzipForText() async throws {
        try await withTestApp { _, client in
            let plain = try await client.execute(uri: "/", method: .get)
            let zipped = try await client.execute(uri: "/", method: .get, headers: [.acceptEncoding: "gzip, deflate, br"])
            #expect(plain.headers[.contentEncoding] == nil)
            #expect(zipped.headers[.contentEncoding] == "gzip")
            var body = zipped.body
            let inflated = try body.decompress(with: .gzip())
            #expect(String(buffer: inflated).hasPrefix("<!doctype html>"))
            #expect(zipped.body.readableBytes < plain.body.readableBytes)
            let refused = try await client.execute(uri: "/", method: .get, headers: [.acceptEncoding: "gzip;q=0"])
            #expect(refused.headers[.contentEncoding] == nil)
        }
    }
}
