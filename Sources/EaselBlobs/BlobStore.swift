import Foundation
import NIOCore

/// Where image files and backups live: a folder on disk or an S3-compatible bucket.
///
/// Every implementation passes the same contract suite (Tests/EaselBlobsTests/BlobStoreContract.swift).
public protocol BlobStore: Sendable {
    /// A short name for logs and `/readyz`: "disk" or "s3".
    var kind: String { get }

    /// Stores `data` under `key`, replacing any object there. Readers never see a partial object.
    @discardableResult
    func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo

    /// Stores everything `body` yields under `key`, without holding the whole object in memory.
    /// When `body` throws, nothing is stored and the error is rethrown.
    @discardableResult
    func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo

    /// Reads an object, or the inclusive byte `range` of it. Throws `BlobError.notFound`.
    func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject

    /// The object's size and metadata, or nil when there is no such object.
    func head(_ key: BlobKey) async throws -> BlobInfo?

    /// Removes an object; removing a missing object is not an error.
    func delete(_ key: BlobKey) async throws

    /// Every object whose key starts with `prefix`, sorted by key.
    func list(prefix: String) async throws -> [BlobInfo]

    /// A URL anyone holding it can GET the object with until it expires.
    func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL

    /// Throws a `BlobError` saying what is wrong when the store cannot be used (for `/readyz`).
    func checkReady() async throws

    /// Whether a download of `key` is best answered by redirecting to `expiringURL` (S3)
    /// rather than by streaming the bytes through Easel.
    func redirectsDownloads(of key: BlobKey) -> Bool
}

/// A stream of bytes, as uploads arrive or downloads leave.
public typealias BlobByteStream = AsyncThrowingStream<ByteBuffer, any Error>

extension BlobStore {
    @discardableResult
    public func put(_ key: BlobKey, data: Data, contentType: String? = nil) async throws -> BlobInfo {
        try await self.put(key, data: ByteBuffer(bytes: data), contentType: contentType)
    }

    public func redirectsDownloads(of key: BlobKey) -> Bool { self.kind == "s3" }

    public func get(_ key: BlobKey) async throws -> BlobObject {
        try await self.get(key, range: nil)
    }

    /// Reads a whole object into memory; for small objects (thumbnails, backups in tests).
    public func getData(_ key: BlobKey, range: ClosedRange<Int>? = nil) async throws -> Data {
        let object = try await self.get(key, range: range)
        return try await object.collect()
    }
}

/// A validated object key: a relative, slash-separated path that cannot escape a store's root.
public struct BlobKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let rawValue: String

    /// At most 1,024 bytes (S3's limit); components are non-empty, never "." or "..", never start
    /// with "." (the disk store keeps its temporary files there), and hold no control characters
    /// or backslashes.
    public init(_ rawValue: String) throws {
        guard !rawValue.isEmpty else { throw BlobError.invalidKey(rawValue, "it is empty") }
        guard rawValue.utf8.count <= 1024 else { throw BlobError.invalidKey(rawValue, "it is longer than 1024 bytes") }
        guard !rawValue.hasPrefix("/") else { throw BlobError.invalidKey(rawValue, "it is an absolute path") }
        for scalar in rawValue.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value) {
                throw BlobError.invalidKey(rawValue, "it holds a control character")
            }
            if scalar == "\\" { throw BlobError.invalidKey(rawValue, "it holds a backslash") }
        }
        for component in rawValue.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { throw BlobError.invalidKey(rawValue, "it has an empty path component") }
            if component == "." || component == ".." { throw BlobError.invalidKey(rawValue, "it has a '.' or '..' component") }
            if component.hasPrefix(".") { throw BlobError.invalidKey(rawValue, "a path component starts with '.'") }
        }
        self.rawValue = rawValue
    }

    public var description: String { self.rawValue }

    public static func < (lhs: BlobKey, rhs: BlobKey) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What a store knows about one object.
public struct BlobInfo: Sendable, Equatable {
    public var key: BlobKey
    public var size: Int
    public var contentType: String?
    public var lastModified: Date?
    public var etag: String?

    public init(key: BlobKey, size: Int, contentType: String? = nil, lastModified: Date? = nil, etag: String? = nil) {
        self.key = key
        self.size = size
        self.contentType = contentType
        self.lastModified = lastModified
        self.etag = etag
    }
}

/// An object being read: its metadata, the byte range being sent, and the bytes.
public struct BlobObject: Sendable {
    public var info: BlobInfo
    /// The inclusive range of bytes `body` yields, when a range was asked for.
    public var range: ClosedRange<Int>?
    public var body: BlobByteStream

    public init(info: BlobInfo, range: ClosedRange<Int>?, body: BlobByteStream) {
        self.info = info
        self.range = range
        self.body = body
    }

    public func collect() async throws -> Data {
        var data = Data()
        for try await chunk in self.body {
            data.append(contentsOf: chunk.readableBytesView)
        }
        return data
    }
}

public enum BlobError: Error, Equatable, CustomStringConvertible {
    case invalidKey(String, String)
    case notFound(BlobKey)
    case invalidRange(ClosedRange<Int>, size: Int)
    /// The store refused our credentials or permissions.
    case accessDenied(String)
    /// The bucket or folder does not exist.
    case missingContainer(String)
    /// Anything else the store said, in words a person can act on.
    case storeFailed(String)
    /// An encrypted object whose key is gone (its owner was purged) or that fails its integrity check.
    case undecryptable(String)

    public var description: String {
        switch self {
        case .invalidKey(let key, let why): "invalid blob key \"\(key)\": \(why)"
        case .notFound(let key): "no object at \"\(key)\""
        case .invalidRange(let range, let size): "byte range \(range.lowerBound)-\(range.upperBound) is outside an object of \(size) bytes"
        case .accessDenied(let message): message
        case .missingContainer(let message): message
        case .storeFailed(let message): message
        case .undecryptable(let message): message
        }
    }
}

extension BlobByteStream {
    /// A stream that yields one buffer and finishes.
    public static func single(_ buffer: ByteBuffer) -> BlobByteStream {
        AsyncThrowingStream { continuation in
            continuation.yield(buffer)
            continuation.finish()
        }
    }
}
