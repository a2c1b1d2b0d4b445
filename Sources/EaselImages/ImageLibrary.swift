import CEaselVips
import Foundation

/// The image formats Easel accepts and produces. Anything else (GIF, SVG, TIFF, HEIC, ...)
/// is refused: fewer decoders facing untrusted bytes.
public enum ImageFormat: String, Sendable, Codable, CaseIterable {
    case png, jpeg, webp

    /// The MIME type to serve the bytes with.
    public var contentType: String {
        switch self {
        case .png: "image/png"
        case .jpeg: "image/jpeg"
        case .webp: "image/webp"
        }
    }

    /// The file name extension, without the dot.
    public var fileExtension: String {
        switch self {
        case .png: "png"
        case .jpeg: "jpg"
        case .webp: "webp"
        }
    }

    fileprivate var vips: Int32 {
        switch self {
        case .png: Int32(EASEL_VIPS_PNG.rawValue)
        case .jpeg: Int32(EASEL_VIPS_JPEG.rawValue)
        case .webp: Int32(EASEL_VIPS_WEBP.rawValue)
        }
    }
}

/// What an image is, as far as Easel cares.
public struct ImageInfo: Sendable, Equatable {
    public var format: ImageFormat
    public var width: Int
    public var height: Int

    public init(format: ImageFormat, width: Int, height: Int) {
        self.format = format
        self.width = width
        self.height = height
    }

    public var pixels: Int { self.width * self.height }
}

/// Why an image was refused or could not be made. The description is meant for people.
public struct ImageError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The magic bytes are not those of a PNG, JPEG or WebP file.
        case notAnImage
        /// A recognised image, but not one Easel handles (or an unsuitable request, e.g. a
        /// WebP larger than 16383 pixels on a side).
        case unsupportedFormat
        /// More pixels than the limit (checked from the header, before decoding).
        case tooManyPixels(limit: Int)
        /// More bytes than the limit.
        case tooLarge(limit: Int)
        /// Truncated or corrupt: the header or the pixel data could not be decoded.
        case damaged
        /// Encoding failed (or the image library could not start).
        case encodingFailed
    }

    public var kind: Kind

    public init(_ kind: Kind) {
        self.kind = kind
    }

    public static let notAnImage = ImageError(.notAnImage)
    public static let unsupportedFormat = ImageError(.unsupportedFormat)
    public static let damaged = ImageError(.damaged)
    public static let encodingFailed = ImageError(.encodingFailed)
    public static func tooManyPixels(limit: Int) -> ImageError { ImageError(.tooManyPixels(limit: limit)) }
    public static func tooLarge(limit: Int) -> ImageError { ImageError(.tooLarge(limit: limit)) }

    public var description: String {
        switch self.kind {
        case .notAnImage:
            "The file is not a PNG, JPEG or WebP image."
        case .unsupportedFormat:
            "This kind of image is not supported; use PNG, JPEG or WebP."
        case .tooManyPixels(let limit):
            "The image is too large: at most \(Self.megapixels(limit)) megapixels are accepted."
        case .tooLarge(let limit):
            "The file is too large: at most \(Self.megabytes(limit)) MB are accepted."
        case .damaged:
            "The image is damaged or incomplete and could not be read."
        case .encodingFailed:
            "The image could not be converted."
        }
    }

    private static func megapixels(_ pixels: Int) -> String {
        let value = Double(pixels) / 1_000_000
        return value.rounded() == value ? String(Int(value)) : String(format: "%.1f", value)
    }

    private static func megabytes(_ bytes: Int) -> String {
        let value = Double(bytes) / 1_048_576
        return value.rounded() == value ? String(Int(value)) : String(format: "%.1f", value)
    }
}

/// Validation, metadata stripping, thumbnails and encoding, through libvips.
///
/// Every call is synchronous CPU work (milliseconds to seconds for big photos): run it on a
/// worker, not on an event loop. Calls are thread-safe. Untrusted bytes are always checked by
/// magic bytes and header dimensions before any pixel is decoded.
public struct ImageLibrary: Sendable {
    /// Images with more pixels are refused before decoding (SECURITY.md: ~90 megapixels).
    public var maximumPixels: Int
    /// Inputs with more bytes are refused before anything else.
    public var maximumBytes: Int

    /// JPEG and WebP quality for re-encoded uploads: high, since it is a second generation.
    static let sanitizeQuality: Int32 = 90
    /// WebP quality for thumbnails.
    static let thumbnailQuality: Int32 = 80
    /// Quality for `encode` (lossy formats).
    static let encodeQuality: Int32 = 90
    /// WebP cannot hold larger sides.
    static let webpMaximumEdge = 16383

    public init(maximumPixels: Int = 90_000_000, maximumBytes: Int = 50 * 1_048_576) {
        self.maximumPixels = maximumPixels
        self.maximumBytes = maximumBytes
    }

    /// The format by magic bytes only (no decoding): PNG `89 50 4E 47 0D 0A 1A 0A`,
    /// JPEG `FF D8 FF`, WebP `RIFF....WEBP`. Nil for anything else, GIF included.
    public static func sniffFormat(_ data: Data) -> ImageFormat? {
        let bytes = [UInt8](data.prefix(12))
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.count == 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WEBP".utf8) {
            return .webp
        }
        return nil
    }

    /// GIF, TIFF, HEIC/AVIF: real images Easel does not take, told apart for a better message.
    static func isOtherImageFormat(_ data: Data) -> Bool {
        let bytes = [UInt8](data.prefix(12))
        if bytes.starts(with: Array("GIF87a".utf8)) || bytes.starts(with: Array("GIF89a".utf8)) { return true }
        if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return true }
        if bytes.count == 12, bytes[4..<8].elementsEqual("ftyp".utf8) {
            let brand = String(decoding: bytes[8..<12], as: UTF8.self)
            return ["heic", "heix", "mif1", "msf1", "avif", "avis"].contains(brand)
        }
        return false
    }

    /// The format by magic bytes, then the dimensions from the header alone (no pixel
    /// decoding), refusing more than `maximumPixels` before anything is decoded.
    public func inspect(_ data: Data) throws(ImageError) -> ImageInfo {
        guard data.count <= self.maximumBytes else { throw .tooLarge(limit: self.maximumBytes) }
        guard let format = Self.sniffFormat(data) else {
            throw Self.isOtherImageFormat(data) ? .unsupportedFormat : .notAnImage
        }
        var width: Int32 = 0
        var height: Int32 = 0
        let result = data.withUnsafeBytes { buffer in
            easel_vips_header(buffer.baseAddress, buffer.count, format.vips, &width, &height)
        }
        try Self.check(result)
        let info = ImageInfo(format: format, width: Int(width), height: Int(height))
        guard info.width > 0, info.height > 0 else { throw .damaged }
        guard info.pixels <= self.maximumPixels else { throw .tooManyPixels(limit: self.maximumPixels) }
        return info
    }

    /// For untrusted uploads: `inspect`, then decode fully (truncated or corrupt data is an
    /// error, not a grey half image), turn upright by EXIF orientation, convert to sRGB when an
    /// ICC profile says otherwise, and re-encode in the same format with no metadata at all
    /// (EXIF, GPS, XMP, ICC, comments). Returns the clean bytes and their (upright) info.
    public func sanitize(_ data: Data) throws(ImageError) -> (data: Data, info: ImageInfo) {
        let original = try self.inspect(data)
        var width: Int32 = 0
        var height: Int32 = 0
        let output = try Self.produce { out, length in
            data.withUnsafeBytes { buffer in
                easel_vips_sanitize(buffer.baseAddress, buffer.count, original.format.vips, Self.sanitizeQuality,
                                    out, length, &width, &height)
            }
        }
        return (output, ImageInfo(format: original.format, width: Int(width), height: Int(height)))
    }

    /// A WebP thumbnail (quality 80, no metadata, upright, sRGB) whose longest edge is at most
    /// `maxEdge`; never enlarged. The input is checked like `inspect` first.
    public func thumbnail(_ data: Data, maxEdge: Int = 512) throws(ImageError) -> (data: Data, info: ImageInfo) {
        guard maxEdge >= 1, maxEdge <= Self.webpMaximumEdge else { throw .unsupportedFormat }
        let original = try self.inspect(data)
        var width: Int32 = 0
        var height: Int32 = 0
        let output = try Self.produce { out, length in
            data.withUnsafeBytes { buffer in
                easel_vips_thumbnail_webp(buffer.baseAddress, buffer.count, original.format.vips, Int32(maxEdge),
                                          Self.thumbnailQuality, out, length, &width, &height)
            }
        }
        return (output, ImageInfo(format: .webp, width: Int(width), height: Int(height)))
    }

    /// Encodes raw 8-bit RGB pixels (`width * height * 3` bytes, row-major, no padding) as a
    /// file. Used to turn pictures the application draws itself into PNG, JPEG or WebP.
    public func encode(rgb: [UInt8], width: Int, height: Int, as format: ImageFormat) throws(ImageError) -> Data {
        // withUnsafeBytes rethrows untyped errors; carry the typed one out in a Result.
        try rgb.withUnsafeBytes { buffer in
            Result { () throws(ImageError) in try self.encode(rgb: buffer, width: width, height: height, as: format) }
        }.get()
    }

    /// Encodes raw 8-bit RGB pixels held in `Data`; see `encode(rgb:width:height:as:)`.
    public func encode(rgb: Data, width: Int, height: Int, as format: ImageFormat) throws(ImageError) -> Data {
        // withUnsafeBytes rethrows untyped errors; carry the typed one out in a Result.
        try rgb.withUnsafeBytes { buffer in
            Result { () throws(ImageError) in try self.encode(rgb: buffer, width: width, height: height, as: format) }
        }.get()
    }

    private func encode(rgb: UnsafeRawBufferPointer, width: Int, height: Int, as format: ImageFormat) throws(ImageError) -> Data {
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max),
              width.multipliedReportingOverflow(by: height).overflow == false,
              rgb.count == width * height * 3
        else { throw .encodingFailed }
        guard width * height <= self.maximumPixels else { throw .tooManyPixels(limit: self.maximumPixels) }
        if format == .webp, max(width, height) > Self.webpMaximumEdge { throw .unsupportedFormat }
        return try Self.produce { out, length in
            easel_vips_encode_rgb(rgb.baseAddress?.assumingMemoryBound(to: UInt8.self), rgb.count,
                                  Int32(width), Int32(height), format.vips, Self.encodeQuality, out, length)
        }
    }

    // MARK: - Plumbing

    /// Runs a wrapper that hands back a g_malloc'ed buffer, copies it into `Data` and frees it.
    private static func produce(
        _ body: (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutablePointer<Int>) -> Int32
    ) throws(ImageError) -> Data {
        var buffer: UnsafeMutableRawPointer? = nil
        var length = 0
        let result = body(&buffer, &length)
        defer { easel_vips_free(buffer) }
        try self.check(result)
        guard let buffer, length > 0 else { throw .encodingFailed }
        return Data(bytes: buffer, count: length)
    }

    private static func check(_ result: Int32) throws(ImageError) {
        switch UInt32(bitPattern: result) {
        case EASEL_VIPS_OK.rawValue: return
        case EASEL_VIPS_ERROR_HEADER.rawValue, EASEL_VIPS_ERROR_DECODE.rawValue: throw .damaged
        default: throw .encodingFailed
        }
    }
}
