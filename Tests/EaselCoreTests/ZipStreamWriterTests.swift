import Crypto
import EaselTestSupport
import Foundation
import NIOCore
import Testing

@testable import EaselCore

@Suite("ZIP writer: streamed, CRC while writing, data descriptors, ZIP64, read back by Python's zipfile")
struct ZipStreamWriterTests {
    /// Writes `files` (name, bytes, method) in chunks of `chunk` bytes to a temporary file.
    func write(_ files: [(String, [UInt8], ZipStreamWriter.Method)], chunk: Int = 1000, forceZip64: Bool = false, to url: URL) throws -> ZipStreamWriter {
        let writer = ZipStreamWriter(forceZip64: forceZip64)
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        func emit(_ buffer: ByteBuffer) throws { try handle.write(contentsOf: buffer.readableBytesView) }
        for (name, bytes, method) in files {
            try emit(try writer.startEntry(name: name, method: method, modified: Date(timeIntervalSince1970: 1_764_000_000)))
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + chunk)
                try emit(try writer.write(ByteBuffer(bytes: bytes[start..<end])))
                start = end
            }
            try emit(try writer.finishEntry())
        }
        while let piece = try writer.nextClosingPiece(limit: 4096) { try emit(piece) }
        return writer
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    /// Bytes that do not compress (like a PNG's), from a seeded generator.
    static func noise(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed | 1
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    static let files: [(String, [UInt8], ZipStreamWriter.Method)] = [
        ("README.txt", Array(String(repeating: "Everything, exported. ", count: 500).utf8), .deflated),
        ("empty.json", [], .deflated),
        ("images/t1/0.png", Self.noise(70_000, seed: 7), .stored),
        ("images/t1/1.png", [], .stored),
        ("名前/ñandú.json", Array("{\"ok\": true}\n".utf8), .deflated),
        ("uploads/big.bin", Self.noise(300_000, seed: 11), .deflated),
    ]

    @Test("Stored and deflated entries, empty ones and UTF-8 names read back byte for byte, every CRC right")
    func roundTrip() async throws {
        let folder = try TemporaryDirectory("easel-zip")
        defer { folder.remove() }
        let url = folder.url.appending(path: "a.zip")
        let writer = try self.write(Self.files, to: url)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber).intValue
        #expect(UInt64(size) == writer.offset, "the writer's offset is the file's size")

        let report = try await PythonZip.inspect(url, texts: ["名前/ñandú.json"])
        #expect(report.firstBadEntry == nil)
        #expect(report.entries.map(\.name) == Self.files.map(\.0))
        for (name, bytes, method) in Self.files {
            let entry = try #require(report.entry(name))
            #expect(entry.size == bytes.count, "\(name)")
            #expect(entry.sha256 == Self.sha256(bytes), "\(name)")
            #expect(entry.method == Int(method.rawValue), "\(name)")
            #expect(!entry.zip64)
        }
        #expect(try #require(report.entry("README.txt")).compressedSize < 1000, "text is deflated")
        #expect(try #require(report.entry("images/t1/0.png")).compressedSize == 70_000, "images are stored as they are")
        #expect(report.texts["名前/ñandú.json"] == "{\"ok\": true}\n")
        #expect(!report.zip64End)
    }

    @Test("ZIP64 fields (sizes, offsets, end records) read back the same")
    func zip64Fields() async throws {
        let folder = try TemporaryDirectory("easel-zip")
        defer { folder.remove() }
        let url = folder.url.appending(path: "a.zip")
        _ = try self.write(Self.files, forceZip64: true, to: url)
        let report = try await PythonZip.inspect(url)
        #expect(report.firstBadEntry == nil)
        #expect(report.zip64End)
        for (name, bytes, _) in Self.files {
            let entry = try #require(report.entry(name))
            #expect(entry.zip64, "\(name) has a ZIP64 extra field")
            #expect(entry.sha256 == Self.sha256(bytes), "\(name)")
        }
    }

    @Test("More than 65,535 entries switch to ZIP64 end records, and every entry is there")
    func manyEntries() async throws {
        let folder = try TemporaryDirectory("easel-zip")
        defer { folder.remove() }
        let url = folder.url.appending(path: "many.zip")
        let count = 65_540
        let files = (0..<count).map { index in ("f/\(index).txt", Array("\(index)".utf8), ZipStreamWriter.Method.stored) }
        let writer = try self.write(files, to: url)
        #expect(writer.entryCount == count)
        let report = try await PythonZip.inspect(url)
        #expect(report.zip64End)
        #expect(report.entries.count == count)
        #expect(report.entries.last?.name == "f/\(count - 1).txt")
        #expect(report.firstBadEntry == nil)
    }

    @Test("No call returns more than its input produced: a stored chunk comes back as itself, the central directory in pieces")
    func boundedPieces() throws {
        let writer = ZipStreamWriter()
        _ = try writer.startEntry(name: "a.bin", method: .stored, modified: Date())
        let chunk = ByteBuffer(bytes: Self.noise(256 * 1024, seed: 3))
        #expect(try writer.write(chunk).readableBytes == chunk.readableBytes)
        _ = try writer.finishEntry()
        _ = try writer.startEntry(name: "b.json", method: .deflated, modified: Date())
        let deflated = try writer.write(chunk)
        #expect(deflated.readableBytes <= chunk.readableBytes + 1024, "zlib's growth on incompressible data is small")
        _ = try writer.finishEntry()
        for index in 0..<2000 {
            _ = try writer.startEntry(name: "many/\(index)", method: .stored, modified: Date())
            _ = try writer.finishEntry()
        }
        var pieces = 0
        while let piece = try writer.nextClosingPiece(limit: 16 * 1024) {
            #expect(piece.readableBytes <= 16 * 1024 + 1024)
            pieces += 1
        }
        #expect(pieces > 1, "a large central directory comes in several pieces")
        #expect(throws: ZipStreamWriter.Failure.finished) { try writer.startEntry(name: "late", method: .stored, modified: Date()) }
    }

    @Test("Names that could escape a folder are refused", arguments: ["/etc/passwd", "../up.txt", "a/../../b", "a\\b", ""])
    func unsafeNames(name: String) {
        #expect(throws: ZipStreamWriter.Failure.invalidName(name)) {
            try ZipStreamWriter().startEntry(name: name, method: .stored, modified: Date())
        }
    }
}
