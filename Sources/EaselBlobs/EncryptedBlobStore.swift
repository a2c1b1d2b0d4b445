import Crypto
import Foundation
import NIOCore
import Synchronization

/// A person's data key, as an `EncryptedBlobStore` uses it.
public struct BlobDataKey: Sendable {
    /// Written in every object's header, so a reader finds the key without knowing the owner.
    public var id: Int64
    public var owner: Int64
    public var key: SymmetricKey

    public init(id: Int64, owner: Int64, key: SymmetricKey) {
        self.id = id
        self.owner = owner
        self.key = key
    }
}

/// Where an `EncryptedBlobStore` gets its keys: one data key per person.
public protocol BlobKeyring: Sendable {
    /// The person's data key, made on first use. Throws when none may be made (the person is
    /// being purged, or no longer exists).
    func dataKey(forOwner owner: Int64) async throws -> BlobDataKey
    /// The key with this id; nil once it has been destroyed.
    func dataKey(id: Int64) async throws -> BlobDataKey?
}

/// Encrypts every object under a person's folders (`images/u42/…`, `uploads/u42/…`, …) with
/// AES-256-GCM under that person's data key, and passes everything else (backups) through.
///
/// Objects are sealed in 64 KiB chunks (the STREAM construction: the nonce is a random
/// per-object prefix, the chunk's index and a last-chunk flag), so writes and reads stream
/// with constant memory, a byte range costs only the chunks it touches, and truncating,
/// reordering or swapping chunks or whole objects fails authentication. Destroying the data
/// key makes every copy unreadable: the bucket's old versions, backups, a stolen disk.
///
/// Objects stored before encryption existed (no header) are read as they are until
/// `sealExisting` has sealed them; from then on such an object is refused.
public struct EncryptedBlobStore: BlobStore {
    public let inner: any BlobStore
    private let keyring: any BlobKeyring
    private let urlSigner: BlobURLSigner
    /// First key components whose second component names the owner ("u42").
    public let personalFolders: Set<String>
    private let unsealed = UnsealedObjects()

    public init(inner: any BlobStore, keyring: any BlobKeyring, urlSigner: BlobURLSigner, personalFolders: Set<String>) {
        self.inner = inner
        self.keyring = keyring
        self.urlSigner = urlSigner
        self.personalFolders = personalFolders
    }

    /// From now on an object in a personal folder without a header is refused rather than read
    /// as stored before encryption (call once `sealExisting` has found none left).
    public func refuseUnsealedObjects() {
        self.unsealed.refuse()
    }

    /// Encrypts every object of a personal folder still stored as it was before encryption
    /// (streamed: read in place and written back sealed). Returns how many were sealed.
    public func sealExisting() async throws -> Int {
        var sealed = 0
        for folder in self.personalFolders.sorted() {
            for info in try await self.inner.list(prefix: folder + "/") where self.owner(of: info.key) != nil {
                guard let (_, first) = try await self.peek(info.key), try SealedObjectFormat.Header(first) == nil else { continue }
                let object = try await self.inner.get(info.key, range: nil)
                try await self.put(info.key, body: object.body, contentType: object.info.contentType ?? info.contentType)
                sealed += 1
            }
        }
        return sealed
    }

    public var kind: String { self.inner.kind }

    /// The person whose data key seals `key`, or nil when the object is not encrypted.
    public func owner(of key: BlobKey) -> Int64? {
        let parts = key.rawValue.split(separator: "/", maxSplits: 2)
        guard parts.count == 3, self.personalFolders.contains(String(parts[0])), parts[1].first == "u" else { return nil }
        let digits = parts[1].dropFirst()
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int64(digits)
    }

    @discardableResult
    public func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo {
        guard let owner = self.owner(of: key) else { return try await self.inner.put(key, data: data, contentType: contentType) }
        let dataKey = try await self.keyring.dataKey(forOwner: owner)
        let header = SealedObjectFormat.Header(dataKeyID: dataKey.id)
        var sealer = SealedObjectFormat.Sealer(header: header, key: dataKey.key, blobKey: key)
        var output = ByteBuffer()
        output.reserveCapacity(SealedObjectFormat.sealedSize(plaintext: data.readableBytes))
        output.writeBytes(header.bytes)
        var remaining = data
        while remaining.readableBytes > SealedObjectFormat.chunkSize {
            try sealer.seal(remaining.readSlice(length: SealedObjectFormat.chunkSize)!.readableBytesView, last: false, into: &output)
        }
        try sealer.seal(remaining.readableBytesView, last: true, into: &output)
        var info = try await self.inner.put(key, data: output, contentType: contentType)
        info.size = data.readableBytes
        return info
    }

    @discardableResult
    public func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo {
        guard let owner = self.owner(of: key) else { return try await self.inner.put(key, body: body, contentType: contentType) }
        let dataKey = try await self.keyring.dataKey(forOwner: owner)
        let header = SealedObjectFormat.Header(dataKeyID: dataKey.id)
        let reader = SealingReader(source: body.makeAsyncIterator(), header: header, sealer: .init(header: header, key: dataKey.key, blobKey: key))
        var info = try await self.inner.put(key, body: AsyncThrowingStream(unfolding: { try await reader.next() }), contentType: contentType)
        info.size = reader.plaintextSize
        return info
    }

    public func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject {
        guard self.owner(of: key) != nil else { return try await self.inner.get(key, range: range) }
        guard let range else { return try await self.getWhole(key) }
        guard let (sealedInfo, first) = try await self.peek(key) else { throw BlobError.notFound(key) }
        guard let header = try self.classify(key, firstBytes: first) else {
            return try await self.inner.get(key, range: range)  // stored before encryption
        }
        let dataKey = try await self.dataKey(for: header, key: key)
        let size = try self.plaintextSize(of: key, sealed: sealedInfo.size)
        guard range.lowerBound >= 0, range.lowerBound < size else { throw BlobError.invalidRange(range, size: size) }
        let clipped = range.lowerBound...min(range.upperBound, size - 1)
        let layout = SealedObjectFormat.Layout(plaintextSize: size)
        let firstChunk = clipped.lowerBound / SealedObjectFormat.chunkSize
        let lastChunk = clipped.upperBound / SealedObjectFormat.chunkSize
        let sealedRange = layout.sealedRange(chunks: firstChunk...lastChunk)
        let object = try await self.inner.get(key, range: sealedRange)
        let reader = OpeningReader(
            source: object.body.makeAsyncIterator(), buffered: ByteBuffer(),
            opener: .init(header: header, key: dataKey.key, blobKey: key), layout: layout, chunk: firstChunk,
            skip: clipped.lowerBound - firstChunk * SealedObjectFormat.chunkSize, remaining: clipped.count
        )
        var info = object.info
        info.size = size
        return BlobObject(info: info, range: clipped, body: AsyncThrowingStream(unfolding: { try await reader.next() }))
    }

    private func getWhole(_ key: BlobKey) async throws -> BlobObject {
        let object = try await self.inner.get(key, range: nil)
        var source = object.body.makeAsyncIterator()
        var buffered = ByteBuffer()
        while buffered.readableBytes < SealedObjectFormat.headerSize, let chunk = try await source.next() {
            buffered.writeImmutableBuffer(chunk)
        }
        let first = Data(buffered.readableBytesView.prefix(SealedObjectFormat.headerSize))
        guard let header = try self.classify(key, firstBytes: first) else {
            // Stored before encryption: hand back what was read and the rest as they are.
            let passthrough = PassthroughReader(source: source, first: buffered)
            return BlobObject(info: object.info, range: nil, body: AsyncThrowingStream(unfolding: { try await passthrough.next() }))
        }
        let dataKey = try await self.dataKey(for: header, key: key)
        let size = try self.plaintextSize(of: key, sealed: object.info.size)
        buffered.moveReaderIndex(forwardBy: SealedObjectFormat.headerSize)
        let reader = OpeningReader(
            source: source, buffered: buffered, opener: .init(header: header, key: dataKey.key, blobKey: key),
            layout: SealedObjectFormat.Layout(plaintextSize: size), chunk: 0, skip: 0, remaining: size
        )
        var info = object.info
        info.size = size
        return BlobObject(info: info, range: nil, body: AsyncThrowingStream(unfolding: { try await reader.next() }))
    }

    /// The stored object's metadata (its whole size) and first bytes, in one ranged read; nil
    /// when there is no such object.
    private func peek(_ key: BlobKey) async throws -> (info: BlobInfo, first: Data)? {
        do {
            let object = try await self.inner.get(key, range: 0...(SealedObjectFormat.headerSize - 1))
            return (object.info, try await object.collect())
        } catch let error as BlobError {
            switch error {
            case .notFound: return nil
            case .invalidRange:
                // An empty object has no first byte to ask for.
                return try await self.inner.head(key).map { ($0, Data()) }
            default: throw error
            }
        }
    }

    /// The header, or nil for an object stored before encryption, which is only accepted until
    /// `EncryptedBlobStore.sealExisting` has sealed them all: after that, an object without a
    /// header was put there by someone else, and is refused.
    private func classify(_ key: BlobKey, firstBytes: Data) throws -> SealedObjectFormat.Header? {
        if let header = try SealedObjectFormat.Header(firstBytes) { return header }
        guard self.unsealed.accepted else {
            throw BlobError.undecryptable("\(key) is not encrypted, although every object in a personal folder is: it was replaced in storage")
        }
        return nil
    }

    private func plaintextSize(of key: BlobKey, sealed: Int) throws -> Int {
        guard let size = SealedObjectFormat.plaintextSize(sealed: sealed) else {
            throw BlobError.undecryptable("\(key) is cut short: its size does not match the encrypted format")
        }
        return size
    }

    private func dataKey(for header: SealedObjectFormat.Header, key: BlobKey) async throws -> BlobDataKey {
        guard let dataKey = try await self.keyring.dataKey(id: header.dataKeyID) else {
            throw BlobError.undecryptable("\(key) cannot be read: its data key was destroyed when its owner's account was purged")
        }
        guard dataKey.owner == self.owner(of: key) else {
            throw BlobError.undecryptable("\(key) is sealed with another person's key")
        }
        return dataKey
    }

    public func head(_ key: BlobKey) async throws -> BlobInfo? {
        guard self.owner(of: key) != nil else { return try await self.inner.head(key) }
        guard case (var info, let first)? = try await self.peek(key) else { return nil }
        guard try self.classify(key, firstBytes: first) != nil else { return info }
        info.size = try self.plaintextSize(of: key, sealed: info.size)
        return info
    }

    public func delete(_ key: BlobKey) async throws {
        try await self.inner.delete(key)
    }

    /// Sizes under personal folders are those of the plaintext (for objects stored before
    /// encryption, until `sealExisting` has run, a little smaller than they are).
    public func list(prefix: String) async throws -> [BlobInfo] {
        try await self.inner.list(prefix: prefix).map { info in
            guard self.owner(of: info.key) != nil, let size = SealedObjectFormat.plaintextSize(sealed: info.size) else { return info }
            var info = info
            info.size = size
            return info
        }
    }

    /// An encrypted object is only readable through Easel, so its URL is Easel's own signed
    /// `/blobs/…` route (which decrypts), never a presigned bucket URL.
    public func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL {
        guard self.owner(of: key) != nil else { return try await self.inner.expiringURL(for: key, expiresIn: expiresIn) }
        return self.urlSigner.url(for: key, expiresAt: Date().addingTimeInterval(Double(expiresIn.components.seconds)))
    }

    public func redirectsDownloads(of key: BlobKey) -> Bool {
        self.owner(of: key) == nil && self.inner.redirectsDownloads(of: key)
    }

    public func checkReady() async throws {
        try await self.inner.checkReady()
    }
}

/// The layout of an encrypted object:
///
///     header (40 bytes): "EASELENC" · version 1 · 7-byte random nonce prefix · data key id (Int64, big-endian)
///                        · 16-byte random salt
///     chunks: AES-256-GCM of up to 64 KiB of plaintext each, followed by its 16-byte tag
///
/// Each object has its own key, HKDF-SHA256 of the data key with the salt and the object's
/// key, so nonces never repeat under one key however many objects a person has. Chunk i's
/// nonce is the prefix · i (UInt32, big-endian) · 1 for the last chunk, else 0; its additional
/// data is the header and the object's key, so an object moved to another key or given another
/// header fails to open. An empty object has one empty last chunk.
public enum SealedObjectFormat {
    public static let chunkSize = 64 * 1024
    public static let tagSize = 16
    public static let headerSize = 40
    static let magic = Array("EASELENC".utf8)
    static let version: UInt8 = 1

    public struct Header: Sendable {
        public var dataKeyID: Int64
        var noncePrefix: [UInt8]
        var salt: [UInt8]

        init(dataKeyID: Int64) {
            self.dataKeyID = dataKeyID
            var generator = SystemRandomNumberGenerator()
            self.noncePrefix = (0..<7).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            self.salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        }

        /// Nil when `bytes` do not begin with the format's magic; throws for an unknown version
        /// (a damaged header must not pass for a file stored before encryption).
        public init?(_ bytes: Data) throws {
            let bytes = Array(bytes.prefix(SealedObjectFormat.headerSize))
            guard bytes.count >= 8, Array(bytes[0..<8]) == SealedObjectFormat.magic else { return nil }
            guard bytes.count == SealedObjectFormat.headerSize, bytes[8] == SealedObjectFormat.version else {
                throw BlobError.undecryptable("an encrypted object has a damaged header or a format this Easel does not know")
            }
            self.noncePrefix = Array(bytes[9..<16])
            self.dataKeyID = bytes[16..<24].reduce(Int64(0)) { ($0 << 8) | Int64($1) }
            self.salt = Array(bytes[24..<40])
        }

        var bytes: [UInt8] {
            SealedObjectFormat.magic + [SealedObjectFormat.version] + self.noncePrefix
                + (0..<8).map { UInt8(truncatingIfNeeded: self.dataKeyID >> (56 - 8 * $0)) } + self.salt
        }

        /// The object's own key: HKDF-SHA256 of the data key, salted, bound to the object's key.
        func objectKey(_ dataKey: SymmetricKey, blobKey: BlobKey) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: dataKey, salt: self.salt, info: Array("easel blob v1 ".utf8) + Array(blobKey.rawValue.utf8), outputByteCount: 32
            )
        }
    }

    public static func sealedSize(plaintext: Int) -> Int {
        let chunks = max(1, (plaintext + self.chunkSize - 1) / self.chunkSize)
        return self.headerSize + plaintext + chunks * self.tagSize
    }

    /// Nil for a size no encrypted object can have.
    public static func plaintextSize(sealed: Int) -> Int? {
        let body = sealed - self.headerSize
        guard body >= self.tagSize else { return nil }
        let full = body / (self.chunkSize + self.tagSize)
        let rest = body % (self.chunkSize + self.tagSize)
        let size = rest == 0 ? full * self.chunkSize : full * self.chunkSize + rest - self.tagSize
        // Only sizes the writer makes: no empty chunk after a full one.
        return rest == 0 || rest >= self.tagSize ? (self.sealedSize(plaintext: size) == sealed ? size : nil) : nil
    }

    struct Layout {
        var plaintextSize: Int
        var chunkCount: Int { max(1, (self.plaintextSize + SealedObjectFormat.chunkSize - 1) / SealedObjectFormat.chunkSize) }

        func sealedLength(chunk: Int) -> Int {
            let plain = chunk == self.chunkCount - 1 ? self.plaintextSize - chunk * SealedObjectFormat.chunkSize : SealedObjectFormat.chunkSize
            return plain + SealedObjectFormat.tagSize
        }

        func sealedRange(chunks: ClosedRange<Int>) -> ClosedRange<Int> {
            let stride = SealedObjectFormat.chunkSize + SealedObjectFormat.tagSize
            let start = SealedObjectFormat.headerSize + chunks.lowerBound * stride
            let end = SealedObjectFormat.headerSize + chunks.upperBound * stride + self.sealedLength(chunk: chunks.upperBound) - 1
            return start...end
        }
    }

    static func nonce(prefix: [UInt8], chunk: Int, last: Bool) throws -> AES.GCM.Nonce {
        guard chunk <= Int(UInt32.max) else { throw BlobError.storeFailed("an object is too large to encrypt") }
        let index = UInt32(chunk)
        return try AES.GCM.Nonce(data: prefix + [UInt8(index >> 24), UInt8(truncatingIfNeeded: index >> 16), UInt8(truncatingIfNeeded: index >> 8), UInt8(truncatingIfNeeded: index), last ? 1 : 0])
    }

    struct Sealer {
        let prefix: [UInt8]
        let key: SymmetricKey
        let additionalData: [UInt8]
        var chunk = 0

        init(header: Header, key: SymmetricKey, blobKey: BlobKey) {
            self.prefix = header.noncePrefix
            self.key = header.objectKey(key, blobKey: blobKey)
            self.additionalData = header.bytes + Array(blobKey.rawValue.utf8)
        }

        /// Seals one chunk and appends it, with its tag, to `output`.
        mutating func seal(_ plaintext: some DataProtocol, last: Bool, into output: inout ByteBuffer) throws {
            let box = try AES.GCM.seal(plaintext, using: self.key, nonce: SealedObjectFormat.nonce(prefix: self.prefix, chunk: self.chunk, last: last), authenticating: self.additionalData)
            self.chunk += 1
            output.writeBytes(box.ciphertext)
            output.writeBytes(box.tag)
        }
    }

    struct Opener {
        let prefix: [UInt8]
        let key: SymmetricKey
        let additionalData: [UInt8]
        let blobKey: BlobKey

        init(header: Header, key: SymmetricKey, blobKey: BlobKey) {
            self.prefix = header.noncePrefix
            self.key = header.objectKey(key, blobKey: blobKey)
            self.additionalData = header.bytes + Array(blobKey.rawValue.utf8)
            self.blobKey = blobKey
        }

        func open(_ bytes: ByteBufferView, chunk: Int, last: Bool) throws -> Data {
            do {
                let box = try AES.GCM.SealedBox(
                    nonce: SealedObjectFormat.nonce(prefix: self.prefix, chunk: chunk, last: last),
                    ciphertext: bytes.dropLast(SealedObjectFormat.tagSize), tag: bytes.suffix(SealedObjectFormat.tagSize)
                )
                return try AES.GCM.open(box, using: self.key, authenticating: self.additionalData)
            } catch {
                throw BlobError.undecryptable("\(self.blobKey) failed its integrity check: it was altered, or sealed with another key")
            }
        }
    }
}

/// Pulls plaintext from `source` and hands out the header and then one sealed chunk per call.
/// One chunk is held back until the next arrives, so the last one is known when sealed.
private final class SealingReader: @unchecked Sendable {
    private var source: BlobByteStream.AsyncIterator
    private var sealer: SealedObjectFormat.Sealer
    private var pending = ByteBuffer()
    private var header: [UInt8]?
    private var sourceDone = false
    private var finished = false
    /// Valid once the stream has finished.
    private(set) var plaintextSize = 0

    init(source: BlobByteStream.AsyncIterator, header: SealedObjectFormat.Header, sealer: SealedObjectFormat.Sealer) {
        self.source = source
        self.header = header.bytes
        self.sealer = sealer
    }

    func next() async throws -> ByteBuffer? {
        if self.finished { return nil }
        var output = ByteBuffer()
        if let header = self.header {
            output.writeBytes(header)
            self.header = nil
        }
        while !self.sourceDone, self.pending.readableBytes <= SealedObjectFormat.chunkSize {
            if let next = try await self.source.next() {
                self.pending.writeImmutableBuffer(next)
                self.plaintextSize += next.readableBytes
            } else {
                self.sourceDone = true
            }
        }
        if self.pending.readableBytes > SealedObjectFormat.chunkSize {
            try self.sealer.seal(self.pending.readableBytesView.prefix(SealedObjectFormat.chunkSize), last: false, into: &output)
            self.pending.moveReaderIndex(forwardBy: SealedObjectFormat.chunkSize)
            self.pending.discardReadBytes()
        } else {
            // A canceled upload must not end in a well-formed but shortened object.
            try Task.checkCancellation()
            try self.sealer.seal(self.pending.readableBytesView, last: true, into: &output)
            self.finished = true
        }
        return output
    }
}

/// Pulls sealed chunks from `source` and hands out their plaintext, cut to the range asked for.
private final class OpeningReader: @unchecked Sendable {
    private var source: BlobByteStream.AsyncIterator
    private var buffered: ByteBuffer
    private let opener: SealedObjectFormat.Opener
    private let layout: SealedObjectFormat.Layout
    private var chunk: Int
    private var skip: Int
    private var remaining: Int

    init(
        source: BlobByteStream.AsyncIterator, buffered: ByteBuffer, opener: SealedObjectFormat.Opener, layout: SealedObjectFormat.Layout,
        chunk: Int, skip: Int, remaining: Int
    ) {
        self.source = source
        self.buffered = buffered
        self.opener = opener
        self.layout = layout
        self.chunk = chunk
        self.skip = skip
        self.remaining = remaining
    }

    func next() async throws -> ByteBuffer? {
        // An empty object still has its one (empty) chunk to check.
        while self.chunk < self.layout.chunkCount, self.remaining > 0 || self.layout.plaintextSize == 0 {
            let length = self.layout.sealedLength(chunk: self.chunk)
            while self.buffered.readableBytes < length {
                guard let more = try await self.source.next() else {
                    throw BlobError.undecryptable("\(self.opener.blobKey) ended early: the stored object is cut short")
                }
                self.buffered.writeImmutableBuffer(more)
            }
            let last = self.chunk == self.layout.chunkCount - 1
            var plaintext = try self.opener.open(self.buffered.readableBytesView.prefix(length), chunk: self.chunk, last: last)[...]
            // No slice of the buffer is alive now, so this moves the rest down without a copy of it all.
            self.buffered.moveReaderIndex(forwardBy: length)
            self.buffered.discardReadBytes()
            self.chunk += 1
            if self.layout.plaintextSize == 0 { return nil }
            plaintext = plaintext.dropFirst(self.skip)
            self.skip = 0
            plaintext = plaintext.prefix(self.remaining)
            self.remaining -= plaintext.count
            if !plaintext.isEmpty { return ByteBuffer(bytes: plaintext) }
        }
        return nil
    }
}

/// Whether objects without a header are still read as stored before encryption.
private final class UnsealedObjects: Sendable {
    private let acceptedState = Mutex(true)
    var accepted: Bool { self.acceptedState.withLock { $0 } }
    func refuse() { self.acceptedState.withLock { $0 = false } }
}

/// Hands out what was already read, then the rest of `source` as it is.
private final class PassthroughReader: @unchecked Sendable {
    private var source: BlobByteStream.AsyncIterator
    private var first: ByteBuffer?

    init(source: BlobByteStream.AsyncIterator, first: ByteBuffer) {
        self.source = source
        self.first = first.readableBytes > 0 ? first : nil
    }

    func next() async throws -> ByteBuffer? {
        if let first = self.first {
            self.first = nil
            return first
        }
        return try await self.source.next()
    }
}
