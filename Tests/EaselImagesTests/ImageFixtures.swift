import Foundation

/// Hand-made image bytes for tests: gradients, PNG chunks with CRCs, JPEG segments.
enum ImageFixtures {
    /// A width x height RGB gradient (red across, green down, blue constant).
    static func gradient(width: Int, height: Int) -> [UInt8] {
        var pixels = [UInt8]()
        pixels.reserveCapacity(width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                pixels.append(UInt8(x * 255 / max(width - 1, 1)))
                pixels.append(UInt8(y * 255 / max(height - 1, 1)))
                pixels.append(128)
            }
        }
        return pixels
    }

    // MARK: PNG by hand

    /// A PNG from raw RGB rows, written chunk by chunk (zlib with stored blocks), with optional
    /// extra chunks placed before IDAT.
    static func png(width: Int, height: Int, rgb: [UInt8], extraChunks: [(type: String, data: [UInt8])] = []) -> Data {
        var raw = [UInt8]()
        for y in 0..<height {
            raw.append(0) // filter: none
            raw.append(contentsOf: rgb[(y * width * 3)..<((y + 1) * width * 3)])
        }
        return self.png(width: width, height: height, idat: self.zlibStored(raw), extraChunks: extraChunks)
    }

    /// A PNG with a given IHDR size and IDAT payload: the IDAT need not match the size.
    static func png(width: Int, height: Int, idat: [UInt8], extraChunks: [(type: String, data: [UInt8])] = []) -> Data {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        let ihdr = self.bigEndian32(UInt32(width)) + self.bigEndian32(UInt32(height)) + [8, 2, 0, 0, 0] // 8-bit RGB
        out += self.chunk("IHDR", ihdr)
        for extra in extraChunks { out += self.chunk(extra.type, extra.data) }
        out += self.chunk("IDAT", idat)
        out += self.chunk("IEND", [])
        return Data(out)
    }

    /// A "pixel bomb": a valid PNG header claiming width x height, with a tiny IDAT.
    static func pngBomb(width: Int, height: Int) -> Data {
        self.png(width: width, height: height, idat: self.zlibStored([0, 0, 0, 0]))
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        return self.bigEndian32(UInt32(data.count)) + typeBytes + data + self.bigEndian32(self.crc32(typeBytes + data))
    }

    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let count = min(65535, data.count - offset)
            let last: UInt8 = offset + count == data.count ? 1 : 0
            out += [last, UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
            out += data[offset..<(offset + count)]
            offset += count
        } while offset < data.count
        return out + self.bigEndian32(self.adler32(data))
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in bytes {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        return (b << 16) | a
    }

    static func bigEndian32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    // MARK: JPEG metadata by hand

    /// Inserts an EXIF APP1 segment (IFD0 with Artist and, optionally, Orientation) and a COM
    /// segment right after the SOI marker of a JPEG.
    static func addingMetadata(to jpeg: Data, artist: String, comment: String, orientation: UInt16? = nil) -> Data {
        let bytes = [UInt8](jpeg)
        precondition(bytes.starts(with: [0xFF, 0xD8]))

        // Little-endian TIFF: header, IFD0, then the Artist string.
        let artistBytes = Array(artist.utf8) + [0]
        var entries: [[UInt8]] = []
        if let orientation {
            // tag 0x0112 SHORT x1, value inline
            entries.append(self.le16(0x0112) + self.le16(3) + self.le32(1) + self.le16(orientation) + [0, 0])
        }
        let entryCount = entries.count + 1
        let stringOffset = 8 + 2 + entryCount * 12 + 4
        // tag 0x013B ASCII
        entries.append(self.le16(0x013B) + self.le16(2) + self.le32(UInt32(artistBytes.count)) + self.le32(UInt32(stringOffset)))
        var tiff: [UInt8] = [0x49, 0x49, 0x2A, 0x00] + self.le32(8)
        tiff += self.le16(UInt16(entryCount))
        for entry in entries { tiff += entry }
        tiff += self.le32(0) // no next IFD
        tiff += artistBytes

        let exif = Array("Exif".utf8) + [0, 0] + tiff
        let app1: [UInt8] = [0xFF, 0xE1] + self.be16(UInt16(exif.count + 2)) + exif
        let commentBytes = Array(comment.utf8)
        let com: [UInt8] = [0xFF, 0xFE] + self.be16(UInt16(commentBytes.count + 2)) + commentBytes
        return Data([0xFF, 0xD8] + app1 + com + bytes.dropFirst(2))
    }

    static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }
    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
}

extension Data {
    /// Whether these bytes contain `string` (as UTF-8) anywhere.
    func contains(_ string: String) -> Bool {
        self.range(of: Data(string.utf8)) != nil
    }
}
