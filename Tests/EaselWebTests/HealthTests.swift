import EaselBlobs
import EaselCore
import EaselStore
import Logging
import EaselTestSupport
import EaselWeb
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Health and readiness")
struct HealthTests {
    @Test("/healthz answers 200 {\"status\":\"ok\"} as JSON")
    func healthz() async throws {
        try await withTestApp { _, client in
            let response = try await client.execute(uri: "/healthz", method: .get)
            #expect(response.status == .ok)
            #expect(response.text == #"{"status":"ok"}"#)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
        }
    }

    @Test("/readyz answers 200 when the database and storage work")
    func readyWhenAllPartsWork() async throws {
        try await withTestApp { _, client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .ok)
            #expect(response.text.contains("ready"))
        }
    }

    @Test("/readyz answers 503 naming the failing part")
    func notReadyNamesFailingPart() async throws {
        struct BucketGone: Error, CustomStringConvertible { var description: String { "bucket gone" } }
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try AppDatabase.inMemory()
        let signer = BlobURLSigner(baseURL: URL(string: "http://localhost:8080")!, secret: Data(repeating: 7, count: 32))
        let router = buildRouter(
            WebDependencies(
                siteName: "Easel", assets: try AssetCatalog.embedded(),
                readinessChecks: [
                    ReadinessCheck(name: "database") {},
                    ReadinessCheck(name: "storage") { throw BucketGone() },
                ],
                blobs: try DiskBlobStore(root: folder.url, urlSigner: signer), blobURLSigner: signer, servesTLS: false,
                publicURL: URL(string: "http://localhost:8080")!, database: database,
                accounts: AccountService(
                    settings: .init(), database: database, hasher: PasswordHasher(cost: 4),
                    mails: AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded()), logger: Logger(label: "test")
                ),
                twoFactor: TwoFactorService(database: database, mails: AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded()), issuer: "Easel", secrets: DataKeys(database: database, masterKeys: MasterKeyring(keys: [MasterKeyring.newKey()]))),
                secretKey: String(repeating: "s", count: 40), mailTransport: "log", localizer: try Localizer.embedded(), mailQueued: {}
            )
        )
        let app = Application(router: router)
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            let body = try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any]
            let failing = body?["failing"] as? [String: String]
            #expect(failing?["storage"] == "bucket gone")
            #expect(failing?["database"] == nil)
        }
    }
}
