import CCompressZlib
import CompressNIO
import Foundation
import NIOCore

/// Writes a ZIP archive front to back, one entry after another, without seeking and without
/// knowing sizes up front (PKWARE APPNOTE 6.3.10):
///
/// - each entry's local header has flag bit 3 set, and a data descriptor after its data carries
///   the CRC-32 (computed while the bytes pass) and the sizes;
/// - entries are stored (method 0: images, already compressed) or deflated (method 8, raw
///   zlib deflate) chunk by chunk;
/// - ZIP64 records are written when the archive passes 4 GiB or 65,535 entries, and an entry
///   declared large gets ZIP64 sizes from its local header on.
///
/// It holds what the central directory needs (about 50 bytes plus the name per entry) and, while
/// an entry is open, zlib's state; every call returns only the bytes its input produced.
public final class ZipStreamWriter {
    public enum Method: UInt16, Sendable {
        case stored = 0
        case deflated = 8
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case entryAlreadyOpen
        case noOpenEntry
        case finished
        case invalidName(String)
        case entryTooLarge(String)

        public var description: String {
            switch self {
            case .entryAlreadyOpen: "a ZIP entry is still open"
            case .noOpenEntry: "no ZIP entry is open"
            case .finished: "the ZIP archive is already finished"
            case .invalidName(let name): "\"\(name)\" cannot be a ZIP entry name"
            case .entryTooLarge(let name): "\"\(name)\" grew past 4 GiB without being declared large"
            }
        }
    }

    struct Record {
        var name: [UInt8]
        var method: Method
        var time: UInt16
        var date: UInt16
        var crc: UInt32 = 0
        var compressed: UInt64 = 0
        var uncompressed: UInt64 = 0
        var offset: UInt64
        /// The local header carries a ZIP64 extra field, so the descriptor has 8-byte sizes.
        var zip64: Bool
    }

    private struct OpenEntry {
        var record: Record
        var crc: uLong = 0
        var compressor: ZlibCompressor?
    }

    private let allocator = ByteBufferAllocator()
    /// Every entry gets ZIP64 fields (for tests of the ZIP64 path without writing 4 GiB).
    private let forceZip64: Bool
    private var records: [Record] = []
    private var open: OpenEntry?
    private var centralDirectoryStart: UInt64?
    private var nextRecord = 0
    private var ended = false

    /// Bytes written so far: the offset of whatever comes next.
    public private(set) var offset: UInt64 = 0
    public var entryCount: Int { self.records.count }

    static let maximum32 = UInt64(UInt32.max)
    static let maximum16 = 0xFFFF

    public init(forceZip64: Bool = false) {
        self.forceZip64 = forceZip64
    }

    /// Opens an entry and returns its local header. `large` means it may pass 4 GiB.
    public func startEntry(name: String, method: Method, modified: Date, large: Bool = false) throws -> ByteBuffer {
        guard !self.ended, self.centralDirectoryStart == nil else { throw Failure.finished }
        guard self.open == nil else { throw Failure.entryAlreadyOpen }
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count <= 0xFFFF, !name.hasPrefix("/"), !name.contains("\\"),
            !name.split(separator: "/").contains("..")
        else { throw Failure.invalidName(name) }
        let (time, date) = Self.dosDateTime(modified)
        let zip64 = large || self.forceZip64
        let record = Record(name: nameBytes, method: method, time: time, date: date, offset: self.offset, zip64: zip64)
        var header = self.allocator.buffer(capacity: 30 + nameBytes.count + 20)
        header.writeInteger(UInt32(0x0403_4B50), endianness: .little)
        header.writeInteger(zip64 ? UInt16(45) : UInt16(20), endianness: .little)
        header.writeInteger(Self.flags, endianness: .little)
        header.writeInteger(method.rawValue, endianness: .little)
        header.writeInteger(time, endianness: .little)
        header.writeInteger(date, endianness: .little)
        // CRC and sizes follow the data, in the descriptor.
        header.writeInteger(UInt32(0), endianness: .little)
        header.writeInteger(zip64 ? UInt32.max : 0, endianness: .little)
        header.writeInteger(zip64 ? UInt32.max : 0, endianness: .little)
        header.writeInteger(UInt16(nameBytes.count), endianness: .little)
        header.writeInteger(zip64 ? UInt16(20) : 0, endianness: .little)
        header.writeBytes(nameBytes)
        if zip64 {
            header.writeInteger(UInt16(0x0001), endianness: .little)
            header.writeInteger(UInt16(16), endianness: .little)
            header.writeInteger(UInt64(0), endianness: .little)
            header.writeInteger(UInt64(0), endianness: .little)
        }
        var entry = OpenEntry(record: record)
        if method == .deflated {
            entry.compressor = try ZlibCompressor(algorithm: .deflate, configuration: .init(windowSize: 15, compressionLevel: 6, memoryLevel: 8))
        }
        self.open = entry
        self.offset += UInt64(header.readableBytes)
        return header
    }

    /// Adds `chunk` to the open entry and returns the bytes to write for it (for a deflated
    /// entry possibly none yet: zlib keeps up to its window).
    public func write(_ chunk: ByteBuffer) throws -> ByteBuffer {
        guard var entry = self.open else { throw Failure.noOpenEntry }
        defer { self.open = entry }
        var input = chunk
        let count = input.readableBytes
        guard count > 0 else { return self.allocator.buffer(capacity: 0) }
        input.withUnsafeReadableBytes { bytes in
            entry.crc = crc32(entry.crc, bytes.baseAddress!.assumingMemoryBound(to: Bytef.self), uInt(bytes.count))
        }
        entry.record.uncompressed += UInt64(count)
        let output: ByteBuffer
        if let compressor = entry.compressor {
            var out = self.allocator.buffer(capacity: compressor.maxSize(from: input))
            while input.readableBytes > 0 {
                if out.writableBytes == 0 { out.reserveCapacity(minimumWritableBytes: 16 * 1024) }
                try compressor.deflate(from: &input, to: &out, flush: .no)
            }
            output = out
        } else {
            output = input
        }
        entry.record.compressed += UInt64(output.readableBytes)
        if !entry.record.zip64, entry.record.compressed >= Self.maximum32 || entry.record.uncompressed >= Self.maximum32 {
            throw Failure.entryTooLarge(String(decoding: entry.record.name, as: UTF8.self))
        }
        self.offset += UInt64(output.readableBytes)
        return output
    }

    /// Closes the open entry: the rest of its compressed bytes, then its data descriptor.
    public func finishEntry() throws -> ByteBuffer {
        guard var entry = self.open else { throw Failure.noOpenEntry }
        var out = self.allocator.buffer(capacity: 256)
        if let compressor = entry.compressor {
            var empty = self.allocator.buffer(capacity: 16)
            var finished = false
            for _ in 0..<10_000 where !finished {
                if out.writableBytes < 512 { out.reserveCapacity(minimumWritableBytes: 16 * 1024) }
                do {
                    try compressor.deflate(from: &empty, to: &out, flush: .finish)
                    finished = true
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    // zlib has more to give than fitted: make room and call again.
                    continue
                }
            }
            entry.record.compressed += UInt64(out.readableBytes)
            entry.compressor = nil
        }
        entry.record.crc = UInt32(truncatingIfNeeded: entry.crc)
        if !entry.record.zip64, entry.record.compressed >= Self.maximum32 {
            throw Failure.entryTooLarge(String(decoding: entry.record.name, as: UTF8.self))
        }
        out.writeInteger(UInt32(0x0807_4B50), endianness: .little)
        out.writeInteger(entry.record.crc, endianness: .little)
        if entry.record.zip64 {
            out.writeInteger(entry.record.compressed, endianness: .little)
            out.writeInteger(entry.record.uncompressed, endianness: .little)
        } else {
            out.writeInteger(UInt32(entry.record.compressed), endianness: .little)
            out.writeInteger(UInt32(entry.record.uncompressed), endianness: .little)
        }
        self.offset += UInt64(out.readableBytes)
        self.records.append(entry.record)
        self.open = nil
        return out
    }

    /// The central directory and end records, at most about `limit` bytes per call; nil once
    /// everything is written. Call after the last entry is finished.
    public func nextClosingPiece(limit: Int = 64 * 1024) throws -> ByteBuffer? {
        guard self.open == nil else { throw Failure.entryAlreadyOpen }
        if self.ended { return nil }
        let start: UInt64
        if let known = self.centralDirectoryStart {
            start = known
        } else {
            start = self.offset
            self.centralDirectoryStart = start
        }
        var out = self.allocator.buffer(capacity: min(limit, 64 * 1024) + 512)
        while self.nextRecord < self.records.count, out.readableBytes < limit {
            self.writeCentralRecord(self.records[self.nextRecord], to: &out)
            self.nextRecord += 1
        }
        if self.nextRecord == self.records.count, out.readableBytes < limit {
            self.offset += UInt64(out.readableBytes)
            self.writeEnd(centralDirectoryStart: start, to: &out)
            self.ended = true
            return out
        }
        self.offset += UInt64(out.readableBytes)
        return out
    }

    // MARK: Records

    /// Bit 3: CRC and sizes in the data descriptor; bit 11: names are UTF-8.
    static let flags: UInt16 = 0x0008 | 0x0800

    private func writeCentralRecord(_ record: Record, to out: inout ByteBuffer) {
        let needsCompressed = record.zip64 || record.compressed >= Self.maximum32
        let needsUncompressed = record.zip64 || record.uncompressed >= Self.maximum32
        let needsOffset = record.zip64 || record.offset >= Self.maximum32
        var extra = self.allocator.buffer(capacity: 28)
        if needsUncompressed || needsCompressed || needsOffset {
            var fields = self.allocator.buffer(capacity: 24)
            if needsUncompressed { fields.writeInteger(record.uncompressed, endianness: .little) }
            if needsCompressed { fields.writeInteger(record.compressed, endianness: .little) }
            if needsOffset { fields.writeInteger(record.offset, endianness: .little) }
            extra.writeInteger(UInt16(0x0001), endianness: .little)
            extra.writeInteger(UInt16(fields.readableBytes), endianness: .little)
            extra.writeBuffer(&fields)
        }
        let zip64 = extra.readableBytes > 0
        out.writeInteger(UInt32(0x0201_4B50), endianness: .little)
        // Made by: Unix (3), spec 4.5; needed: 4.5 with ZIP64, else 2.0.
        out.writeInteger(UInt16(3 << 8 | 45), endianness: .little)
        out.writeInteger(zip64 ? UInt16(45) : UInt16(20), endianness: .little)
        out.writeInteger(Self.flags, endianness: .little)
        out.writeInteger(record.method.rawValue, endianness: .little)
        out.writeInteger(record.time, endianness: .little)
        out.writeInteger(record.date, endianness: .little)
        out.writeInteger(record.crc, endianness: .little)
        out.writeInteger(needsCompressed ? UInt32.max : UInt32(record.compressed), endianness: .little)
        out.writeInteger(needsUncompressed ? UInt32.max : UInt32(record.uncompressed), endianness: .little)
        out.writeInteger(UInt16(record.name.count), endianness: .little)
        out.writeInteger(UInt16(extra.readableBytes), endianness: .little)
        out.writeInteger(UInt16(0), endianness: .little)  // comment
        out.writeInteger(UInt16(0), endianness: .little)  // disk
        out.writeInteger(UInt16(0), endianness: .little)  // internal attributes
        out.writeInteger(UInt32(0o100644) << 16, endianness: .little)  // a regular file, rw-r--r--
        out.writeInteger(needsOffset ? UInt32.max : UInt32(record.offset), endianness: .little)
        out.writeBytes(record.name)
        out.writeBuffer(&extra)
    }

    private func writeEnd(centralDirectoryStart start: UInt64, to out: inout ByteBuffer) {
        let size = self.offset - start
        let count = UInt64(self.records.count)
        let before = out.writerIndex
        let zip64 = self.forceZip64 || count >= UInt64(Self.maximum16) || size >= Self.maximum32 || start >= Self.maximum32
        if zip64 {
            let endRecordOffset = self.offset
            out.writeInteger(UInt32(0x0606_4B50), endianness: .little)
            out.writeInteger(UInt64(44), endianness: .little)
            out.writeInteger(UInt16(3 << 8 | 45), endianness: .little)
            out.writeInteger(UInt16(45), endianness: .little)
            out.writeInteger(UInt32(0), endianness: .little)
            out.writeInteger(UInt32(0), endianness: .little)
            out.writeInteger(count, endianness: .little)
            out.writeInteger(count, endianness: .little)
            out.writeInteger(size, endianness: .little)
            out.writeInteger(start, endianness: .little)
            // The locator.
            out.writeInteger(UInt32(0x0706_4B50), endianness: .little)
            out.writeInteger(UInt32(0), endianness: .little)
            out.writeInteger(endRecordOffset, endianness: .little)
            out.writeInteger(UInt32(1), endianness: .little)
        }
        out.writeInteger(UInt32(0x0605_4B50), endianness: .little)
        out.writeInteger(UInt16(0), endianness: .little)
        out.writeInteger(UInt16(0), endianness: .little)
        let shortCount = zip64 ? UInt16.max : UInt16(count)
        out.writeInteger(shortCount, endianness: .little)
        out.writeInteger(shortCount, endianness: .little)
        out.writeInteger(zip64 ? UInt32.max : UInt32(size), endianness: .little)
        out.writeInteger(zip64 ? UInt32.max : UInt32(start), endianness: .little)
        out.writeInteger(UInt16(0), endianness: .little)
        self.offset += UInt64(out.writerIndex - before)
    }

    /// MS-DOS time and date (local fields, here UTC); 1980 is the earliest a ZIP can say.
    static func dosDateTime(_ date: Date) -> (time: UInt16, date: UInt16) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let year = min(max((parts.year ?? 1980) - 1980, 0), 127)
        let time = UInt16((parts.hour ?? 0) << 11 | (parts.minute ?? 0) << 5 | (parts.second ?? 0) / 2)
        let day = UInt16(year << 9 | (parts.month ?? 1) << 5 | (parts.day ?? 1))
        return (time, day)
    }
}
