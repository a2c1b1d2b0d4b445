import EaselApp
import EaselBlobs
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import Testing

@Suite("Encryption at rest, as documented")
struct EncryptionAtRestTests {
    /// Runs Tests/peers/open_sealed.py, a reader written from docs/encryption.md alone.
    func openIndependently(_ services: AppServices, key: BlobKey, into output: URL) async throws -> ProcessResult {
        try await ChildProcess.run(
            Checkout.venv.appending(path: "bin/python"),
            [
                Checkout.root.appending(path: "Tests/peers/open_sealed.py").path, services.config.masterKeyPath.path, services.config.databasePath.path,
                services.config.blobsDirectory.appending(path: key.rawValue).path, key.rawValue, output.path,
            ]
        )
    }

    @Test("A stored object opens with an independent reader that follows docs/encryption.md, until the purge destroys its key")
    func documentedFormat() async throws {
        try await withTestApp(["EASEL_PROVIDER": "demo"]) { services, client in
            let (_, user) = try await APITests().signedIn(services, client)
            let key = try BlobKey("images/u\(user.id!)/t1/0.png")
            // Several chunks and a short last one.
            let bytes = Data((0..<200_001).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            try await services.blobs.put(key, data: bytes, contentType: "image/png")
            let output = services.config.workDirectory.appending(path: "opened.bin")
            let opened = try await self.openIndependently(services, key: key, into: output)
            #expect(opened.status == 0, "\(opened.stderr)")
            #expect(try Data(contentsOf: output) == bytes)

            // Another person's folder: the reader refuses, as Easel does.
            try FileManager.default.createDirectory(at: services.config.blobsDirectory.appending(path: "images/u999/t1"), withIntermediateDirectories: true)
            let moved = try BlobKey("images/u999/t1/0.png")
            try FileManager.default.copyItem(at: services.config.blobsDirectory.appending(path: key.rawValue), to: services.config.blobsDirectory.appending(path: moved.rawValue))
            #expect(try await self.openIndependently(services, key: moved, into: output).status != 0)

            let copy = try Data(contentsOf: services.config.blobsDirectory.appending(path: key.rawValue))
            _ = try await services.database.requestAccountDeletion(
                userID: user.id!, mail: MailDraft(kind: "test", toEmail: user.email, toName: nil, subject: "Bye", text: "Bye", html: nil, messageID: "<bye@example.org>"),
                outcome: "scheduled"
            )
            #expect(try await services.privacy.purge(userID: user.id!))
            try copy.write(to: services.config.blobsDirectory.appending(path: key.rawValue))
            let after = try await self.openIndependently(services, key: key, into: output)
            #expect(after.status != 0)
            #expect(after.stderr.contains("destroyed"))
        }
    }
}
