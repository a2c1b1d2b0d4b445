import EaselTestSupport
import Foundation
import Testing

@testable import EaselCore

/// segno, a QR encoder written independently in Python (Tests/peers/requirements.txt), as the
/// reference: it encodes the same bytes in byte mode, without raising the error correction level.
enum Segno {
    struct Request: Encodable {
        var hex: String
        var error: String
        var version: Int?
        var mask: Int?

        init(_ bytes: [UInt8], _ correction: QRCode.ErrorCorrection, version: Int? = nil, mask: Int? = nil) {
            self.hex = bytes.map { String(format: "%02x", $0) }.joined()
            self.error =
                switch correction {
                case .low: "l"
                case .medium: "m"
                case .quartile: "q"
                case .high: "h"
                }
            self.version = version
            self.mask = mask
        }
    }

    struct Symbol: Decodable {
        var version: Int
        var mask: Int
        /// One string of 0 (light) and 1 (dark) per row, without the quiet zone.
        var rows: [String]
    }

    /// segno 1.6 adds a whole zero byte before the pad codewords when the terminator ends on a byte
    /// boundary (always, in byte mode below version 10), where ISO/IEC 18004 §7.4.10 adds none
    /// (heuer/segno issues 123 and 148, open). Readers ignore padding, but module-for-module
    /// comparison needs the standard's padding, so the script puts it right.
    static let script = """
        import json, sys, segno
        import segno.consts, segno.encoder

        def write_padding_bits(buff, version, length):
            if version not in (segno.consts.VERSION_M1, segno.consts.VERSION_M3):
                buff.extend([0] * (-length % 8))

        assert callable(segno.encoder.write_padding_bits)
        segno.encoder.write_padding_bits = write_padding_bits
        symbols = []
        with open(sys.argv[1]) as requests:
            for r in json.load(requests):
                q = segno.make_qr(bytes.fromhex(r["hex"]), error=r["error"], version=r.get("version"), mask=r.get("mask"),
                                  mode="byte", boost_error=False)
                symbols.append({"version": q.version, "mask": q.mask,
                                "rows": ["".join("1" if m else "0" for m in row) for row in q.matrix]})
        print(json.dumps(symbols))
        """

    /// Runs segno once for all requests (through a file: version 40 data is too long for one argument).
    static func encode(_ requests: [Request]) async throws -> [Symbol] {
        let python = Checkout.venv.appending(path: "bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestPeerError(
                "the QR code tests need segno in \(python.path), which does not exist. Run `make test`, or: "
                    + "python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt")
        }
        let folder = try TemporaryDirectory("easel-qr")
        defer { folder.remove() }
        let file = folder.url.appending(path: "requests.json")
        try JSONEncoder().encode(requests).write(to: file)
        let result = try await ChildProcess.run(python, ["-c", self.script, file.path])
        guard result.status == 0 else {
            throw TestPeerError("segno failed (is it installed? .venv/bin/pip install -r Tests/peers/requirements.txt):\n\(result.stderr)")
        }
        let symbols = try JSONDecoder().decode([Symbol].self, from: Data(result.stdout.utf8))
        try #require(symbols.count == requests.count)
        return symbols
    }
}

struct Sample: Sendable, CustomTestStringConvertible {
    var name: String
    var text: String
    var correction: QRCode.ErrorCorrection
    var testDescription: String { "\(self.name), \(self.correction)" }
}

@Suite("QR codes (byte mode, checked against segno)")
struct QRCodeTests {
    /// What TwoFactorService gives for a typical account: 123 characters.
    static let otpauth =
        "otpauth://totp/Easel:ada.lovelace%40example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK&issuer=Easel"

    static let samples: [Sample] =
        QRCode.ErrorCorrection.allCases.flatMap { level in
            [Sample(name: "short ASCII", text: "Easel", correction: level), Sample(name: "otpauth URI", text: Self.otpauth, correction: level)]
        } + [
            Sample(name: "UTF-8", text: "Grüße aus Zürich — 東京 ✓ 🎨", correction: .medium),
            Sample(name: "UTF-8", text: "Grüße aus Zürich — 東京 ✓ 🎨", correction: .high),
            Sample(name: "empty", text: "", correction: .low),
        ]

    /// nil when the symbols are equal, else where they differ.
    static func mismatch(_ code: QRCode, _ symbol: Segno.Symbol) -> String? {
        guard symbol.rows.count == code.size else { return "segno's symbol is \(symbol.rows.count) modules wide, ours \(code.size)" }
        var differing: [String] = []
        for (y, row) in symbol.rows.enumerated() {
            for (x, module) in row.enumerated() where (module == "1") != code.isDark(x: x, y: y) {
                differing.append("(x \(x), y \(y))")
            }
        }
        return differing.isEmpty ? nil : "\(differing.count) modules differ, first at \(differing.prefix(5).joined(separator: ", "))"
    }

    @Test("Matches segno module for module at the same version and mask", arguments: Self.samples)
    func matchesSegno(sample: Sample) async throws {
        // Given text encoded by us
        let code = try QRCode(sample.text, correction: sample.correction)
        let bytes = Array(sample.text.utf8)

        // When segno encodes the same bytes at our version and mask
        let symbols = try await Segno.encode([.init(bytes, sample.correction, version: code.version, mask: code.mask)])

        // Then every module is the same
        #expect(Self.mismatch(code, symbols[0]) == nil)
        #expect(code.size == code.version * 4 + 17)
    }

    @Test("Each of the 8 mask patterns matches segno's, on a version with version information")
    func everyMaskPattern() async throws {
        // Given the otpauth URI at level M, which needs version 8
        let bytes = Array(Self.otpauth.utf8)
        let codes = try (0..<8).map { try QRCode(bytes: bytes, correction: .medium, mask: $0) }
        #expect(codes.allSatisfy { $0.version == 8 })

        // When segno encodes it with each mask in turn
        let symbols = try await Segno.encode((0..<8).map { .init(bytes, .medium, version: 8, mask: $0) })

        // Then each matches, and the masks give 8 different symbols
        for (code, symbol) in zip(codes, symbols) {
            #expect(Self.mismatch(code, symbol) == nil, "mask \(code.mask)")
        }
        #expect(Set(codes.map { $0.svg() }).count == 8)
    }

    @Test("Chooses the mask segno chooses at the same version and level")
    func maskChoice() async throws {
        // Given texts of many lengths at every level, including the samples
        var inputs: [(bytes: [UInt8], correction: QRCode.ErrorCorrection)] = Self.samples.map { (Array($0.text.utf8), $0.correction) }
        for (index, length) in stride(from: 1, through: 400, by: 9).enumerated() {
            let correction = QRCode.ErrorCorrection.allCases[index % 4]
            inputs.append(((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ length) }, correction))
        }
        let codes = try inputs.map { try QRCode(bytes: $0.bytes, correction: $0.correction) }

        // When segno chooses the mask itself, given our version and level
        let symbols = try await Segno.encode(zip(inputs, codes).map { .init($0.bytes, $0.correction, version: $1.version) })

        // Then it chooses the same one, and the symbols are equal
        for (code, symbol) in zip(codes, symbols) {
            #expect(code.mask == symbol.mask, "version \(code.version) \(code.correction)")
            #expect(Self.mismatch(code, symbol) == nil, "version \(code.version) \(code.correction)")
        }
        #expect(Set(codes.map(\.mask)).count == 8, "the inputs should exercise every mask")
    }

    @Test("Every version from 1 to 40 matches segno, which picks the same version and mask for text that fills it")
    func everyVersion() async throws {
        // Given, for each version, as many bytes as it holds at a level that changes with the version
        let inputs = (1...40).map { version in
            let correction = QRCode.ErrorCorrection.allCases[version % 4]
            let length = QRCode.byteCapacity(version: version, correction: correction)
            return (bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 73 &+ version) }, correction: correction, version: version)
        }
        let codes = try inputs.map { try QRCode(bytes: $0.bytes, correction: $0.correction) }

        // When segno chooses version and mask itself
        let symbols = try await Segno.encode(inputs.map { .init($0.bytes, $0.correction) })

        // Then both use that version (the smallest that holds the bytes), the same mask and the same modules
        for (input, (code, symbol)) in zip(inputs, zip(codes, symbols)) {
            #expect(code.version == input.version)
            #expect(symbol.version == input.version)
            #expect(code.mask == symbol.mask, "version \(input.version)")
            #expect(Self.mismatch(code, symbol) == nil, "version \(input.version) \(input.correction)")
        }
    }

    @Test("Holds the byte counts of ISO/IEC 18004 Table 7, and says what to do with text beyond version 40")
    func capacity() throws {
        #expect(QRCode.ErrorCorrection.allCases.map { QRCode.byteCapacity(version: 1, correction: $0) } == [17, 14, 11, 7])
        #expect(QRCode.ErrorCorrection.allCases.map { QRCode.byteCapacity(version: 10, correction: $0) } == [271, 213, 151, 119])
        #expect(QRCode.ErrorCorrection.allCases.map { QRCode.byteCapacity(version: 40, correction: $0) } == [2953, 2331, 1663, 1273])

        #expect(try QRCode(String(repeating: "a", count: 2953), correction: .low).size == 177)
        #expect(throws: QRCode.EncodingError.tooLong(bytes: 2954, maximum: 2953)) {
            try QRCode(String(repeating: "a", count: 2954), correction: .low)
        }
        let error = #expect(throws: QRCode.EncodingError.self) { try QRCode(String(repeating: "é", count: 637), correction: .high) }
        #expect(error == .tooLong(bytes: 1274, maximum: 1273))
        #expect(error?.description.contains("Shorten it") == true)
    }

    @Test("The SVG is one compact element whose single path covers exactly the dark modules")
    func svg() throws {
        // Given the code of the otpauth URI
        let code = try QRCode(Self.otpauth)

        // When drawn with 3 px modules and a 2-module quiet zone
        let svg = code.svg(moduleSize: 3, quietZone: 2, label: "Scan \"this\" <code> & go")

        // Then the frame, size and accessibility attributes are there, with no inline style
        let side = code.size + 4
        #expect(
            svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(side) \(side)\" width=\"\(side * 3)\" height=\"\(side * 3)\""))
        #expect(svg.hasSuffix("</svg>"))
        #expect(svg.contains(" role=\"img\" aria-label=\"Scan &quot;this&quot; &lt;code&gt; &amp; go\""))
        #expect(svg.contains(" shape-rendering=\"crispEdges\""))
        #expect(svg.contains("<rect width=\"\(side)\" height=\"\(side)\" fill=\"#fff\"/>"))
        #expect(!svg.contains("style"))
        #expect(svg.components(separatedBy: "<path ").count == 2, "one path")
        #expect(svg.components(separatedBy: "<svg ").count == 2, "one svg element")

        // And the path's runs, one row high, cover the dark modules and nothing else
        let path = try #require(svg.firstMatch(of: /<path fill="#000" d="([^"]*)"\/>/)?.1)
        var dark = Set<[Int]>()
        var covered = 0
        var previousEnd: [Int] = []
        for run in path.matches(of: /M(\d+) (\d+)h(\d+)v1h-(\d+)z/) {
            let (x, y, length) = (Int(run.1)! - 2, Int(run.2)! - 2, Int(run.3)!)
            #expect(length == Int(run.4)!)
            #expect(previousEnd != [x, y], "a run starts where the one before it ends, so they were not merged")
            for offset in 0..<length { dark.insert([x + offset, y]) }
            previousEnd = [x + length, y]
            covered += run.0.count
        }
        #expect(covered == path.count, "the path holds nothing but runs")
        for y in -2..<code.size + 2 {
            for x in -2..<code.size + 2 {
                #expect(dark.contains([x, y]) == code.isDark(x: x, y: y), "module (\(x), \(y))")
            }
        }
    }

    @Test("Reed–Solomon codewords of the ISO/IEC 18004 Annex I example (01234567, version 1-M)")
    func reedSolomon() {
        // The data codewords of the annex's numeric-mode example and their printed error correction codewords.
        let data: [UInt8] = [0x10, 0x20, 0x0C, 0x56, 0x61, 0x80, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11]
        let ecc = ReedSolomon.remainder(data, divisor: ReedSolomon.generator(degree: 10))
        #expect(ecc == [0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55])
    }
}
