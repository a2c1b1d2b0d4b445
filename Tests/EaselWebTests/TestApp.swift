import EaselApp
import EaselTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging

/// Builds the real application on a temporary data folder from in-memory settings, and runs
/// `body` against its router.
func withTestApp<Value: Sendable>(
    _ settings: [String: String] = [:],
    _ body: @Sendable (AppServices, any TestClientProtocol) async throws -> Value
) async throws -> Value {
    let folder = try TemporaryDirectory("easel-web")
    defer { folder.remove() }
    let environment = ["EASEL_DATA_DIR": folder.url.appending(path: "data").path].merging(settings) { _, new in new }
    let reader = try await EaselConfig.reader(arguments: [], environment: environment, dotEnvPath: nil)
    let config = try EaselConfig.load(from: reader)
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let services = try await AppServices.start(config: config, logger: logger)
    do {
        let app = try buildApplication(services)
        let value = try await app.test(.router) { client in try await body(services, client) }
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
