import EaselApp
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// MaxMind DB files for the tests: written by mmdb-writer (Tests/peers/make_mmdb.py) and read
/// back by MaxMind's own Python reader to compare with.
enum GeoIPFixture {
    static var python: URL { Checkout.venv.appending(path: "bin/python") }
    static var script: URL { Checkout.root.appending(path: "Tests/peers/make_mmdb.py") }

    static func run(_ arguments: [String]) async throws -> String {
        guard FileManager.default.isExecutableFile(atPath: self.python.path) else {
            throw TestPeerError(
                "the GeoIP tests need mmdb-writer and maxminddb in \(self.python.path), which does not exist. Run `make test`, or: "
                    + "python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt")
        }
        let result = try await ChildProcess.run(self.python, [self.script.path] + arguments)
        guard result.status == 0 else {
            throw TestPeerError("make_mmdb.py failed (is it installed? .venv/bin/pip install -r Tests/peers/requirements.txt):\n\(result.stderr)")
        }
        return result.stdout
    }

    /// Writes the fixture (see NETWORKS in make_mmdb.py) into `folder`.
    static func write(in folder: TemporaryDirectory, ipVersion: Int = 6, recordSize: Int? = nil) async throws -> URL {
        let file = folder.url.appending(path: "geo-\(ipVersion)-\(recordSize ?? 0).mmdb")
        _ = try await self.run(["write", file.path, "--ip-version", "\(ipVersion)"] + (recordSize.map { ["--record-size", "\($0)"] } ?? []))
        return file
    }

    /// What MaxMind's reader says about each address, by Easel's rule.
    static func reference(_ file: URL, _ addresses: [String]) async throws -> [GeoIPDatabase.Location] {
        struct Answer: Decodable {
            var country: String?
            var region: String?
        }
        let lines = try await self.run(["lookup", file.path] + addresses).split(separator: "\n")
        try #require(lines.count == addresses.count)
        return try lines.map { line in
            let answer = try JSONDecoder().decode(Answer.self, from: Data(line.utf8))
            return GeoIPDatabase.Location(country: answer.country, region: answer.region)
        }
    }
}

/// MaxMind DB files built byte by byte, for what no writer produces: every pointer size, and
/// records shaped to make a careless reader loop, recurse without end or read past the file.
enum HandMadeDatabase {
    /// One IPv4 node whose records lead to `left` (addresses below 128.0.0.0) and `right` in `data`.
    static func file(data: [UInt8], recordSize: UInt8 = 24, left: Int = 0, right: Int = 0) -> Data {
        // Records past the node count (1) point into the data section, after its 16 zero bytes.
        let (l, r) = (1 + 16 + left, 1 + 16 + right)
        var bytes: [UInt8]
        switch recordSize {
        case 24: bytes = self.bigEndian(l, 3) + self.bigEndian(r, 3)
        // The middle byte holds the high nibble of each record, the left one first.
        case 28: bytes = self.bigEndian(l, 3) + [UInt8((l >> 24) << 4 | r >> 24)] + self.bigEndian(r, 3)
        default: bytes = self.bigEndian(l, 4) + self.bigEndian(r, 4)
        }
        bytes += [UInt8](repeating: 0, count: 16) + data
        bytes += [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
        bytes += self.map(4) + self.string("node_count") + [0xC1, 1] + self.string("record_size") + [0xA1, recordSize]
        bytes += self.string("ip_version") + [0xA1, 4] + self.string("binary_format_major_version") + [0xA1, 2]
        return Data(bytes)
    }

    static func bigEndian(_ value: Int, _ count: Int) -> [UInt8] {
        (0..<count).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }

    static func string(_ text: String) -> [UInt8] { [0x40 | UInt8(text.utf8.count)] + Array(text.utf8) }
    static func map(_ count: UInt8) -> [UInt8] { [0xE0 | count] }
    /// Arrays are an extended type: type 0 in the control byte, then 11 - 7.
    static func array(_ count: UInt8) -> [UInt8] { [count, 0x04] }

    /// A pointer to `target` in the data section, in the shortest form, or the 4-byte one.
    static func pointer(_ target: Int, fourBytes: Bool = false) -> [UInt8] {
        if fourBytes { return [0x38] + self.bigEndian(target, 4) }
        if target < 2048 { return [0x20 | UInt8(target >> 8)] + self.bigEndian(target, 1) }
        if target < 2048 + (1 << 19) { return [0x28 | UInt8((target - 2048) >> 16)] + self.bigEndian(target - 2048, 2) }
        return [0x30 | UInt8((target - 526_336) >> 24)] + self.bigEndian(target - 526_336, 3)
    }

    static func place(_ bytes: [UInt8], at offset: Int, in data: inout [UInt8]) {
        data.replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }
}

@Suite("GeoIP: MaxMind DB files")
struct GeoIPTests {
    typealias Location = GeoIPDatabase.Location

    /// Addresses in and around the fixture's networks.
    static let addresses = [
        "203.0.113.9", "198.51.100.1", "192.0.2.5", "192.0.2.200", "10.2.3.4", "10.1.2.3", "10.1.255.255", "11.0.0.0", "127.0.0.1",
        "8.8.8.8", "0.0.0.0", "255.255.255.255", "::1", "::2", "2001:db8:1::5", "2001:db8:2:ffff::1", "2001:db8:3::1", "::", "ffff::1",
    ]

    @Test("IPv4 and IPv6 lookups give the country and first subdivision, for 24-, 28- and 32-bit records", arguments: [24, 28, 32])
    func lookups(recordSize: Int) async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let database = try GeoIPDatabase(contentsOf: try await GeoIPFixture.write(in: folder, recordSize: recordSize))
        #expect(database.databaseType == "Easel-Test-City")
        #expect(database.location(ip: "203.0.113.9") == Location(country: "DE", region: "BY"))
        #expect(database.location(ip: "2001:db8:1::5") == Location(country: "JP", region: "13"))
        #expect(database.location(ip: "2001:db8:2:ffff::1") == Location(country: "CH"))
        // The registered country stands in for a missing country; a subdivision without a code gives its name.
        #expect(database.location(ip: "198.51.100.1") == Location(country: "FR"))
        #expect(database.location(ip: "192.0.2.5") == Location(country: "US", region: "Oregon"))
        // The most specific network wins.
        #expect(database.location(ip: "10.2.3.4") == Location(country: "NL"))
        #expect(database.location(ip: "10.1.2.3") == Location(country: "BE", region: "VLG"))
        // An IPv4 address mapped into IPv6, bracketed, or with spaces, is the IPv4 address.
        #expect(database.location(ip: "::ffff:203.0.113.9") == Location(country: "DE", region: "BY"))
        #expect(database.location(ip: " [::ffff:10.1.2.3] ") == Location(country: "BE", region: "VLG"))
    }

    @Test("Addresses in no network, and text that is no address, have no location")
    func unknown() async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let database = try GeoIPDatabase(contentsOf: try await GeoIPFixture.write(in: folder))
        for address in ["192.0.2.200", "11.0.0.0", "8.8.8.8", "2001:db8:3::1", "::", "", "unknown", "1.2.3", "203.0.113.9.1", "2001:db8:::1"] {
            #expect(database.location(ip: address) == Location(), "\(address)")
        }
    }

    @Test("An IPv4-only database answers IPv4 addresses and nothing for IPv6")
    func ipv4Database() async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let database = try GeoIPDatabase(contentsOf: try await GeoIPFixture.write(in: folder, ipVersion: 4))
        #expect(database.location(ip: "203.0.113.9") == Location(country: "DE", region: "BY"))
        #expect(database.location(ip: "::ffff:10.1.2.3") == Location(country: "BE", region: "VLG"))
        #expect(database.location(ip: "2001:db8:1::5") == Location())
    }

    @Test("Every answer agrees with MaxMind's own reader", arguments: [24, 28, 32])
    func agreesWithMaxMind(recordSize: Int) async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let file = try await GeoIPFixture.write(in: folder, recordSize: recordSize)
        let database = try GeoIPDatabase(contentsOf: file)
        let expected = try await GeoIPFixture.reference(file, Self.addresses)
        #expect(expected.contains { $0.country != nil } && expected.contains { $0.country == nil }, "the fixture has hits and misses")
        for (address, reference) in zip(Self.addresses, expected) {
            #expect(database.location(ip: address) == reference, "\(address)")
        }
    }

    @Test("Missing, empty, truncated and garbage files are refused with a reason")
    func refused() async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let good = try Data(contentsOf: try await GeoIPFixture.write(in: folder))
        #expect(throws: GeoIPDatabase.InvalidDatabase.self) { try GeoIPDatabase(contentsOf: folder.url.appending(path: "missing.mmdb")) }
        #expect(throws: GeoIPDatabase.InvalidDatabase.self) { try GeoIPDatabase(contentsOf: folder.url) }
        var generator = SystemRandomNumberGenerator()
        let garbage = Data((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        for (name, bytes) in [
            ("empty", Data()), ("garbage", garbage), ("first half", good.prefix(good.count / 2)), ("last bytes cut", good.dropLast(8)),
        ] {
            let file = folder.url.appending(path: "\(name).mmdb")
            try bytes.write(to: file)
            let error = #expect(throws: GeoIPDatabase.InvalidDatabase.self, "\(name)") { try GeoIPDatabase(contentsOf: file) }
            #expect(error?.reason.isEmpty == false)
        }
        // Cut anywhere, the file is refused or still answers; it never crashes the process.
        for length in stride(from: 0, to: good.count, by: 7) {
            if let database = try? GeoIPDatabase(data: good.prefix(length)) {
                _ = Self.addresses.map { database.location(ip: $0) }
            }
        }
    }

    @Test("Pointers of all four sizes are followed")
    func pointerSizes() throws {
        typealias Make = HandMadeDatabase
        var data = [UInt8](repeating: 0, count: 600_010)
        // { country: → { iso_code: → "SE" }, subdivisions: → [ { iso_code: → "AB" } ] }
        Make.place(Make.map(2) + Make.string("country") + Make.pointer(100) + Make.string("subdivisions") + Make.pointer(3000), at: 0, in: &data)
        Make.place(Make.map(1) + Make.string("iso_code") + Make.pointer(120, fourBytes: true), at: 100, in: &data)
        Make.place(Make.string("SE"), at: 120, in: &data)
        Make.place(Make.array(1) + Make.map(1) + Make.string("iso_code") + Make.pointer(600_000), at: 3000, in: &data)
        Make.place(Make.string("AB"), at: 600_000, in: &data)
        let database = try GeoIPDatabase(data: Make.file(data: data))
        #expect(database.location(ip: "198.51.100.7") == Location(country: "SE", region: "AB"))
    }

    @Test("28- and 32-bit records reach past 16 MiB of data, reading each record's high bits", arguments: [28, 32] as [UInt8])
    func wideRecords(recordSize: UInt8) throws {
        typealias Make = HandMadeDatabase
        let far = (1 << 24) + 100
        var data = [UInt8](repeating: 0, count: far + 64)
        Make.place(Make.map(1) + Make.string("country") + Make.map(1) + Make.string("iso_code") + Make.string("SE"), at: 0, in: &data)
        Make.place(Make.map(1) + Make.string("country") + Make.map(1) + Make.string("iso_code") + Make.string("NO"), at: far, in: &data)
        let database = try GeoIPDatabase(data: Make.file(data: data, recordSize: recordSize, left: far, right: 0))
        #expect(database.location(ip: "10.0.0.1") == Location(country: "NO"))
        #expect(database.location(ip: "198.51.100.7") == Location(country: "SE"))
    }

    @Test("A pointer to itself, nesting too deep, or a count past the end give no answer instead of hanging or crashing")
    func hostileRecords() throws {
        typealias Make = HandMadeDatabase
        let country = Make.string("country") + Make.map(1) + Make.string("iso_code") + Make.string("SE")
        // The control check: the same shape, nested shallowly, is read.
        let shallow = Make.map(2) + Make.string("a") + Array(repeating: Make.array(1), count: 3).flatMap { $0 } + Make.string("x") + country
        #expect(try GeoIPDatabase(data: Make.file(data: shallow)).location(ip: "192.0.2.1") == Location(country: "SE"))
        let deep = Array(repeating: Make.array(1), count: 100_000).flatMap { $0 }
        let records: [(String, [UInt8])] = [
            ("self pointer", Make.pointer(0)),
            ("deep nesting", Make.map(2) + Make.string("a") + deep + Make.string("x") + country),
            ("huge map", [0xFF, 0xFF, 0xFF, 0xFF] + Make.string("country")),
            ("string past the end", Make.map(1) + Make.string("country") + Make.map(1) + Make.string("iso_code") + [0x5D, 0xFF, 0xFF]),
            ("pointer past the end", Make.map(1) + Make.string("country") + Make.pointer(1_000_000)),
        ]
        for (name, data) in records {
            let database = try GeoIPDatabase(data: Make.file(data: data))
            #expect(database.location(ip: "192.0.2.1") == Location(), "\(name)")
        }
    }
}

// MARK: In the application

@Suite("GeoIP: EASEL_GEOIP_DB in the application")
struct GeoIPApplicationTests {
    @Test("A configured database is opened at start; a missing or damaged one stops the start, naming the variable")
    func configuration() async throws {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let file = try await GeoIPFixture.write(in: folder)
        func load(_ path: String) async throws -> EaselConfig {
            let reader = try await EaselConfig.reader(arguments: [], environment: ["EASEL_GEOIP_DB": path], dotEnvPath: nil)
            return try EaselConfig.load(from: reader)
        }
        let config = try await load(file.path)
        #expect(config.analytics.geoIP?.location(ip: "203.0.113.9").country == "DE")
        #expect(config.describe().contains("EASEL_GEOIP_DB=\(file.path)"))
        let damaged = folder.url.appending(path: "damaged.mmdb")
        try Data(try Data(contentsOf: file).prefix(100)).write(to: damaged)
        for path in [folder.url.appending(path: "missing.mmdb").path, damaged.path] {
            let error = try await #require(throws: ConfigError.self) { try await load(path) }
            #expect(error.key == "EASEL_GEOIP_DB")
            #expect(error.problem.contains(path))
        }
    }

    /// Visits the home page over a real loopback connection (peer 127.0.0.1) once per header set
    /// and returns the country and region each page view was counted with ("DE/BY", "-/-").
    func pageViews(_ settings: [String: String], headers: [HTTPFields]) async throws -> [String] {
        let folder = try TemporaryDirectory("easel-geoip")
        defer { folder.remove() }
        let file = try await GeoIPFixture.write(in: folder)
        let settings = ["EASEL_ANALYTICS": "on", "EASEL_GEOIP_DB": file.path].merging(settings) { _, new in new }
        return try await withTestApp(settings, testing: .live) { services, client in
            for extra in headers {
                var fields: HTTPFields = [.userAgent: AnalyticsTests.firefox]
                fields.append(contentsOf: extra)
                #expect(try await Browser(client).get("/", headers: fields).status == .ok)
            }
            await services.traffic.flush()
            return try await services.database.writer.read { db in
                try String.fetchAll(db, sql: "SELECT COALESCE(country, '-') || '/' || COALESCE(region, '-') FROM page_view ORDER BY rowid")
            }
        }
    }

    @Test("Behind a trusted proxy the forwarded client is looked up, and the proxy's country header wins")
    func behindProxy() async throws {
        let forwardedFor = HTTPField.Name("X-Forwarded-For")!
        let views = try await self.pageViews(
            ["EASEL_TRUSTED_PROXIES": "127.0.0.1"],
            headers: [
                [forwardedFor: "203.0.113.9"], [forwardedFor: "2001:db8:1::5"], [forwardedFor: "8.8.8.8"],
                [forwardedFor: "203.0.113.9", HTTPField.Name("CF-IPCountry")!: "fr"],
            ])
        #expect(views == ["DE/BY", "JP/13", "-/-", "FR/-"])
    }

    @Test("Without trusted proxies the connection's own address is looked up, and forwarded headers are still ignored")
    func directConnection() async throws {
        // The fixture places 127.0.0.0/8 in Antarctica, so the loopback test client has a country.
        let views = try await self.pageViews(
            [:], headers: [[HTTPField.Name("X-Forwarded-For")!: "203.0.113.9", HTTPField.Name("CF-IPCountry")!: "fr"]])
        #expect(views == ["AQ/-"])
    }
}
