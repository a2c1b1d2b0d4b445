import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A MaxMind DB file (GeoLite2-Country, GeoIP2-City and the like, EASEL_GEOIP_DB), read for the
/// country and region of an address. The file is mapped read-only and treated as untrusted:
/// every offset and length is checked, so a damaged file answers nothing rather than crashing.
/// Only the few fields analytics need are decoded; nothing else is built.
///
/// The mapping is kept for the life of the process: replace the file by renaming a new one over
/// it (as geoipupdate does) and restart, never by rewriting it in place.
public struct GeoIPDatabase: Sendable {
    /// The approximate place of an address; either part may be unknown.
    public struct Location: Sendable, Equatable, CustomStringConvertible {
        /// Two-letter ISO 3166-1 code ("DE").
        public var country: String?
        /// The first subdivision's ISO code ("BY"), or its English name when it has no code.
        public var region: String?

        public init(country: String? = nil, region: String? = nil) {
            self.country = country
            self.region = region
        }

        public var description: String { "\(self.country ?? "-")/\(self.region ?? "-")" }
    }

    /// Why a file is not a usable MaxMind DB.
    public struct InvalidDatabase: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { self.reason }
    }

    /// The metadata marker; its last occurrence in the file starts the metadata section.
    private static let marker: [UInt8] = [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
    /// The spec's bound on the metadata section, marker included.
    private static let metadataLimit = 128 * 1024

    private let bytes: Data
    private let nodeCount: Int
    private let recordSize: Int
    private let ipVersion: Int
    private let dataStart: Int
    private let dataEnd: Int
    /// The record reached after 96 zero bits in an IPv6 tree, where IPv4 addresses start.
    private let ipv4Start: Int
    /// The metadata's `database_type`, such as "GeoLite2-Country".
    public let databaseType: String

    /// Maps the file at `url` and checks its metadata and layout.
    public init(contentsOf url: URL) throws(InvalidDatabase) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else { throw InvalidDatabase(reason: "does not exist") }
        guard !isFolder.boolValue else { throw InvalidDatabase(reason: "is a folder, not a file") }
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw InvalidDatabase(reason: "cannot be read (\(error.localizedDescription))")
        }
        try self.init(data: data)
    }

    public init(data: Data) throws(InvalidDatabase) {
        // Data from a file starts at index 0; a slice of something else might not.
        let data = data.startIndex == 0 ? data : Data(data)
        self.bytes = data
        // withUnsafeBytes rethrows untyped errors; a Result keeps the type.
        let layout = try data.withUnsafeBytes { raw in Result { () throws(InvalidDatabase) in try Layout(raw) } }.get()
        self.nodeCount = layout.nodeCount
        self.recordSize = layout.recordSize
        self.ipVersion = layout.ipVersion
        self.dataStart = layout.dataStart
        self.dataEnd = layout.dataEnd
        self.ipv4Start = layout.ipv4Start
        self.databaseType = layout.databaseType
    }

    /// The country and region of `ip` ("203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9");
    /// both nil when the address is unparseable, in no network of the file, or its record is damaged.
    public func location(ip: String) -> Location {
        guard let address = Self.parse(ip) else { return Location() }
        return self.bytes.withUnsafeBytes { raw in
            let tree = Tree(raw: raw, nodeCount: self.nodeCount, recordSize: self.recordSize)
            let start: Int
            if address.count == 4 {
                start = self.ipVersion == 6 ? self.ipv4Start : 0
            } else {
                guard self.ipVersion == 6 else { return Location() }
                start = 0
            }
            guard let record = tree.lookup(address, from: start), record > self.nodeCount else { return Location() }
            // Records past the node count point into the data section, after its 16-byte separator.
            let offset = self.dataStart + (record - self.nodeCount - 16)
            guard offset >= self.dataStart, offset < self.dataEnd else { return Location() }
            let decoder = Decoder(raw: raw, base: self.dataStart, limit: self.dataEnd)
            return Self.location(decoder, at: offset)
        }
    }

    private static func location(_ decoder: Decoder, at offset: Int) -> Location {
        var result = Location()
        for path: [Decoder.Step] in [[.key("country"), .key("iso_code")], [.key("registered_country"), .key("iso_code")]] {
            if let code = decoder.string(at: offset, path: path), code.utf8.count == 2, code.allSatisfy({ $0.isASCII && $0.isLetter }) {
                result.country = code.uppercased()
                break
            }
        }
        let subdivision: [Decoder.Step] = [.key("subdivisions"), .index(0)]
        for path in [subdivision + [.key("iso_code")], subdivision + [.key("names"), .key("en")]] {
            if let text = decoder.string(at: offset, path: path)?.trimmingCharacters(in: .whitespaces), !text.isEmpty, text.count <= 64,
                text.unicodeScalars.allSatisfy({ !CharacterSet.controlCharacters.contains($0) })
            {
                result.region = text
                break
            }
        }
        return result
    }

    /// The address as 4 or 16 bytes; an IPv4 address mapped into IPv6 counts as IPv4.
    static func parse(_ text: String) -> [UInt8]? {
        var text = text.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff { return Array(bytes[12..<16]) }
        return bytes
    }

    /// What the metadata says, checked against the file's size.
    private struct Layout {
        var nodeCount = 0
        var recordSize = 0
        var ipVersion = 0
        var dataStart = 0
        var dataEnd = 0
        var ipv4Start = 0
        var databaseType = ""

        init(_ raw: UnsafeRawBufferPointer) throws(InvalidDatabase) {
            guard let markerStart = Self.lastMarker(in: raw) else {
                throw InvalidDatabase(reason: "is not a MaxMind DB file (no metadata marker near its end)")
            }
            let metadataStart = markerStart + GeoIPDatabase.marker.count
            let metadata = Decoder(raw: raw, base: metadataStart, limit: raw.count)
            guard metadata.value(at: metadataStart)?.kind == .map, metadata.end(of: metadataStart) != nil else {
                throw InvalidDatabase(reason: "is truncated or damaged (its metadata is incomplete)")
            }
            func number(_ key: String) throws(InvalidDatabase) -> Int {
                guard let value = metadata.unsigned(at: metadataStart, path: [.key(key)]) else {
                    throw InvalidDatabase(reason: "has no valid \(key) in its metadata")
                }
                return value
            }
            guard try number("binary_format_major_version") == 2 else {
                throw InvalidDatabase(reason: "uses a MaxMind DB format version this reader does not know (only 2.x)")
            }
            self.nodeCount = try number("node_count")
            self.recordSize = try number("record_size")
            self.ipVersion = try number("ip_version")
            self.databaseType = metadata.string(at: metadataStart, path: [.key("database_type")]) ?? ""
            guard [24, 28, 32].contains(self.recordSize) else {
                throw InvalidDatabase(reason: "has an unsupported record size \(self.recordSize) (expected 24, 28 or 32)")
            }
            guard self.ipVersion == 4 || self.ipVersion == 6 else { throw InvalidDatabase(reason: "has ip_version \(self.ipVersion), not 4 or 6") }
            // Each node is two records: record_size / 4 bytes.
            let nodeBytes = self.recordSize / 4
            guard self.nodeCount > 0, self.nodeCount <= markerStart / nodeBytes else {
                throw InvalidDatabase(reason: "is truncated or damaged (its search tree does not fit in the file)")
            }
            let treeSize = self.nodeCount * nodeBytes
            self.dataStart = treeSize + 16
            self.dataEnd = markerStart
            guard self.dataStart <= self.dataEnd, (treeSize..<self.dataStart).allSatisfy({ raw[$0] == 0 }) else {
                throw InvalidDatabase(reason: "is truncated or damaged (no data section after its search tree)")
            }
            var node = 0
            if self.ipVersion == 6 {
                let tree = Tree(raw: raw, nodeCount: self.nodeCount, recordSize: self.recordSize)
                for _ in 0..<96 where node < self.nodeCount {
                    guard let next = tree.record(node: node, right: false) else { break }
                    node = next
                }
            }
            self.ipv4Start = node
        }

        static func lastMarker(in raw: UnsafeRawBufferPointer) -> Int? {
            let marker = GeoIPDatabase.marker
            guard raw.count >= marker.count else { return nil }
            let lowest = max(0, raw.count - GeoIPDatabase.metadataLimit)
            var start = raw.count - marker.count
            while start >= lowest {
                if raw[start] == marker[0], (1..<marker.count).allSatisfy({ raw[start + $0] == marker[$0] }) { return start }
                start -= 1
            }
            return nil
        }
    }

    /// The binary search tree at the start of the file: node `n` is two records of `recordSize` bits.
    private struct Tree {
        let raw: UnsafeRawBufferPointer
        let nodeCount: Int
        let recordSize: Int

        func record(node: Int, right: Bool) -> Int? {
            let width = self.recordSize / 4
            let base = node * width
            guard node >= 0, node < self.nodeCount, base + width <= self.raw.count else { return nil }
            func byte(_ index: Int) -> Int { Int(self.raw[base + index]) }
            switch self.recordSize {
            case 24:
                let at = right ? 3 : 0
                return byte(at) << 16 | byte(at + 1) << 8 | byte(at + 2)
            case 28:
                // The middle byte holds the high nibble of each record.
                if right { return (byte(3) & 0x0F) << 24 | byte(4) << 16 | byte(5) << 8 | byte(6) }
                return (byte(3) & 0xF0) << 20 | byte(0) << 16 | byte(1) << 8 | byte(2)
            default:
                let at = right ? 4 : 0
                return byte(at) << 24 | byte(at + 1) << 16 | byte(at + 2) << 8 | byte(at + 3)
            }
        }

        /// Follows the address's bits from `start`; the record where the walk left the tree, or nil
        /// when the tree is deeper than the address (a damaged file).
        func lookup(_ address: [UInt8], from start: Int) -> Int? {
            var node = start
            var bit = 0
            while node < self.nodeCount {
                guard bit < address.count * 8 else { return nil }
                let set = address[bit >> 3] & (0x80 >> UInt8(bit & 7)) != 0
                guard let next = self.record(node: node, right: set) else { return nil }
                node = next
                bit += 1
            }
            return node
        }
    }

    /// Reads fields of the data or metadata section without building them. Every read is checked
    /// against `limit`; a pointer is followed once (a pointer to a pointer is invalid), and
    /// nesting is bounded, so no input can loop or trap.
    struct Decoder {
        let raw: UnsafeRawBufferPointer
        /// Where pointers count from: the data section's start (or the metadata's).
        let base: Int
        /// The end of the section (exclusive).
        let limit: Int

        enum Step {
            case key(String)
            case index(Int)
        }

        enum Kind: Int {
            case pointer = 1
            case string, double, bytes, uint16, uint32, map, int32, uint64, uint128, array, container, endMarker, boolean, float
        }

        /// A field's type and size; for a pointer, `size` is the absolute offset it points to.
        /// `payload` is where its content (or what follows a pointer) begins.
        struct Field {
            var kind: Kind
            var size: Int
            var payload: Int
        }

        static let maximumDepth = 32

        private func byte(_ offset: Int) -> Int? {
            offset >= 0 && offset < self.limit && offset < self.raw.count ? Int(self.raw[offset]) : nil
        }

        private func bigEndian(at offset: Int, count: Int) -> Int? {
            var value = 0
            for index in 0..<count {
                guard let byte = self.byte(offset + index) else { return nil }
                value = value << 8 | byte
            }
            return value
        }

        /// The control byte(s) at `offset`, not following pointers.
        func header(at offset: Int) -> Field? {
            guard let control = self.byte(offset) else { return nil }
            var cursor = offset + 1
            var type = control >> 5
            if type == 0 {
                // Extended: the next byte is the type minus 7 (int32 is 1, float is 8).
                guard let extended = self.byte(cursor), (1...8).contains(extended) else { return nil }
                type = 7 + extended
                cursor += 1
            }
            guard let kind = Kind(rawValue: type) else { return nil }
            if kind == .pointer {
                let count = (control >> 3 & 0x3) + 1
                guard var value = self.bigEndian(at: cursor, count: count) else { return nil }
                if count < 4 { value |= (control & 0x7) << (count * 8) }
                value += [0, 0, 2048, 526_336, 0][count]
                return Field(kind: .pointer, size: self.base + value, payload: cursor + count)
            }
            var size = control & 0x1F
            if size >= 29 {
                let count = size - 28
                guard let extra = self.bigEndian(at: cursor, count: count) else { return nil }
                size = [29, 285, 65_821][count - 1] + extra
                cursor += count
            }
            return Field(kind: kind, size: size, payload: cursor)
        }

        /// The field at `offset`, following a pointer.
        func value(at offset: Int) -> Field? {
            guard let field = self.header(at: offset) else { return nil }
            guard field.kind == .pointer else { return field }
            guard let target = self.header(at: field.size), target.kind != .pointer else { return nil }
            return target
        }

        /// The offset just past the field at `offset` (past the pointer itself for a pointer).
        func end(of offset: Int, depth: Int = 0) -> Int? {
            guard depth < Self.maximumDepth, let field = self.header(at: offset) else { return nil }
            switch field.kind {
            case .pointer:
                return field.payload
            case .map, .array:
                // Every field takes at least one byte, so a bogus count runs off the end quickly.
                var cursor = field.payload
                for _ in 0..<(field.kind == .map ? field.size * 2 : field.size) {
                    guard let next = self.end(of: cursor, depth: depth + 1) else { return nil }
                    cursor = next
                }
                return cursor
            case .boolean:
                return field.size <= 1 ? field.payload : nil
            case .container, .endMarker:
                return nil
            default:
                let end = field.payload + field.size
                return end <= self.limit ? end : nil
            }
        }

        /// The field reached from `offset` by `path` (map keys and array indexes), following pointers.
        func field(at offset: Int, path: [Step]) -> Field? {
            var current = offset
            for step in path {
                guard let container = self.value(at: current) else { return nil }
                switch step {
                case .key(let key):
                    guard container.kind == .map, let found = self.member(key, of: container) else { return nil }
                    current = found
                case .index(let index):
                    guard container.kind == .array, index >= 0, index < container.size else { return nil }
                    var cursor = container.payload
                    for _ in 0..<index {
                        guard let next = self.end(of: cursor) else { return nil }
                        cursor = next
                    }
                    current = cursor
                }
            }
            return self.value(at: current)
        }

        /// The offset of the value stored under `key` in `map`.
        private func member(_ key: String, of map: Field) -> Int? {
            var cursor = map.payload
            for _ in 0..<map.size {
                guard let name = self.value(at: cursor), name.kind == .string, let valueOffset = self.end(of: cursor) else { return nil }
                if self.equals(name, key) { return valueOffset }
                guard let next = self.end(of: valueOffset) else { return nil }
                cursor = next
            }
            return nil
        }

        private func equals(_ field: Field, _ key: String) -> Bool {
            guard field.size == key.utf8.count, field.payload + field.size <= self.limit else { return false }
            var index = field.payload
            for unit in key.utf8 {
                guard self.raw[index] == unit else { return false }
                index += 1
            }
            return true
        }

        func string(at offset: Int, path: [Step]) -> String? {
            guard let field = self.field(at: offset, path: path), field.kind == .string, field.payload + field.size <= self.limit else { return nil }
            return String(validating: UnsafeRawBufferPointer(rebasing: self.raw[field.payload..<field.payload + field.size]), as: UTF8.self)
        }

        /// An unsigned integer that fits in Int.
        func unsigned(at offset: Int, path: [Step]) -> Int? {
            guard let field = self.field(at: offset, path: path), [.uint16, .uint32, .uint64, .uint128].contains(field.kind), field.size <= 8,
                let value = self.bigEndian(at: field.payload, count: field.size), value >= 0
            else { return nil }
            return value
        }
    }
}
