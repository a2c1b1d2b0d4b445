import EaselBlobs
import EaselTestSupport
import Foundation
import NIOCore
import Testing

@Suite("Disk blob store")
struct DiskBlobStoreTests {
    static let signer = BlobURLSigner(baseURL: URL(string: "https://img.example.org")!, secret: Data(repeating: 9, count: 32))

    @Test("Keeps the blob store contract", arguments: BlobStoreContract.Behaviour.allCases)
    func keepsTheContract(_ behaviour: BlobStoreContract.Behaviour) async throws {
        let folder = try TemporaryDirectory("easel-disk")
        defer { folder.remove() }
        let store = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        try await BlobStoreContract.check(behaviour, on: store, options: .init { url, key, _ in
            // The URL points at Easel's own /blobs route: check it is signed for this key.
            let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
            #expect(components.host == "img.example.org")
            #expect(components.path == "/blobs/" + key.rawValue)
            let expires = try #require(components.queryItems?.first { $0.name == "expires" }?.value.flatMap(Int.init))
            let signature = try #require(components.queryItems?.first { $0.name == "sig" }?.value)
            #expect(Self.signer.verify(key, expires: expires, signature: signature))
            #expect(!Self.signer.verify(try BlobKey(key.rawValue + "x"), expires: expires, signature: signature))
        })
    }

    static let escapingKeys = ["../etc/passwd", "a/../../b", "/etc/passwd", "a//b", "a/./b", "a\u{0}b", "a\nb", "a\\b", ".hidden", "a/.tmp/b", ""]

    @Test("Keys that could leave the root, or hide among temporary files, are refused", arguments: Self.escapingKeys)
    func escapingKeysAreRefused(_ raw: String) {
        #expect(throws: BlobError.self) { try BlobKey(raw) }
    }

    @Test("A write interrupted before the rename leaves nothing visible, and no temporary file")
    func interruptedWriteLeavesNothing() async throws {
        let folder = try TemporaryDirectory("easel-disk")
        defer { folder.remove() }
        let store = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        let key = try BlobKey("images/half.png")
        let failing = BlobByteStream { continuation in
            continuation.yield(ByteBuffer(repeating: 1, count: 300_000))
            continuation.finish(throwing: CancellationError())
        }
        await #expect(throws: CancellationError.self) { try await store.put(key, body: failing, contentType: nil) }
        #expect(try await store.head(key) == nil)
        #expect(try await store.list(prefix: "").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.url.appending(path: ".tmp").path).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: folder.url.appending(path: "images/half.png").path))
    }

    @Test("Temporary files left by a crash are never listed and are cleaned up at the next start")
    func crashLeftoversAreCleaned() async throws {
        let folder = try TemporaryDirectory("easel-disk")
        defer { folder.remove() }
        _ = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        // What a process killed between write and rename leaves behind.
        let leftover = folder.url.appending(path: ".tmp/3F2504E0-4F89-11D3-9A0C-0305E82C3301")
        try Data(repeating: 7, count: 1000).write(to: leftover)
        let store = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        #expect(!FileManager.default.fileExists(atPath: leftover.path))
        #expect(try await store.list(prefix: "").isEmpty)
    }

    @Test("Replacing an object swaps it whole: a reader holding the old file still reads the old bytes")
    func replaceIsAtomicForReaders() async throws {
        let folder = try TemporaryDirectory("easel-disk")
        defer { folder.remove() }
        let store = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        let key = try BlobKey("doc.txt")
        try await store.put(key, data: Data(repeating: 0x41, count: 600_000))
        let reading = try await store.get(key)
        try await store.put(key, data: Data(repeating: 0x42, count: 10))
        let old = try await reading.collect()
        #expect(old == Data(repeating: 0x41, count: 600_000))
        #expect(try await store.getData(key) == Data(repeating: 0x42, count: 10))
    }

    @Test("Sharded keys spread names over two folder levels from a hash of the name")
    func shardedKeys() throws {
        let key = try BlobKey.sharded(prefix: "images", name: "f81d4fae.png")
        let parts = key.rawValue.split(separator: "/")
        #expect(parts.count == 4)
        #expect(parts[0] == "images" && parts[3] == "f81d4fae.png")
        #expect(parts[1].count == 2 && parts[2].count == 2)
        #expect(try BlobKey.sharded(prefix: "images", name: "f81d4fae.png") == key)
        #expect(try BlobKey.sharded(prefix: "images", name: "other.png") != key)
    }
}
