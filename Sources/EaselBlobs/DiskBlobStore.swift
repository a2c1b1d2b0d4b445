import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat

/// Objects as files under one root folder. Writes go to `.tmp/` first, are fsynced, then
/// renamed into place, so no reader ever sees a partial file. Keys map to paths below the root
/// (BlobKey refuses anything that could escape it); callers spread many objects over folders
/// with `BlobKey.sharded`.
public struct DiskBlobStore: BlobStore {
    public let kind = "disk"
    public let root: URL
    private let urlSigner: BlobURLSigner
    private var temporaryFolder: URL { self.root.appending(path: ".tmp") }

    /// Creates the root if needed and removes temporary files a crashed writer left behind.
    public init(root: URL, urlSigner: BlobURLSigner) throws {
        self.root = root.standardizedFileURL
        self.urlSigner = urlSigner
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: self.temporaryFolder, withIntermediateDirectories: true)
        for leftover in (try? fileManager.contentsOfDirectory(atPath: self.temporaryFolder.path)) ?? [] {
            try? fileManager.removeItem(at: self.temporaryFolder.appending(path: leftover))
        }
    }

    func path(for key: BlobKey) -> URL {
        self.root.appending(path: key.rawValue)
    }

    @discardableResult
    public func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo {
        try await self.put(key, body: .single(data), contentType: contentType)
    }

    @discardableResult
    public func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo {
        let fileManager = FileManager.default
        let temporary = self.temporaryFolder.appending(path: UUID().uuidString)
        guard fileManager.createFile(atPath: temporary.path, contents: nil) else {
            throw BlobError.storeFailed("cannot create a file in \(self.temporaryFolder.path): check that the folder exists and is writable")
        }
        var size = 0
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            do {
                for try await chunk in body {
                    try handle.write(contentsOf: chunk.readableBytesView)
                    size += chunk.readableBytes
                }
                try handle.synchronize()
                try handle.close()
            } catch {
                try? handle.close()
                throw error
            }
            let destination = self.path(for: key)
            try fileManager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard rename(temporary.path, destination.path) == 0 else {
                throw BlobError.storeFailed("cannot move a new file into \(destination.path): \(String(cString: strerror(errno)))")
            }
            Self.fsyncFolder(destination.deletingLastPathComponent())
        } catch {
            try? fileManager.removeItem(at: temporary)
            throw error
        }
        return BlobInfo(key: key, size: size, contentType: contentType, lastModified: Date())
    }

    public func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject {
        guard let info = try await self.head(key) else { throw BlobError.notFound(key) }
        if let range {
            guard range.lowerBound >= 0, range.lowerBound < info.size else {
                throw BlobError.invalidRange(range, size: info.size)
            }
        }
        // Like HTTP: a range running past the end is cut at the end.
        let clipped = range.map { $0.lowerBound...min($0.upperBound, info.size - 1) }
        return BlobObject(info: info, range: clipped, body: try Self.readStream(self.path(for: key), range: clipped))
    }

    public func head(_ key: BlobKey) async throws -> BlobInfo? {
        let path = self.path(for: key).path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            (attributes[.type] as? FileAttributeType) == .typeRegular
        else { return nil }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        let modified = attributes[.modificationDate] as? Date
        return BlobInfo(key: key, size: size, contentType: nil, lastModified: modified)
    }

    public func delete(_ key: BlobKey) async throws {
        let path = self.path(for: key)
        do {
            try FileManager.default.removeItem(at: path)
        } catch CocoaError.fileNoSuchFile {
            return
        } catch {
            if !FileManager.default.fileExists(atPath: path.path) { return }
            throw BlobError.storeFailed("cannot delete \(path.path): \(error.localizedDescription)")
        }
    }

    public func list(prefix: String) async throws -> [BlobInfo] {
        // Walk only the deepest folder the prefix names completely.
        let folderPart = prefix.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !folderPart.isEmpty { _ = try BlobKey(folderPart) }
        let start = folderPart.isEmpty ? self.root : self.root.appending(path: folderPart)
        guard let walker = FileManager.default.enumerator(at: start, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey, .contentModificationDateKey], options: [.skipsHiddenFiles]) else {
            return []
        }
        let rootPath = self.root.path.hasSuffix("/") ? self.root.path : self.root.path + "/"
        var found: [BlobInfo] = []
        for case let url as URL in walker {
            let values = try url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey, .contentModificationDateKey])
            guard values.isRegularFile == true else { continue }
            let full = url.standardizedFileURL.path
            guard full.hasPrefix(rootPath) else { continue }
            let name = String(full.dropFirst(rootPath.count))
            guard name.hasPrefix(prefix), let key = try? BlobKey(name) else { continue }
            found.append(BlobInfo(key: key, size: values.fileSize ?? 0, contentType: nil, lastModified: values.contentModificationDate))
        }
        return found.sorted { $0.key < $1.key }
    }

    public func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL {
        self.urlSigner.url(for: key, expiresAt: Date().addingTimeInterval(Double(expiresIn.components.seconds)))
    }

    public func checkReady() async throws {
        let probe = self.temporaryFolder.appending(path: "ready-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: probe.path, contents: Data("ok".utf8)) else {
            throw BlobError.storeFailed("storage folder \(self.root.path) is not writable")
        }
        try? FileManager.default.removeItem(at: probe)
    }

    static func fsyncFolder(_ url: URL) {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// The size of the chunks `readStream` yields.
    public static let readChunkSize = 256 * 1024

    /// Reads a file (or part of it) in chunks, each read only when the consumer asks for it:
    /// a slow consumer (a download to a slow client, an upload elsewhere) never makes the
    /// file pile up in memory.
    public static func readStream(_ url: URL, range: ClosedRange<Int>?) throws -> BlobByteStream {
        let reader = ChunkedFileReader(
            handle: try FileHandle(forReadingFrom: url), start: range?.lowerBound ?? 0, end: range.map { $0.upperBound + 1 }, chunkSize: Self.readChunkSize
        )
        return AsyncThrowingStream(unfolding: { try await reader.next() })
    }
}

/// The state of one `readStream`. `@unchecked Sendable`: `AsyncThrowingStream(unfolding:)`
/// calls `next()` one call after another, and the lock covers the rest (a `deinit` racing a
/// last call).
private final class ChunkedFileReader: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: FileHandle?
    private var position: Int
    private let start: Int
    private let end: Int?
    private let chunkSize: Int
    private var sought = false

    init(handle: FileHandle, start: Int, end: Int?, chunkSize: Int) {
        self.handle = handle
        self.start = start
        self.position = start
        self.end = end
        self.chunkSize = chunkSize
    }

    deinit {
        try? self.handle?.close()
    }

    func next() async throws -> ByteBuffer? {
        try self.lock.withLock {
            guard let handle = self.handle else { return nil }
            do {
                if !self.sought {
                    try handle.seek(toOffset: UInt64(self.start))
                    self.sought = true
                }
                let want = self.end.map { min(self.chunkSize, $0 - self.position) } ?? self.chunkSize
                guard want > 0, let data = try handle.read(upToCount: want), !data.isEmpty else {
                    try? handle.close()
                    self.handle = nil
                    return nil
                }
                self.position += data.count
                return ByteBuffer(bytes: data)
            } catch {
                try? handle.close()
                self.handle = nil
                throw error
            }
        }
    }
}

extension BlobKey {
    /// `prefix/ab/cd/name`: two folder levels from a hash of `name`, so a folder never holds
    /// more than a few hundred thousand files on disk.
    public static func sharded(prefix: String, name: String) throws -> BlobKey {
        let digest = SHA256.hash(data: Data(name.utf8)).map { String(format: "%02x", $0) }.joined()
        let shards = "\(digest.prefix(2))/\(digest.dropFirst(2).prefix(2))"
        return try BlobKey(prefix.isEmpty ? "\(shards)/\(name)" : "\(prefix)/\(shards)/\(name)")
    }
}
