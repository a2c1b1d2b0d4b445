import EaselApp
import EaselCore
import EaselStore
import EaselWeb
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Client address behind a reverse proxy")
struct ClientAddressTests {
    @Test("Trusted proxies and ranges are recognised; bad entries are refused")
    func trustedProxies() throws {
        let proxies = try TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])
        #expect(proxies.contains("127.0.0.1"))
        #expect(proxies.contains("10.20.30.40"))
        #expect(proxies.contains("::1"))
        #expect(!proxies.contains("11.0.0.1"))
        #expect(!proxies.contains("203.0.113.9"))
        #expect(throws: TrustedProxies.InvalidEntry.self) { try TrustedProxies(["not-an-ip"]) }
        #expect(throws: TrustedProxies.InvalidEntry.self) { try TrustedProxies(["10.0.0.0/40"]) }
    }

    /// Signs in over a real loopback connection (peer 127.0.0.1) sending proxy headers.
    func signIn(settings: [String: String], headers: HTTPFields) async throws -> Session? {
        try await withTestApp(settings, testing: .live) { services, client in
            _ = try await services.accounts.createAdmin(email: "ada@example.org", password: "correct horse battery")
            let browser = Browser(client)
            try await browser.get("/signin")
            _ = try await browser.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], headers: headers)
            let user = try #require(try await services.database.user(email: "ada@example.org"))
            return try await services.database.sessions(userID: user.id!).first
        }
    }

    @Test("X-Forwarded-For and CF-IPCountry count only from a trusted proxy")
    func forwardedHeaders() async throws {
        let headers: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "198.51.100.7, 203.0.113.9", HTTPField.Name("CF-IPCountry")!: "de"]
        // Without trusted proxies the headers are ignored (anyone could send them).
        let direct = try #require(try await self.signIn(settings: [:], headers: headers))
        #expect(direct.ip == "127.0.0.1")
        #expect(direct.country == nil)
        // From a trusted proxy, the right-most untrusted hop is the client (the hops before it
        // came from the client and could be forged).
        let proxied = try #require(try await self.signIn(settings: ["EASEL_TRUSTED_PROXIES": "127.0.0.1"], headers: headers))
        #expect(proxied.ip == "203.0.113.9")
        #expect(proxied.country == "DE")
        // A chain of trusted proxies is skipped.
        let chained: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "198.51.100.7, 10.1.2.3"]
        let throughTwo = try #require(try await self.signIn(settings: ["EASEL_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"], headers: chained))
        #expect(throughTwo.ip == "198.51.100.7")
    }
}
