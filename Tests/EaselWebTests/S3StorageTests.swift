import AsyncHTTPClient
import EaselApp
import EaselBlobs
import EaselCore
import EaselTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// The whole application with EASEL_STORAGE=s3, against moto with signature checking on.
@Suite("S3 storage end to end", .serialized)
struct S3StorageTests {
    func settings(_ peer: S3Peer, bucket: String, secret: String? = nil) -> [String: String] {
        [
            "EASEL_STORAGE": "s3", "EASEL_S3_ENDPOINT": peer.endpoint.absoluteString, "EASEL_S3_REGION": peer.region,
            "EASEL_S3_BUCKET": bucket, "EASEL_S3_ACCESS_KEY_ID": peer.accessKeyID,
            "EASEL_S3_SECRET_ACCESS_KEY": secret ?? peer.secretAccessKey, "EASEL_S3_PATH_STYLE": "true",
        ]
    }

    @Test("Backups land in the bucket, /readyz is ready, and a wrong secret makes /readyz name storage")
    func backupsAndReadiness() async throws {
        let peer = try await S3Peer.start()
        do {
            try await self.backupsAndReadiness(peer)
        } catch {
            await peer.stop()
            throw error
        }
        await peer.stop()
    }

    func backupsAndReadiness(_ peer: S3Peer) async throws {
        let bucket = "easel-app-\(UUID().uuidString.prefix(8).lowercased())"
        try await HTTPClient.withHTTPClient { client in
            let store = try S3BlobStore(
                configuration: S3Configuration(
                    endpoint: peer.endpoint, region: peer.region, bucket: bucket, accessKeyID: peer.accessKeyID,
                    secretAccessKey: peer.secretAccessKey, pathStyle: true
                ),
                httpClient: client, logger: Logger(label: "test")
            )
            try await store.createBucket()
        }

        try await withTestApp(self.settings(peer, bucket: bucket)) { services, client in
            #expect(services.blobs.kind == "s3")
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            let backup = try await services.backups.backUp()
            let stored = try await services.backups.list()
            #expect(stored.map(\.key) == [backup.key])
            #expect(try await services.blobs.head(backup.key)?.size == backup.size)
        }

        try await withTestApp(self.settings(peer, bucket: bucket, secret: "wrong-secret-value")) { services, client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            let body = String(buffer: response.body)
            #expect(body.contains("storage"))
            #expect(body.contains("EASEL_S3_SECRET_ACCESS_KEY"))
            #expect(!body.contains("wrong-secret-value"))
            await #expect(throws: BlobError.self) { try await services.backups.backUp() }
        }
    }
}
