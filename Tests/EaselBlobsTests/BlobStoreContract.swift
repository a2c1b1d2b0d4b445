import EaselBlobs
import Foundation
import NIOCore
import Testing

/// What every `BlobStore` must do, written once and run against each store.
///
/// Each behaviour is a function taking `any BlobStore`; call them one by one, or run them all as
/// a parameterised test:
///
///     @Test(arguments: BlobStoreContract.Behaviour.allCases)
///     func keepsTheContract(_ behaviour: BlobStoreContract.Behaviour) async throws {
///         let store = try DiskBlobStore(root: folder, urlSigner: signer)
///         try await BlobStoreContract.check(behaviour, on: store, options: .init { url, key, bytes in
///             // a disk store's URL points at Easel's web route: check that it verifies
///         })
///     }
///
/// Every behaviour keeps its keys under `options.keyPrefix` plus a fresh UUID, so behaviours can
/// share one store and run in parallel.
enum BlobStoreContract {
    struct Options: Sendable {
        /// Checks that `url` (from `expiringURL`) gives `expected`, the bytes stored at `key`.
        /// S3: GET it with plain HTTP. Disk: the URL points at Easel's own route, so verify its
        /// signature with the `BlobURLSigner`.
        var checkExpiringURL: @Sendable (_ url: URL, _ key: BlobKey, _ expected: Data) async throws -> Void
        /// For the large upload: make it bigger than the store's part size (S3), so it goes up in parts.
        var largeObjectSize: Int
        /// How much a failing stream yields before it throws; above the part size, S3 has uploaded
        /// a part when the error comes, so its abort path is tested too.
        var failingStreamBytes: Int
        var keyPrefix: String

        init(
            largeObjectSize: Int = 3 * 1024 * 1024 + 17,
            failingStreamBytes: Int = 100_000,
            keyPrefix: String = "contract",
            checkExpiringURL: @escaping @Sendable (_ url: URL, _ key: BlobKey, _ expected: Data) async throws -> Void
        ) {
            self.checkExpiringURL = checkExpiringURL
            self.largeObjectSize = largeObjectSize
            self.failingStreamBytes = failingStreamBytes
            self.keyPrefix = keyPrefix
        }
    }

    enum Behaviour: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case bytesRoundTrip
        case multiChunkStreamRoundTrip
        case putReplacesObject
        case byteRanges
        case rangePastEndIsInvalid
        case headOfMissingIsNil
        case getOfMissingIsNotFound
        case deleteRemovesObject
        case deleteOfMissingSucceeds
        case listByPrefixIsSortedAndExact
        case throwingStreamStoresNothing
        case expiringURLServesObject
        case largeUploadRoundTrip

        var testDescription: String { self.rawValue }
    }

    static func check(_ behaviour: Behaviour, on store: any BlobStore, options: Options) async throws {
        let prefix = "\(options.keyPrefix)/\(behaviour.rawValue)-\(UUID().uuidString.lowercased())"
        switch behaviour {
        case .bytesRoundTrip: try await self.bytesRoundTrip(on: store, prefix: prefix)
        case .multiChunkStreamRoundTrip: try await self.multiChunkStreamRoundTrip(on: store, prefix: prefix)
        case .putReplacesObject: try await self.putReplacesObject(on: store, prefix: prefix)
        case .byteRanges: try await self.byteRanges(on: store, prefix: prefix)
        case .rangePastEndIsInvalid: try await self.rangePastEndIsInvalid(on: store, prefix: prefix)
        case .headOfMissingIsNil: try await self.headOfMissingIsNil(on: store, prefix: prefix)
        case .getOfMissingIsNotFound: try await self.getOfMissingIsNotFound(on: store, prefix: prefix)
        case .deleteRemovesObject: try await self.deleteRemovesObject(on: store, prefix: prefix)
        case .deleteOfMissingSucceeds: try await self.deleteOfMissingSucceeds(on: store, prefix: prefix)
        case .listByPrefixIsSortedAndExact: try await self.listByPrefixIsSortedAndExact(on: store, prefix: prefix)
        case .throwingStreamStoresNothing:
            try await self.throwingStreamStoresNothing(on: store, prefix: prefix, bytesBeforeError: options.failingStreamBytes)
        case .expiringURLServesObject:
            try await self.expiringURLServesObject(on: store, prefix: prefix, check: options.checkExpiringURL)
        case .largeUploadRoundTrip: try await self.largeUploadRoundTrip(on: store, prefix: prefix, size: options.largeObjectSize)
        }
    }

    // MARK: Behaviours

    /// Given bytes put under a key, when read back, then the same bytes and size come back.
    static func bytesRoundTrip(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/images/picture one.png")
        let bytes = self.pattern(count: 1_000, seed: 1)

        let stored = try await store.put(key, data: bytes, contentType: "image/png")
        #expect(stored.key == key)
        #expect(stored.size == bytes.count)

        let object = try await store.get(key)
        #expect(object.info.size == bytes.count)
        #expect(object.range == nil)
        #expect(try await object.collect() == bytes)

        let info = try #require(try await store.head(key))
        #expect(info.size == bytes.count)
        // A store may not keep content types (disk), but one that does keeps the right one.
        #expect(info.contentType == nil || info.contentType == "image/png")
    }

    /// Given a stream of several chunks (an empty one among them), when stored, then reading
    /// gives their concatenation.
    static func multiChunkStreamRoundTrip(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/streamed.bin")
        let chunks = [self.pattern(count: 10_000, seed: 2), Data(), self.pattern(count: 1, seed: 3), self.pattern(count: 65_537, seed: 4)]
        let whole = chunks.reduce(Data(), +)

        let stored = try await store.put(key, body: self.stream(chunks), contentType: "application/octet-stream")
        #expect(stored.size == whole.count)
        #expect(try await store.getData(key) == whole)
        #expect(try await store.head(key)?.size == whole.count)
    }

    /// Given an object, when another put uses its key, then only the new bytes are read.
    static func putReplacesObject(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/replaced.txt")
        try await store.put(key, data: self.pattern(count: 5_000, seed: 5), contentType: "text/plain")
        let replacement = self.pattern(count: 123, seed: 6)

        try await store.put(key, data: replacement, contentType: "text/plain")

        #expect(try await store.getData(key) == replacement)
        #expect(try await store.head(key)?.size == replacement.count)
    }

    /// Given a 100-byte object, when byte ranges are read, then exactly those bytes come back, with
    /// the object's full size and the range served; a range running past the end is cut there.
    static func byteRanges(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/ranged.bin")
        let bytes = self.pattern(count: 100, seed: 7)
        try await store.put(key, data: bytes, contentType: nil)

        let cases: [(asked: ClosedRange<Int>, served: ClosedRange<Int>)] = [
            (0...0, 0...0),
            (10...19, 10...19),
            (99...99, 99...99),
            (0...99, 0...99),
            (95...200, 95...99),
        ]
        for (asked, served) in cases {
            let object = try await store.get(key, range: asked)
            #expect(object.range == served, "range \(asked)")
            #expect(object.info.size == 100, "range \(asked)")
            #expect(try await object.collect() == bytes[served], "range \(asked)")
        }
    }

    /// Given a 100-byte object, when a range starting at or past its end is read, then the store
    /// says `invalidRange` with the object's size.
    static func rangePastEndIsInvalid(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/short.bin")
        try await store.put(key, data: self.pattern(count: 100, seed: 8), contentType: nil)

        for range in [100...100, 100...150, 5_000...6_000] {
            await #expect(throws: BlobError.invalidRange(range, size: 100)) {
                _ = try await store.getData(key, range: range)
            }
        }
    }

    static func headOfMissingIsNil(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/never-written.bin")
        #expect(try await store.head(key) == nil)
    }

    static func getOfMissingIsNotFound(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/never-written.bin")
        await #expect(throws: BlobError.notFound(key)) {
            _ = try await store.get(key, range: nil)
        }
        await #expect(throws: BlobError.notFound(key)) {
            _ = try await store.get(key, range: 0...10)
        }
    }

    /// Given an object, when it is deleted, then it is gone for head, get and list.
    static func deleteRemovesObject(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/doomed.bin")
        try await store.put(key, data: self.pattern(count: 10, seed: 9), contentType: nil)
        #expect(try await store.head(key) != nil)

        try await store.delete(key)

        #expect(try await store.head(key) == nil)
        await #expect(throws: BlobError.notFound(key)) {
            _ = try await store.get(key, range: nil)
        }
        #expect(try await store.list(prefix: prefix).isEmpty)
    }

    static func deleteOfMissingSucceeds(on store: any BlobStore, prefix: String) async throws {
        let key = try BlobKey("\(prefix)/never-written.bin")
        try await store.delete(key)
        #expect(try await store.head(key) == nil)
    }

    /// Given objects under several prefixes, when listed by prefix, then exactly the keys that
    /// start with that string come back, sorted, with their sizes.
    static func listByPrefixIsSortedAndExact(on store: any BlobStore, prefix: String) async throws {
        let sizes = ["p/b": 2, "p/a": 1, "p/c/d": 3, "p-other/x": 4, "q/y": 5]
        for (name, size) in sizes {
            try await store.put(BlobKey("\(prefix)/\(name)"), data: self.pattern(count: size, seed: size), contentType: nil)
        }

        let underP = try await store.list(prefix: "\(prefix)/p/")
        #expect(underP.map(\.key.rawValue) == ["p/a", "p/b", "p/c/d"].map { "\(prefix)/\($0)" })
        #expect(underP.map(\.size) == [1, 2, 3])

        // A prefix is a string prefix, not a folder: "p" also matches "p-other".
        let startingWithP = try await store.list(prefix: "\(prefix)/p")
        #expect(startingWithP.map(\.key.rawValue) == ["p-other/x", "p/a", "p/b", "p/c/d"].map { "\(prefix)/\($0)" })

        #expect(try await store.list(prefix: "\(prefix)/p/c").map(\.key.rawValue) == ["\(prefix)/p/c/d"])
        #expect(try await store.list(prefix: "\(prefix)/nothing-here/").isEmpty)
        #expect(try await store.list(prefix: prefix).count == sizes.count)
    }

    /// Given a stream that throws midway, when it is stored, then the stream's error comes back,
    /// a new key holds nothing, and an existing object keeps its old bytes.
    static func throwingStreamStoresNothing(on store: any BlobStore, prefix: String, bytesBeforeError: Int) async throws {
        let freshKey = try BlobKey("\(prefix)/fresh.bin")
        let existingKey = try BlobKey("\(prefix)/existing.bin")
        let original = self.pattern(count: 321, seed: 10)
        try await store.put(existingKey, data: original, contentType: nil)

        for key in [freshKey, existingKey] {
            await #expect(throws: ContractStreamError.self) {
                try await store.put(key, body: self.failingStream(bytesBeforeError: bytesBeforeError), contentType: nil)
            }
        }

        #expect(try await store.head(freshKey) == nil)
        #expect(try await store.getData(existingKey) == original)
        #expect(try await store.list(prefix: prefix).map(\.key) == [existingKey])
    }

    /// Given an object, when an expiring URL is made for it, then the URL serves its bytes.
    static func expiringURLServesObject(
        on store: any BlobStore,
        prefix: String,
        check: @Sendable (_ url: URL, _ key: BlobKey, _ expected: Data) async throws -> Void
    ) async throws {
        let key = try BlobKey("\(prefix)/shared picture+1.png")
        let bytes = self.pattern(count: 4_321, seed: 11)
        try await store.put(key, data: bytes, contentType: "image/png")

        let url = try await store.expiringURL(for: key, expiresIn: .seconds(300))

        try await check(url, key, bytes)
    }

    /// Given an object bigger than a part, when stored from a stream of uneven chunks and from
    /// one buffer, then both read back whole.
    static func largeUploadRoundTrip(on store: any BlobStore, prefix: String, size: Int) async throws {
        let bytes = self.pattern(count: size, seed: 12)
        var chunks: [Data] = []
        var offset = 0
        while offset < bytes.count {
            let length = min(700_001, bytes.count - offset)
            chunks.append(bytes.subdata(in: offset..<offset + length))
            offset += length
        }

        let streamedKey = try BlobKey("\(prefix)/streamed-large.bin")
        let streamed = try await store.put(streamedKey, body: self.stream(chunks), contentType: "application/octet-stream")
        #expect(streamed.size == size)
        #expect(try await store.head(streamedKey)?.size == size)
        #expect(try await store.getData(streamedKey) == bytes)

        let bufferedKey = try BlobKey("\(prefix)/buffered-large.bin")
        let buffered = try await store.put(bufferedKey, data: ByteBuffer(bytes: bytes), contentType: "application/octet-stream")
        #expect(buffered.size == size)
        #expect(try await store.getData(bufferedKey) == bytes)
    }

    // MARK: Helpers

    /// Bytes that differ from position to position, so shifted or repeated data cannot pass.
    static func pattern(count: Int, seed: Int) -> Data {
        var generator = seed &* 2_654_435_761 &+ 1
        return Data(
            (0..<count).map { _ in
                generator = generator &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: generator >> 33)
            }
        )
    }

    static func stream(_ chunks: [Data]) -> BlobByteStream {
        AsyncThrowingStream { continuation in
            for chunk in chunks {
                continuation.yield(ByteBuffer(bytes: chunk))
            }
            continuation.finish()
        }
    }

    /// Yields `bytesBeforeError` bytes in 64 KiB chunks, then throws `ContractStreamError`.
    static func failingStream(bytesBeforeError: Int) -> BlobByteStream {
        AsyncThrowingStream { continuation in
            var remaining = bytesBeforeError
            var seed = 100
            while remaining > 0 {
                let length = min(65_536, remaining)
                continuation.yield(ByteBuffer(bytes: self.pattern(count: length, seed: seed)))
                remaining -= length
                seed += 1
            }
            continuation.finish(throwing: ContractStreamError())
        }
    }
}

/// The error a contract stream throws midway, to be seen again by the caller of `put`.
struct ContractStreamError: Error, Equatable {}
