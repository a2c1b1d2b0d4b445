import Crypto
import EaselTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

@testable import EaselBlobs

/// Data keys held in memory, one per owner, that a test can destroy.
final class MemoryKeyring: BlobKeyring {
    private let keys = Mutex<[Int64: BlobDataKey]>([:])

    func dataKey(forOwner owner: Int64) async throws -> BlobDataKey {
        self.keys.withLock { keys in
            if let key = keys.values.first(where: { $0.owner == owner }) { return key }
            let key = BlobDataKey(id: Int64(keys.count + 1) * 10 + owner, owner: owner, key: SymmetricKey(size: .bits256))
            keys[key.id] = key
            return key
        }
    }

    func dataKey(id: Int64) async throws -> BlobDataKey? {
        self.keys.withLock { $0[id] }
    }

    func destroy(owner: Int64) {
        self.keys.withLock { keys in keys = keys.filter { $0.value.owner != owner } }
    }
}

@Suite("Encrypted blob store: each person's objects sealed under their data key")
struct EncryptedBlobStoreTests {
    static let signer = BlobURLSigner(baseURL: URL(string: "https://img.example.org")!, secret: Data(repeating: 7, count: 32))

    func withStore(_ body: (EncryptedBlobStore, DiskBlobStore, MemoryKeyring) async throws -> Void) async throws {
        let folder = try TemporaryDirectory("easel-sealed")
        defer { folder.remove() }
        let disk = try DiskBlobStore(root: folder.url, urlSigner: Self.signer)
        let keyring = MemoryKeyring()
        let store = EncryptedBlobStore(inner: disk, keyring: keyring, urlSigner: Self.signer, personalFolders: ["images", "uploads"])
        try await body(store, disk, keyring)
    }

    @Test("Keeps the blob store contract for objects it encrypts", arguments: BlobStoreContract.Behaviour.allCases)
    func keepsTheContract(_ behaviour: BlobStoreContract.Behaviour) async throws {
        try await self.withStore { store, _, _ in
            try await BlobStoreContract.check(behaviour, on: store, options: .init(keyPrefix: "images/u7") { url, key, _ in
                // Encrypted objects are only readable through Easel: the URL is its signed route.
                let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
                #expect(components.host == "img.example.org")
                #expect(components.path == "/blobs/" + key.rawValue)
                let expires = try #require(components.queryItems?.first { $0.name == "expires" }?.value.flatMap(Int.init))
                let signature = try #require(components.queryItems?.first { $0.name == "sig" }?.value)
                #expect(Self.signer.verify(key, expires: expires, signature: signature))
            })
        }
    }

    /// Sizes around the 64 KiB chunk: empty, one byte, just under, exactly, just over, several.
    static let chunkEdgeSizes: [Int] = [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 200_001]

    @Test("Any size round-trips, whole and streamed; storage holds the format's size and no plaintext", arguments: Self.chunkEdgeSizes)
    func roundTrip(_ size: Int) async throws {
        try await self.withStore { store, disk, _ in
            let bytes = BlobStoreContract.pattern(count: size, seed: size)
            let whole = try BlobKey("images/u1/whole.bin")
            let streamed = try BlobKey("uploads/u1/streamed.bin")
            #expect(try await store.put(whole, data: bytes, contentType: "image/png").size == size)
            // Uneven pieces, so chunk boundaries fall inside them.
            let pieces = stride(from: 0, to: size, by: 10_007).map { bytes[$0..<min($0 + 10_007, size)] }.map { Data($0) }
            #expect(try await store.put(streamed, body: BlobStoreContract.stream(pieces), contentType: nil).size == size)

            for key in [whole, streamed] {
                #expect(try await store.getData(key) == bytes)
                #expect(try await store.head(key)?.size == size)
                let raw = try await disk.getData(key)
                #expect(raw.count == SealedObjectFormat.sealedSize(plaintext: size))
                #expect(raw.prefix(8) == Data("EASELENC".utf8))
                if size >= 64 { #expect(raw.range(of: bytes.prefix(64)) == nil, "no plaintext in storage") }
            }
            #expect(try await store.list(prefix: "images/u1/").map(\.size) == [size])
        }
    }

    @Test("Byte ranges across chunk boundaries read exactly those bytes")
    func ranges() async throws {
        try await self.withStore { store, _, _ in
            let size = 3 * 65_536 + 1_234
            let bytes = BlobStoreContract.pattern(count: size, seed: 3)
            let key = try BlobKey("images/u2/ranged.bin")
            try await store.put(key, data: bytes, contentType: nil)
            let ranges: [ClosedRange<Int>] = [0...0, 0...65_535, 65_530...65_545, 65_536...65_536, 100_000...200_000, (size - 1)...(size - 1), 5...(size + 100)]
            for range in ranges {
                let object = try await store.get(key, range: range)
                let expected = bytes[range.lowerBound...min(range.upperBound, size - 1)]
                #expect(try await object.collect() == Data(expected), "range \(range)")
                #expect(object.range == range.lowerBound...min(range.upperBound, size - 1))
                #expect(object.info.size == size)
            }
            await #expect(throws: BlobError.invalidRange(size...(size + 1), size: size)) { _ = try await store.get(key, range: size...(size + 1)) }
        }
    }

    @Test("An altered, cut, moved or re-owned object fails to open instead of giving wrong bytes")
    func tampering() async throws {
        try await self.withStore { store, disk, _ in
            let bytes = BlobStoreContract.pattern(count: 150_000, seed: 4)
            let key = try BlobKey("images/u3/original.png")
            try await store.put(key, data: bytes, contentType: nil)
            let raw = try await disk.getData(key)

            var flipped = raw
            flipped[100_000] ^= 0x01
            try await disk.put(key, data: flipped)
            await #expect(throws: BlobError.self) { _ = try await store.getData(key) }
            await #expect(throws: BlobError.self) { _ = try await store.getData(key, range: 99_000...99_100) }

            // Cut at a chunk boundary: what remains has a valid size, but its last chunk is not marked last.
            try await disk.put(key, data: raw.prefix(SealedObjectFormat.headerSize + 2 * (65_536 + 16)))
            await #expect(throws: BlobError.self) { _ = try await store.getData(key) }

            // The same bytes under another key, or another person's folder.
            try await disk.put(try BlobKey("images/u3/renamed.png"), data: raw)
            await #expect(throws: BlobError.self) { _ = try await store.getData(try BlobKey("images/u3/renamed.png")) }
            try await disk.put(try BlobKey("images/u4/original.png"), data: raw)
            await #expect(throws: BlobError.self) { _ = try await store.getData(try BlobKey("images/u4/original.png")) }

            try await disk.put(key, data: raw)
            #expect(try await store.getData(key) == bytes)
        }
    }

    @Test("A damaged header is an error, never mistaken for a file stored before encryption")
    func damagedHeader() async throws {
        try await self.withStore { store, disk, _ in
            let key = try BlobKey("images/u3/header.png")
            try await store.put(key, data: Data(repeating: 7, count: 1_000), contentType: nil)
            let raw = try await disk.getData(key)
            var version = raw
            version[8] = 9
            try await disk.put(key, data: version)
            await #expect(throws: BlobError.self) { _ = try await store.getData(key) }
            await #expect(throws: BlobError.self) { _ = try await store.head(key) }

            // A flipped magic makes it look unencrypted: refused once everything old is sealed.
            var magic = raw
            magic[0] ^= 0x20
            try await disk.put(key, data: magic)
            store.refuseUnsealedObjects()
            await #expect(throws: BlobError.self) { _ = try await store.getData(key) }
            await #expect(throws: BlobError.self) { _ = try await store.getData(key, range: 0...9) }
        }
    }

    @Test("Sealing what was stored before encryption encrypts it in place; afterwards unencrypted objects are refused")
    func sealExisting() async throws {
        try await self.withStore { store, disk, _ in
            let old = try BlobKey("images/u8/t1/0.png")
            let bytes = BlobStoreContract.pattern(count: 150_000, seed: 8)
            try await disk.put(old, data: bytes)
            try await disk.put(try BlobKey("uploads/u8/ref.png"), data: Data("tiny".utf8))
            try await store.put(try BlobKey("images/u8/t2/0.png"), data: Data("new".utf8), contentType: nil)
            let backup = try BlobKey("backups/easel-1.db")
            try await disk.put(backup, data: Data("SQLite format 3".utf8))

            #expect(try await store.sealExisting() == 2, "the two old objects, not the new one nor the backup")
            #expect(try await disk.getData(old).prefix(8) == Data("EASELENC".utf8))
            #expect(try await store.getData(old) == bytes)
            #expect(try await store.getData(try BlobKey("uploads/u8/ref.png")) == Data("tiny".utf8))
            #expect(try await disk.getData(backup) == Data("SQLite format 3".utf8))
            #expect(try await store.sealExisting() == 0, "running it again changes nothing")

            store.refuseUnsealedObjects()
            try await disk.put(old, data: bytes)  // someone writes a plain file into storage
            await #expect(throws: BlobError.self) { _ = try await store.getData(old) }
        }
    }

    @Test("Once the data key is destroyed, a copy of the object taken before cannot be read")
    func cryptoShredding() async throws {
        try await self.withStore { store, disk, keyring in
            let key = try BlobKey("images/u5/kept-somewhere.png")
            try await store.put(key, data: Data("a picture of the sea".utf8), contentType: nil)
            let copy = try await disk.getData(key)
            keyring.destroy(owner: 5)
            try await store.delete(key)
            try await disk.put(key, data: copy)  // a backup, or an old version in the bucket, put back
            await #expect(throws: BlobError.self) { _ = try await store.getData(key) }
            await #expect(throws: BlobError.self) { _ = try await store.getData(key, range: 0...3) }
        }
    }

    @Test("Objects outside personal folders, and objects stored before encryption, pass through as they are")
    func passthrough() async throws {
        try await self.withStore { store, disk, _ in
            let backup = try BlobKey("backups/easel-1.db")
            try await store.put(backup, data: Data("SQLite format 3".utf8), contentType: nil)
            #expect(try await disk.getData(backup) == Data("SQLite format 3".utf8))

            let legacy = try BlobKey("images/u6/from-before.png")
            let bytes = BlobStoreContract.pattern(count: 70_000, seed: 6)
            try await disk.put(legacy, data: bytes)
            #expect(try await store.getData(legacy) == bytes)
            #expect(try await store.getData(legacy, range: 10...20) == bytes[10...20])
            #expect(try await store.head(legacy)?.size == 70_000)
            let tiny = try BlobKey("images/u6/tiny.txt")
            try await disk.put(tiny, data: Data("hi".utf8))
            #expect(try await store.getData(tiny) == Data("hi".utf8))
        }
    }

    @Test("Only the personal folders' objects are sealed, and downloads of them are never redirected to the bucket")
    func ownership() throws {
        let store = EncryptedBlobStore(inner: NeverStore(), keyring: MemoryKeyring(), urlSigner: Self.signer, personalFolders: ["images", "uploads"])
        #expect(store.owner(of: try BlobKey("images/u42/t1/0.png")) == 42)
        #expect(store.owner(of: try BlobKey("uploads/u7/a.png")) == 7)
        #expect(store.owner(of: try BlobKey("images/u42")) == nil)
        #expect(store.owner(of: try BlobKey("images/x42/a.png")) == nil)
        #expect(store.owner(of: try BlobKey("images/u4x/a.png")) == nil)
        #expect(store.owner(of: try BlobKey("backups/u1/a.db")) == nil)
        #expect(store.redirectsDownloads(of: try BlobKey("images/u42/t1/0.png")) == false)
        #expect(store.redirectsDownloads(of: try BlobKey("backups/easel-1.db")) == true)
    }

    @Test("Size arithmetic: plaintext and sealed sizes map both ways")
    func sizeArithmetic() {
        for size in Self.chunkEdgeSizes + [131_072, 131_088, 1_000_000] {
            #expect(SealedObjectFormat.plaintextSize(sealed: SealedObjectFormat.sealedSize(plaintext: size)) == size)
        }
        #expect(SealedObjectFormat.plaintextSize(sealed: 10) == nil)
        #expect(SealedObjectFormat.plaintextSize(sealed: SealedObjectFormat.headerSize + 65_536 + 16 + 5) == nil, "a chunk shorter than its tag")
        #expect(SealedObjectFormat.plaintextSize(sealed: SealedObjectFormat.headerSize + 65_536 + 16 + 16) == nil, "an empty chunk after a full one")
    }
}

/// A store that only answers `kind` (as S3 would), for the checks that never touch storage.
private struct NeverStore: BlobStore {
    let kind = "s3"
    func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo { throw BlobError.storeFailed("unused") }
    func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo { throw BlobError.storeFailed("unused") }
    func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject { throw BlobError.storeFailed("unused") }
    func head(_ key: BlobKey) async throws -> BlobInfo? { nil }
    func delete(_ key: BlobKey) async throws {}
    func list(prefix: String) async throws -> [BlobInfo] { [] }
    func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL { URL(string: "https://bucket.example.org/")! }
    func checkReady() async throws {}
}
