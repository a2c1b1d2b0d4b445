import EaselImages
import Foundation
import Testing

@Suite("Image library")
struct ImageLibraryTests {
    let library = ImageLibrary()

    private func expectError(_ expected: ImageError, _ body: () throws(ImageError) -> Void) {
        do {
            try body()
            Issue.record("expected \(expected), got success")
        } catch {
            #expect(error == expected)
        }
    }

    // MARK: Encoding and inspecting

    @Test("A generated gradient encodes as each format and inspects back with its format and size", arguments: [ImageFormat.png, .jpeg, .webp])
    func encodeAndInspect(format: ImageFormat) throws {
        let pixels = ImageFixtures.gradient(width: 64, height: 48)
        let data = try self.library.encode(rgb: pixels, width: 64, height: 48, as: format)
        #expect(ImageLibrary.sniffFormat(data) == format)
        #expect(try self.library.inspect(data) == ImageInfo(format: format, width: 64, height: 48))
        // No metadata, not even the EXIF block libvips 8.14's webpsave writes despite "strip".
        #expect(!data.contains("EXIF") && !data.contains("Exif"))
        // And it decodes fully.
        let clean = try self.library.sanitize(data)
        #expect(clean.info == ImageInfo(format: format, width: 64, height: 48))
        // Data overload gives the same kind of file.
        let fromData = try self.library.encode(rgb: Data(pixels), width: 64, height: 48, as: format)
        #expect(try self.library.inspect(fromData).format == format)
    }

    @Test("Encoding refuses a pixel buffer of the wrong length")
    func encodeWrongLength() {
        self.expectError(.encodingFailed) { () throws(ImageError) in
            _ = try self.library.encode(rgb: [UInt8](repeating: 0, count: 10), width: 2, height: 2, as: .png)
        }
    }

    @Test("Formats give their content type and file extension")
    func formatNames() {
        #expect(ImageFormat.png.contentType == "image/png")
        #expect(ImageFormat.jpeg.contentType == "image/jpeg")
        #expect(ImageFormat.webp.contentType == "image/webp")
        #expect(ImageFormat.jpeg.fileExtension == "jpg")
        #expect(ImageFormat.webp.fileExtension == "webp")
    }

    // MARK: Sniffing and refusing

    @Test("Sniffing recognises magic bytes and rejects text, HTML, empty data and GIF")
    func sniffing() {
        #expect(ImageLibrary.sniffFormat(Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0])) == .png)
        #expect(ImageLibrary.sniffFormat(Data([0xFF, 0xD8, 0xFF, 0xE0])) == .jpeg)
        #expect(ImageLibrary.sniffFormat(Data("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8)) == .webp)
        #expect(ImageLibrary.sniffFormat(Data("RIFF\u{0}\u{0}\u{0}\u{0}WAVEfmt ".utf8)) == nil)
        #expect(ImageLibrary.sniffFormat(Data("hello, world".utf8)) == nil)
        #expect(ImageLibrary.sniffFormat(Data("<!DOCTYPE html><html><body>".utf8)) == nil)
        #expect(ImageLibrary.sniffFormat(Data()) == nil)
        #expect(ImageLibrary.sniffFormat(Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8)) == nil)
        #expect(ImageLibrary.sniffFormat(Data([0x89, 0x50, 0x4E])) == nil)
    }

    @Test("Bytes that are not an image are refused by every operation")
    func notAnImage() {
        let html = Data("<html><body>not a picture</body></html>".utf8)
        self.expectError(.notAnImage) { () throws(ImageError) in _ = try self.library.inspect(html) }
        self.expectError(.notAnImage) { () throws(ImageError) in _ = try self.library.sanitize(html) }
        self.expectError(.notAnImage) { () throws(ImageError) in _ = try self.library.thumbnail(html) }
        self.expectError(.notAnImage) { () throws(ImageError) in _ = try self.library.inspect(Data()) }
        #expect(ImageError.notAnImage.description == "The file is not a PNG, JPEG or WebP image.")
    }

    @Test("A GIF is an unsupported format")
    func gifUnsupported() {
        let gif = Data("GIF89a\u{1}\u{0}\u{1}\u{0}\u{0}\u{0}\u{0};".utf8)
        self.expectError(.unsupportedFormat) { () throws(ImageError) in _ = try self.library.inspect(gif) }
    }

    @Test("Only magic bytes count: a PNG signature followed by junk is damaged")
    func signatureThenJunk() {
        let junk = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array("this is not a png".utf8))
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.inspect(junk) }
    }

    @Test("More bytes than the limit are refused before anything else")
    func tooLarge() throws {
        let small = ImageLibrary(maximumBytes: 100)
        let data = try self.library.encode(rgb: ImageFixtures.gradient(width: 64, height: 64), width: 64, height: 64, as: .png)
        #expect(data.count > 100)
        self.expectError(.tooLarge(limit: 100)) { () throws(ImageError) in _ = try small.inspect(data) }
    }

    // MARK: Pixel limits

    @Test("A PNG header claiming 30000x30000 is refused from the header alone")
    func pixelBomb() {
        // The IDAT holds four bytes: decoding would fail as damaged, so tooManyPixels shows
        // the limit was checked from the header before any decoding.
        let bomb = ImageFixtures.pngBomb(width: 30000, height: 30000)
        #expect(bomb.count < 100)
        self.expectError(.tooManyPixels(limit: 90_000_000)) { () throws(ImageError) in _ = try self.library.inspect(bomb) }
        self.expectError(.tooManyPixels(limit: 90_000_000)) { () throws(ImageError) in _ = try self.library.sanitize(bomb) }
        self.expectError(.tooManyPixels(limit: 90_000_000)) { () throws(ImageError) in _ = try self.library.thumbnail(bomb) }
        #expect(ImageError.tooManyPixels(limit: 90_000_000).description.contains("90 megapixels"))
    }

    @Test("The pixel limit is the configured one")
    func configuredPixelLimit() throws {
        let data = try self.library.encode(rgb: ImageFixtures.gradient(width: 100, height: 50), width: 100, height: 50, as: .png)
        let strict = ImageLibrary(maximumPixels: 4_999)
        self.expectError(.tooManyPixels(limit: 4_999)) { () throws(ImageError) in _ = try strict.inspect(data) }
        #expect(try ImageLibrary(maximumPixels: 5_000).inspect(data).pixels == 5_000)
    }

    // MARK: Sanitizing

    @Test("A truncated PNG is damaged")
    func truncatedPNG() throws {
        let pixels = (0..<(256 * 256 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
        let data = try self.library.encode(rgb: pixels, width: 256, height: 256, as: .png)
        let truncated = data.prefix(data.count * 6 / 10)
        // The header is intact...
        #expect(try self.library.inspect(truncated) == ImageInfo(format: .png, width: 256, height: 256))
        // ...but the pixels are not.
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.sanitize(truncated) }
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.thumbnail(truncated) }
    }

    @Test("A truncated JPEG is damaged, not a grey half image")
    func truncatedJPEG() throws {
        let pixels = (0..<(256 * 256 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
        let data = try self.library.encode(rgb: pixels, width: 256, height: 256, as: .jpeg)
        let truncated = data.prefix(data.count * 6 / 10)
        #expect(try self.library.inspect(truncated) == ImageInfo(format: .jpeg, width: 256, height: 256))
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.sanitize(truncated) }
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.thumbnail(truncated) }
    }

    @Test("A truncated WebP is damaged")
    func truncatedWebP() throws {
        let pixels = (0..<(256 * 256 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
        let data = try self.library.encode(rgb: pixels, width: 256, height: 256, as: .webp)
        let truncated = data.prefix(data.count * 6 / 10)
        self.expectError(.damaged) { () throws(ImageError) in _ = try self.library.sanitize(truncated) }
    }

    @Test("Sanitizing a JPEG removes its EXIF and comment")
    func sanitizeStripsJPEGMetadata() throws {
        let plain = try self.library.encode(rgb: ImageFixtures.gradient(width: 80, height: 60), width: 80, height: 60, as: .jpeg)
        let tagged = ImageFixtures.addingMetadata(to: plain, artist: "EaselSecretArtist", comment: "EaselSecretComment")
        // The fixture really carries the metadata and is still a readable JPEG.
        #expect(tagged.contains("Exif"))
        #expect(tagged.contains("EaselSecretArtist"))
        #expect(tagged.contains("EaselSecretComment"))
        #expect(try self.library.inspect(tagged) == ImageInfo(format: .jpeg, width: 80, height: 60))

        let clean = try self.library.sanitize(tagged)
        #expect(clean.info == ImageInfo(format: .jpeg, width: 80, height: 60))
        #expect(ImageLibrary.sniffFormat(clean.data) == .jpeg)
        #expect(!clean.data.contains("EaselSecretArtist"))
        #expect(!clean.data.contains("EaselSecretComment"))
        #expect(!clean.data.contains("Exif"))
    }

    @Test("Sanitizing turns a JPEG upright by its EXIF orientation")
    func sanitizeAutoRotates() throws {
        let plain = try self.library.encode(rgb: ImageFixtures.gradient(width: 200, height: 100), width: 200, height: 100, as: .jpeg)
        let rotated = ImageFixtures.addingMetadata(to: plain, artist: "Someone", comment: "x", orientation: 6)
        #expect(try self.library.inspect(rotated) == ImageInfo(format: .jpeg, width: 200, height: 100))
        let clean = try self.library.sanitize(rotated)
        #expect(clean.info == ImageInfo(format: .jpeg, width: 100, height: 200))
        #expect(try self.library.inspect(clean.data) == ImageInfo(format: .jpeg, width: 100, height: 200))
        #expect(!clean.data.contains("Exif"))
    }

    @Test("Sanitizing a hand-made PNG decodes it and drops its text chunks")
    func sanitizeStripsPNGText() throws {
        let pixels = ImageFixtures.gradient(width: 4, height: 3)
        let text = Array("Comment".utf8) + [0] + Array("EaselSecretText".utf8)
        let png = ImageFixtures.png(width: 4, height: 3, rgb: pixels, extraChunks: [("tEXt", text)])
        #expect(png.contains("EaselSecretText"))
        let clean = try self.library.sanitize(png)
        #expect(clean.info == ImageInfo(format: .png, width: 4, height: 3))
        #expect(!clean.data.contains("EaselSecretText"))
        #expect(!clean.data.contains("tEXt"))
    }

    // MARK: Thumbnails

    @Test("A 2000x1000 image becomes a 512x256 WebP thumbnail", arguments: [ImageFormat.png, .jpeg])
    func thumbnailShrinks(format: ImageFormat) throws {
        let data = try self.library.encode(rgb: ImageFixtures.gradient(width: 2000, height: 1000), width: 2000, height: 1000, as: format)
        let thumb = try self.library.thumbnail(data)
        #expect(thumb.info == ImageInfo(format: .webp, width: 512, height: 256))
        #expect(try self.library.inspect(thumb.data) == ImageInfo(format: .webp, width: 512, height: 256))
    }

    @Test("A tall image fits the longest edge")
    func thumbnailTall() throws {
        let data = try self.library.encode(rgb: ImageFixtures.gradient(width: 300, height: 600), width: 300, height: 600, as: .webp)
        let thumb = try self.library.thumbnail(data, maxEdge: 128)
        #expect(thumb.info == ImageInfo(format: .webp, width: 64, height: 128))
    }

    @Test("A small image is never enlarged")
    func thumbnailNeverEnlarges() throws {
        let data = try self.library.encode(rgb: ImageFixtures.gradient(width: 100, height: 50), width: 100, height: 50, as: .png)
        let thumb = try self.library.thumbnail(data)
        #expect(thumb.info == ImageInfo(format: .webp, width: 100, height: 50))
        #expect(try self.library.inspect(thumb.data) == ImageInfo(format: .webp, width: 100, height: 50))
    }

    @Test("Thumbnails carry no metadata")
    func thumbnailStripped() throws {
        let plain = try self.library.encode(rgb: ImageFixtures.gradient(width: 80, height: 60), width: 80, height: 60, as: .jpeg)
        let tagged = ImageFixtures.addingMetadata(to: plain, artist: "EaselSecretArtist", comment: "EaselSecretComment", orientation: 6)
        let thumb = try self.library.thumbnail(tagged)
        // Upright, too.
        #expect(thumb.info == ImageInfo(format: .webp, width: 60, height: 80))
        #expect(!thumb.data.contains("EaselSecretArtist"))
        #expect(!thumb.data.contains("EXIF"))
    }

    // MARK: Concurrency

    @Test("Many calls at once all succeed")
    func concurrentCalls() async throws {
        let library = self.library
        let source = try library.encode(rgb: ImageFixtures.gradient(width: 300, height: 200), width: 300, height: 200, as: .jpeg)
        let results = try await withThrowingTaskGroup(of: ImageInfo.self) { group in
            for index in 0..<16 {
                group.addTask {
                    if index.isMultiple(of: 2) {
                        try library.thumbnail(source, maxEdge: 100).info
                    } else {
                        try library.sanitize(source).info
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { $0 == ImageInfo(format: .webp, width: 100, height: 67) }.count == 8)
        #expect(results.filter { $0 == ImageInfo(format: .jpeg, width: 300, height: 200) }.count == 8)
    }
}
