import EaselApp
import EaselCore
import EaselTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import HTTPTypes
import NIOCore

/// Builds the real application on a temporary data folder from in-memory settings, and runs
/// `body` against its router.
func withTestApp<Value: Sendable>(
    _ settings: [String: String] = [:],
    testing: TestingSetup = .router,
    _ body: @Sendable (AppServices, any TestClientProtocol) async throws -> Value
) async throws -> Value {
    let folder = try TemporaryDirectory("easel-web")
    defer { folder.remove() }
    let environment = ["EASEL_DATA_DIR": folder.url.appending(path: "data").path].merging(settings) { _, new in new }
    let reader = try await EaselConfig.reader(arguments: [], environment: environment, dotEnvPath: nil)
    let config = try EaselConfig.load(from: reader)
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    // bcrypt at cost 4 keeps the suite fast; production's cost 12 is checked in EaselCoreTests.
    let services = try await AppServices.start(config: config, logger: logger, passwordHasher: PasswordHasher(cost: 4))
    do {
        let app = try buildApplication(services)
        let value = try await app.test(testing) { client in try await body(services, client) }
        await services.shutdown()
        return value
    } catch {
        await services.shutdown()
        throw error
    }
}

extension TestResponse {
    var text: String { String(buffer: self.body) }
}

/// A browser's cookie jar for router tests.
final class Browser: @unchecked Sendable {
    let client: any TestClientProtocol
    var cookies: [String: String] = [:]
    /// Sent as Origin on POSTs, as a browser on the site would.
    var origin: String? = "http://localhost:8080"

    init(_ client: any TestClientProtocol) {
        self.client = client
    }

    var csrf: String { self.cookies["easel_csrf"] ?? self.cookies["__Host-easel_csrf"] ?? "" }

    @discardableResult
    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await self.send(uri, method: .get, headers: headers, body: nil)
    }

    /// Posts a form; `_csrf` is the session's or anonymous token unless given.
    @discardableResult
    func post(_ uri: String, _ fields: [String: String], csrf: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
        var fields = fields
        if fields["_csrf"] == nil { fields["_csrf"] = csrf ?? self.csrf }
        let body = fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
        var headers = headers
        headers[.contentType] = "application/x-www-form-urlencoded"
        if let origin = self.origin, headers[.origin] == nil { headers[.origin] = origin }
        return try await self.send(uri, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    func send(_ uri: String, method: HTTPRequest.Method, headers: HTTPFields, body: ByteBuffer?) async throws -> TestResponse {
        var headers = headers
        if !self.cookies.isEmpty {
            headers[.cookie] = self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
        }
        let response = try await self.client.execute(uri: uri, method: method, headers: headers, body: body)
        for header in response.headers[values: .setCookie] {
            let pair = header.split(separator: ";").first ?? ""
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { continue }
            let name = String(parts[0]).trimmingCharacters(in: .whitespaces)
            let value = String(parts[1])
            if value.isEmpty || header.lowercased().contains("max-age=0") { self.cookies[name] = nil } else { self.cookies[name] = value }
        }
        return response
    }
}
