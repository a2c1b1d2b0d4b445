import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("API without credentials")
struct APIUnauthenticatedTests {
    @Test("A state-changing API call with no credentials is 401 with WWW-Authenticate, not a CSRF refusal")
    func noCredentials() async throws {
        try await withTestApp { _, client in
            for (method, path) in [(HTTPRequest.Method.patch, "/api/v1/me"), (.post, "/api/v1/keys"), (.delete, "/api/v1/keys/1")] {
                let response = try await client.execute(uri: path, method: method, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}"))
                #expect(response.status == .unauthorized, "\(method) \(path)")
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                #expect(String(buffer: response.body).contains("\"request_id\""))
            }
        }
    }
}
