import EaselApp
import EaselBlobs
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationCompat
import Testing

@Suite("Signed blob links")
struct SignedBlobTests {
    @Test("A disk object's expiring URL serves it; a tampered or expired link is refused")
    func signedLinks() async throws {
        try await withTestApp { services, client in
            let key = try BlobKey("images/ab/cd/picture.png")
            let bytes = Data((0..<5000).map { UInt8($0 % 251) })
            try await services.blobs.put(key, data: bytes, contentType: "image/png")
            let url = try await services.blobs.expiringURL(for: key, expiresIn: .seconds(300))
            #expect(url.absoluteString.hasPrefix("http://localhost:8080/blobs/images/ab/cd/picture.png?"))
            let pathAndQuery = url.path + "?" + (url.query ?? "")

            let ok = try await client.execute(uri: pathAndQuery, method: .get)
            #expect(ok.status == .ok)
            #expect(Data(ok.body.readableBytesView) == bytes)

            let tampered = pathAndQuery.replacingOccurrences(of: "picture.png", with: "other.png")
            #expect(try await client.execute(uri: tampered, method: .get).status == .forbidden)

            let expired = services.blobURLSigner.url(for: key, expiresAt: Date().addingTimeInterval(-1))
            #expect(try await client.execute(uri: expired.path + "?" + (expired.query ?? ""), method: .get).status == .forbidden)

            #expect(try await client.execute(uri: "/blobs/images/ab/cd/picture.png", method: .get).status == .forbidden)
        }
    }
}
