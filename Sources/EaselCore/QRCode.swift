/// A QR code (ISO/IEC 18004) holding text as its UTF-8 bytes in byte mode, e.g. an otpauth:// URI
/// for an authenticator app.
///
/// All 40 versions and the four error correction levels; the smallest version that holds the text at
/// the asked level is used (the level is never raised on its own), and the mask with the lowest
/// penalty score (§7.8.3). There is no ECI header: the standard's default for byte mode is
/// ISO-8859-1, but common readers (zbar, ZXing, phone cameras) detect UTF-8, and otpauth URIs are
/// ASCII anyway. Text past version 40's capacity throws `EncodingError.tooLong`.
public struct QRCode: Sendable, Equatable {
    public enum ErrorCorrection: Sendable, CaseIterable {
        /// Recovers about 7% of damaged codewords.
        case low
        /// About 15%.
        case medium
        /// About 25%.
        case quartile
        /// About 30%.
        case high

        /// The two bits of the format information (Table 12), which are not in L-M-Q-H order.
        var formatBits: Int {
            switch self {
            case .low: 1
            case .medium: 0
            case .quartile: 3
            case .high: 2
            }
        }

        var tableIndex: Int {
            switch self {
            case .low: 0
            case .medium: 1
            case .quartile: 2
            case .high: 3
            }
        }
    }

    public enum EncodingError: Error, CustomStringConvertible, Equatable {
        /// The text needs more bytes than the symbol (version 40 unless pinned) holds at this level.
        case tooLong(bytes: Int, maximum: Int)

        public var description: String {
            switch self {
            case .tooLong(let bytes, let maximum):
                "The text is \(bytes) bytes long, more than the \(maximum) bytes a QR code holds at this error correction level. "
                    + "Shorten it or choose a lower error correction level."
            }
        }
    }

    /// Modules per side, without the quiet zone: 21 for version 1, 4 more for each version after.
    public let size: Int
    public let version: Int
    public let correction: ErrorCorrection
    /// The data mask pattern, 0–7 (Table 10).
    public let mask: Int
    /// Row-major, `true` for dark.
    private let modules: [Bool]

    public init(_ text: String, correction: ErrorCorrection = .medium) throws {
        try self.init(bytes: Array(text.utf8), correction: correction)
    }

    /// `version` and `mask` pin what is otherwise chosen, for comparing with other encoders.
    init(bytes: [UInt8], correction: ErrorCorrection, version pinnedVersion: Int? = nil, mask pinnedMask: Int? = nil) throws {
        let version: Int
        if let pinnedVersion {
            precondition((1...40).contains(pinnedVersion), "QR code versions are 1 to 40")
            guard bytes.count <= Self.byteCapacity(version: pinnedVersion, correction: correction) else {
                throw EncodingError.tooLong(bytes: bytes.count, maximum: Self.byteCapacity(version: pinnedVersion, correction: correction))
            }
            version = pinnedVersion
        } else {
            guard let smallest = (1...40).first(where: { bytes.count <= Self.byteCapacity(version: $0, correction: correction) }) else {
                throw EncodingError.tooLong(bytes: bytes.count, maximum: Self.byteCapacity(version: 40, correction: correction))
            }
            version = smallest
        }
        if let pinnedMask { precondition((0..<8).contains(pinnedMask), "QR code masks are 0 to 7") }

        let data = Self.dataCodewords(bytes, version: version, correction: correction)
        var grid = Grid(version: version)
        grid.place(Self.withErrorCorrection(data, version: version, correction: correction))
        // Scored before format and version information are drawn (their areas count as light), as
        // segno does; encoders that draw them first can pick another mask, which reads just as well.
        let mask = pinnedMask ?? grid.bestMask()
        grid = grid.masked(mask)
        grid.drawFormat(correction: correction, mask: mask)
        grid.drawVersion()

        self.size = grid.size
        self.version = version
        self.correction = correction
        self.mask = mask
        self.modules = grid.modules
    }

    /// Whether the module in column `x`, row `y` (from the top left) is dark; outside the symbol,
    /// in the quiet zone, everything is light.
    public func isDark(x: Int, y: Int) -> Bool {
        guard (0..<self.size).contains(x), (0..<self.size).contains(y) else { return false }
        return self.modules[y * self.size + x]
    }

    /// A self-contained `<svg>` for inline use in HTML: one module is one user unit of the viewBox and
    /// `moduleSize` pixels wide; the dark modules are one path of horizontal runs. Colours are
    /// presentation attributes, not `style=`, so a Content-Security-Policy without 'unsafe-inline'
    /// styles keeps them; the white background keeps the code readable on dark pages.
    public func svg(moduleSize: Int = 4, quietZone: Int = 4, label: String = "QR code") -> String {
        precondition(moduleSize > 0 && quietZone >= 0, "moduleSize must be positive and quietZone not negative")
        let side = self.size + 2 * quietZone
        var path = ""
        for y in 0..<self.size {
            var x = 0
            while x < self.size {
                guard self.isDark(x: x, y: y) else {
                    x += 1
                    continue
                }
                let start = x
                while x < self.size, self.isDark(x: x, y: y) { x += 1 }
                path += "M\(start + quietZone) \(y + quietZone)h\(x - start)v1h-\(x - start)z"
            }
        }
        let pixels = side * moduleSize
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(side) \(side)\" width=\"\(pixels)\" height=\"\(pixels)\" "
            + "role=\"img\" aria-label=\"\(Markup.escape(label))\" shape-rendering=\"crispEdges\">"
            + "<rect width=\"\(side)\" height=\"\(side)\" fill=\"#fff\"/><path fill=\"#000\" d=\"\(path)\"/></svg>"
    }
}

// MARK: Capacity and codewords

extension QRCode {
    /// Error correction codewords per block (Table 9), by level (L, M, Q, H) and version − 1.
    static let eccCodewordsPerBlock: [[Int]] = [
        [  // L, versions 1–10, 11–20, 21–30, 31–40
            7, 10, 15, 20, 26, 18, 20, 24, 30, 18,
            20, 24, 26, 30, 22, 24, 28, 30, 28, 28,
            28, 28, 30, 30, 26, 28, 30, 30, 30, 30,
            30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
        ],
        [  // M
            10, 16, 26, 18, 24, 16, 18, 22, 22, 26,
            30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
            26, 28, 28, 28, 28, 28, 28, 28, 28, 28,
            28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
        ],
        [  // Q
            13, 22, 18, 26, 18, 24, 18, 22, 20, 24,
            28, 26, 24, 20, 30, 24, 28, 28, 26, 30,
            28, 30, 30, 30, 30, 28, 30, 30, 30, 30,
            30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
        ],
        [  // H
            17, 28, 22, 16, 22, 28, 26, 26, 24, 28,
            24, 28, 22, 24, 24, 30, 28, 28, 26, 28,
            30, 24, 30, 30, 30, 30, 30, 30, 30, 30,
            30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
        ],
    ]

    /// Error correction blocks (Table 9), by level (L, M, Q, H) and version − 1.
    static let eccBlocks: [[Int]] = [
        [  // L, versions 1–10, 11–20, 21–30, 31–40
            1, 1, 1, 1, 1, 2, 2, 2, 2, 4,
            4, 4, 4, 4, 6, 6, 6, 6, 7, 8,
            8, 9, 9, 10, 12, 12, 12, 13, 14, 15,
            16, 17, 18, 19, 19, 20, 21, 22, 24, 25,
        ],
        [  // M
            1, 1, 1, 2, 2, 4, 4, 4, 5, 5,
            5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
            17, 17, 18, 20, 21, 23, 25, 26, 28, 29,
            31, 33, 35, 37, 38, 40, 43, 45, 47, 49,
        ],
        [  // Q
            1, 1, 2, 2, 4, 4, 6, 6, 8, 8,
            8, 10, 12, 16, 12, 17, 16, 18, 21, 20,
            23, 23, 25, 27, 29, 34, 34, 35, 38, 40,
            43, 45, 48, 51, 53, 56, 59, 62, 65, 68,
        ],
        [  // H
            1, 1, 2, 4, 4, 4, 5, 6, 8, 8,
            11, 11, 16, 16, 18, 16, 19, 21, 25, 25,
            25, 34, 30, 32, 35, 37, 40, 42, 45, 48,
            51, 54, 57, 60, 63, 66, 70, 74, 77, 81,
        ],
    ]

    /// Modules left for codewords once the function patterns and format/version areas are taken
    /// (Table 1), remainder bits included.
    static func dataModules(version: Int) -> Int {
        var modules = (16 * version + 128) * version + 64
        if version >= 2 {
            let alignments = version / 7 + 2
            modules -= (25 * alignments - 10) * alignments - 55
            if version >= 7 { modules -= 36 }
        }
        return modules
    }

    static func dataCodewordCount(version: Int, correction: ErrorCorrection) -> Int {
        let level = correction.tableIndex
        return self.dataModules(version: version) / 8 - self.eccCodewordsPerBlock[level][version - 1] * self.eccBlocks[level][version - 1]
    }

    /// Bits of the byte-mode character count indicator (Table 3).
    static func countBits(version: Int) -> Int { version <= 9 ? 8 : 16 }

    static func byteCapacity(version: Int, correction: ErrorCorrection) -> Int {
        (self.dataCodewordCount(version: version, correction: correction) * 8 - 4 - self.countBits(version: version)) / 8
    }

    /// Mode indicator, count, data, terminator and padding (§7.4), as codewords.
    static func dataCodewords(_ bytes: [UInt8], version: Int, correction: ErrorCorrection) -> [UInt8] {
        let capacityBits = self.dataCodewordCount(version: version, correction: correction) * 8
        var bits = BitBuffer()
        bits.append(0b0100, count: 4)
        bits.append(bytes.count, count: self.countBits(version: version))
        for byte in bytes { bits.append(Int(byte), count: 8) }
        bits.append(0, count: min(4, capacityBits - bits.count))
        bits.append(0, count: (8 - bits.count % 8) % 8)
        var codewords = bits.bytes
        var pad: UInt8 = 0xEC
        while codewords.count * 8 < capacityBits {
            codewords.append(pad)
            pad = pad == 0xEC ? 0x11 : 0xEC
        }
        return codewords
    }

    /// Splits the data into blocks, adds each block's Reed–Solomon codewords and interleaves them (§7.6).
    static func withErrorCorrection(_ data: [UInt8], version: Int, correction: ErrorCorrection) -> [UInt8] {
        let level = correction.tableIndex
        let blockCount = self.eccBlocks[level][version - 1]
        let eccLength = self.eccCodewordsPerBlock[level][version - 1]
        let totalCodewords = self.dataModules(version: version) / 8
        // The last blocks are one data codeword longer when the total does not divide evenly.
        let shortBlocks = blockCount - totalCodewords % blockCount
        let shortDataLength = totalCodewords / blockCount - eccLength
        let divisor = ReedSolomon.generator(degree: eccLength)

        var dataBlocks: [[UInt8]] = []
        var eccBlocks: [[UInt8]] = []
        var start = 0
        for index in 0..<blockCount {
            let length = shortDataLength + (index < shortBlocks ? 0 : 1)
            let block = Array(data[start..<start + length])
            start += length
            dataBlocks.append(block)
            eccBlocks.append(ReedSolomon.remainder(block, divisor: divisor))
        }
        var result: [UInt8] = []
        result.reserveCapacity(totalCodewords)
        for column in 0...shortDataLength {
            for block in dataBlocks where column < block.count { result.append(block[column]) }
        }
        for column in 0..<eccLength {
            for block in eccBlocks { result.append(block[column]) }
        }
        return result
    }

    /// Centres of the alignment patterns on each axis (Annex E).
    static func alignmentCentres(version: Int) -> [Int] {
        guard version >= 2 else { return [] }
        let count = version / 7 + 2
        // Evenly spaced from the last one back to 6, with an even step (version 32 is the exception).
        let step = version == 32 ? 26 : (version * 4 + count * 2 + 1) / (count * 2 - 2) * 2
        let size = version * 4 + 17
        return [6] + (0..<count - 1).map { size - 7 - $0 * step }.reversed()
    }
}

struct BitBuffer {
    private(set) var bytes: [UInt8] = []
    private(set) var count = 0

    /// Appends the low `count` bits of `value`, most significant first.
    mutating func append(_ value: Int, count: Int) {
        for shift in stride(from: count - 1, through: 0, by: -1) {
            if self.count % 8 == 0 { self.bytes.append(0) }
            if (value >> shift) & 1 == 1 { self.bytes[self.bytes.count - 1] |= 0x80 >> UInt8(self.count % 8) }
            self.count += 1
        }
    }
}

/// Reed–Solomon over GF(256) with the QR polynomial x⁸ + x⁴ + x³ + x² + 1 and generator roots 2⁰…2ⁿ⁻¹.
enum ReedSolomon {
    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        var product = 0
        for bit in stride(from: 7, through: 0, by: -1) {
            product = (product << 1) ^ ((product >> 7) * 0x11D)
            product ^= ((Int(b) >> bit) & 1) * Int(a)
        }
        return UInt8(product)
    }

    /// The coefficients of (x − 2⁰)(x − 2¹)…(x − 2ⁿ⁻¹), highest power first, its leading 1 left out.
    static func generator(degree: Int) -> [UInt8] {
        var coefficients = [UInt8](repeating: 0, count: degree)
        coefficients[degree - 1] = 1
        var root: UInt8 = 1
        for _ in 0..<degree {
            for index in 0..<degree {
                coefficients[index] = self.multiply(coefficients[index], root)
                if index + 1 < degree { coefficients[index] ^= coefficients[index + 1] }
            }
            root = self.multiply(root, 2)
        }
        return coefficients
    }

    /// The error correction codewords: data × xⁿ modulo the generator.
    static func remainder(_ data: [UInt8], divisor: [UInt8]) -> [UInt8] {
        var remainder = [UInt8](repeating: 0, count: divisor.count)
        for byte in data {
            let factor = byte ^ remainder.removeFirst()
            remainder.append(0)
            for index in remainder.indices { remainder[index] ^= self.multiply(divisor[index], factor) }
        }
        return remainder
    }
}

// MARK: The module grid

extension QRCode {
    struct Grid {
        let version: Int
        let size: Int
        var modules: [Bool]
        /// Finder, separator, timing and alignment patterns, and the reserved format and version areas.
        var isFunction: [Bool]

        /// A grid with the function patterns drawn; format and version areas are reserved but light.
        init(version: Int) {
            self.version = version
            self.size = version * 4 + 17
            self.modules = Array(repeating: false, count: self.size * self.size)
            self.isFunction = Array(repeating: false, count: self.size * self.size)

            for index in 0..<self.size {
                self.setFunction(x: 6, y: index, dark: index % 2 == 0)
                self.setFunction(x: index, y: 6, dark: index % 2 == 0)
            }
            for (x, y) in [(3, 3), (self.size - 4, 3), (3, self.size - 4)] {
                // The 7×7 finder and its light separator, clipped at the symbol's edge.
                for dy in -4...4 {
                    for dx in -4...4 where (0..<self.size).contains(x + dx) && (0..<self.size).contains(y + dy) {
                        let ring = max(abs(dx), abs(dy))
                        self.setFunction(x: x + dx, y: y + dy, dark: ring != 2 && ring != 4)
                    }
                }
            }
            let centres = QRCode.alignmentCentres(version: version)
            for (i, y) in centres.enumerated() {
                for (j, x) in centres.enumerated() {
                    // Not where a finder pattern is.
                    if (i == 0 && j == 0) || (i == 0 && j == centres.count - 1) || (i == centres.count - 1 && j == 0) { continue }
                    for dy in -2...2 {
                        for dx in -2...2 { self.setFunction(x: x + dx, y: y + dy, dark: max(abs(dx), abs(dy)) != 1) }
                    }
                }
            }
            for index in 0...8 {
                self.reserve(x: 8, y: index)
                self.reserve(x: index, y: 8)
            }
            for index in 0..<8 {
                self.reserve(x: self.size - 1 - index, y: 8)
                // The lowest of these is the always-dark module, drawn with the format information.
                self.reserve(x: 8, y: self.size - 1 - index)
            }
            if version >= 7 {
                for a in 0..<6 {
                    for b in (self.size - 11)..<(self.size - 8) {
                        self.reserve(x: a, y: b)
                        self.reserve(x: b, y: a)
                    }
                }
            }
        }

        mutating func setFunction(x: Int, y: Int, dark: Bool) {
            self.modules[y * self.size + x] = dark
            self.isFunction[y * self.size + x] = true
        }

        mutating func reserve(x: Int, y: Int) {
            self.isFunction[y * self.size + x] = true
        }

        /// Fills the other modules with the codewords' bits in two-module columns, zig-zagging up and
        /// down from the right and skipping the vertical timing pattern (§7.7.3). Remainder bits stay light.
        mutating func place(_ codewords: [UInt8]) {
            let bitCount = codewords.count * 8
            var bit = 0
            var right = self.size - 1
            while right >= 1 {
                if right == 6 { right = 5 }
                let upward = (right + 1) & 2 == 0
                for step in 0..<self.size {
                    let y = upward ? self.size - 1 - step : step
                    for x in [right, right - 1] where !self.isFunction[y * self.size + x] && bit < bitCount {
                        self.modules[y * self.size + x] = (codewords[bit >> 3] >> (7 - UInt8(bit & 7))) & 1 == 1
                        bit += 1
                    }
                }
                right -= 2
            }
            precondition(bit == bitCount, "the codewords of version \(self.version) must fill its data modules")
        }

        /// A copy with the data modules flipped where mask pattern `mask` holds (Table 10; i row, j column).
        func masked(_ mask: Int) -> Grid {
            var copy = self
            for i in 0..<self.size {
                for j in 0..<self.size where !self.isFunction[i * self.size + j] {
                    let flip =
                        switch mask {
                        case 0: (i + j) % 2 == 0
                        case 1: i % 2 == 0
                        case 2: j % 3 == 0
                        case 3: (i + j) % 3 == 0
                        case 4: (i / 2 + j / 3) % 2 == 0
                        case 5: (i * j) % 2 + (i * j) % 3 == 0
                        case 6: ((i * j) % 2 + (i * j) % 3) % 2 == 0
                        default: ((i + j) % 2 + (i * j) % 3) % 2 == 0
                        }
                    if flip { copy.modules[i * self.size + j].toggle() }
                }
            }
            return copy
        }

        /// The mask with the lowest penalty; the lowest number among equals.
        func bestMask() -> Int {
            var best = (mask: 0, score: Int.max)
            for mask in 0..<8 {
                let score = self.masked(mask).penalty()
                if score < best.score { best = (mask, score) }
            }
            return best.mask
        }

        /// Error level and mask, BCH(15,5)-protected and XOR-ed with 101010000010010, in both copies,
        /// plus the dark module (§7.9).
        mutating func drawFormat(correction: ErrorCorrection, mask: Int) {
            let data = correction.formatBits << 3 | mask
            var remainder = data
            for _ in 0..<10 { remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537) }
            let bits = (data << 10 | remainder) ^ 0x5412
            func bit(_ index: Int) -> Bool { (bits >> index) & 1 == 1 }

            for index in 0...5 { self.setFunction(x: 8, y: index, dark: bit(index)) }
            self.setFunction(x: 8, y: 7, dark: bit(6))
            self.setFunction(x: 8, y: 8, dark: bit(7))
            self.setFunction(x: 7, y: 8, dark: bit(8))
            for index in 9..<15 { self.setFunction(x: 14 - index, y: 8, dark: bit(index)) }

            for index in 0..<8 { self.setFunction(x: self.size - 1 - index, y: 8, dark: bit(index)) }
            for index in 8..<15 { self.setFunction(x: 8, y: self.size - 15 + index, dark: bit(index)) }
            self.setFunction(x: 8, y: self.size - 8, dark: true)
        }

        /// From version 7: the version number, BCH(18,6)-protected, in two 6×3 blocks (§7.10).
        mutating func drawVersion() {
            guard self.version >= 7 else { return }
            var remainder = self.version
            for _ in 0..<12 { remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1F25) }
            let bits = self.version << 12 | remainder
            for index in 0..<18 {
                let dark = (bits >> index) & 1 == 1
                let (a, b) = (self.size - 11 + index % 3, index / 3)
                self.setFunction(x: a, y: b, dark: dark)
                self.setFunction(x: b, y: a, dark: dark)
            }
        }

        /// The penalty of §7.8.3 (N1 = 3, N2 = 3, N3 = 40, N4 = 10), with the readings segno takes
        /// where the text leaves room: a 1:1:3:1:1 pattern counts once when 4 light modules (or the
        /// symbol's edge) precede or follow it, and the search goes on after it.
        func penalty() -> Int {
            var score = 0
            var dark = 0
            var row = [Bool](repeating: false, count: self.size)
            var column = [Bool](repeating: false, count: self.size)
            for i in 0..<self.size {
                var rowRun = 0
                var columnRun = 0
                for j in 0..<self.size {
                    row[j] = self.modules[i * self.size + j]
                    column[j] = self.modules[j * self.size + i]
                    if row[j] { dark += 1 }
                    if j > 0, row[j] == row[j - 1] {
                        rowRun += 1
                    } else {
                        if rowRun >= 5 { score += rowRun - 2 }
                        rowRun = 1
                    }
                    if j > 0, column[j] == column[j - 1] {
                        columnRun += 1
                    } else {
                        if columnRun >= 5 { score += columnRun - 2 }
                        columnRun = 1
                    }
                    if i > 0, j > 0, row[j] == row[j - 1], row[j] == self.modules[(i - 1) * self.size + j],
                        row[j] == self.modules[(i - 1) * self.size + j - 1]
                    {
                        score += 3
                    }
                }
                if rowRun >= 5 { score += rowRun - 2 }
                if columnRun >= 5 { score += columnRun - 2 }
                score += 40 * (Self.finderLikePatterns(in: row) + Self.finderLikePatterns(in: column))
            }
            // Computed as segno computes it, in floating point, so the steps fall at the same places.
            let percent = Double(dark) / Double(self.size * self.size)
            score += 10 * Int(abs(percent * 100 - 50) / 5)
            return score
        }

        static let finderLike: [Bool] = [true, false, true, true, true, false, true]

        static func finderLikePatterns(in line: [Bool]) -> Int {
            var count = 0
            var start = 0
            while start + 7 <= line.count {
                guard line[start..<start + 7].elementsEqual(Self.finderLike) else {
                    start += 1
                    continue
                }
                let lightBefore = !line[max(start - 4, 0)..<start].contains(true)
                let lightAfter = !line[(start + 7)..<min(start + 11, line.count)].contains(true)
                if lightBefore || lightAfter {
                    count += 1
                    start += 7
                } else {
                    start += 4
                }
            }
            return count
        }
    }
}
