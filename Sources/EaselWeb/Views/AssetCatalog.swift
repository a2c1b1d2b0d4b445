import CompressNIO
import Crypto
import EaselAssets
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// A file under /static/, ready to send: bytes, a gzip copy when that is smaller, and the
/// validators for conditional requests.
struct StaticFile: Sendable {
    var body: ByteBuffer
    var gzipped: ByteBuffer?
    /// A strong ETag from the content hash, quoted.
    var etag: String
    /// The first 10 hex digits of the content hash, for `?v=` cache-busting URLs.
    var version: String
    var lastModified: Date
    /// `lastModified` as an HTTP date, formatted once rather than on every request.
    var lastModifiedHeader: String
    var contentType: String

    init(data: Data, name: String, lastModified: Date) {
        let digest = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        self.body = ByteBuffer(bytes: data)
        self.etag = "\"\(digest.prefix(32))\""
        self.version = String(digest.prefix(10))
        self.lastModified = lastModified
        self.lastModifiedHeader = HTTPDate.format(lastModified)
        self.contentType = Self.contentType(for: name)
        if CompressionMiddleware.isCompressible(self.contentType), data.count >= 256 {
            var plain = self.body
            if let compressed = try? plain.compress(with: .gzip()), compressed.readableBytes < data.count {
                self.gzipped = compressed
            }
        }
    }

    static func contentType(for name: String) -> String {
        let ext = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "application/javascript; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "webp": return "image/webp"
        case "ico": return "image/x-icon"
        case "woff2": return "font/woff2"
        case "json": return "application/json; charset=utf-8"
        case "webmanifest": return "application/manifest+json"
        case "txt": return "text/plain; charset=utf-8"
        case "html": return "text/html; charset=utf-8"
        default: return "application/octet-stream"
        }
    }
}

/// The site's static files and templates: embedded in the binary, or read from disk on every
/// request when EASEL_DEV_ASSETS is on (for live editing).
public final class AssetCatalog: Sendable {
    enum Source {
        case embedded(files: [String: StaticFile], templates: MustacheLibrary)
        case disk(root: URL)
    }

    let source: Source

    /// The assets compiled into this binary.
    public static func embedded() throws -> AssetCatalog {
        let started = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        var files: [String: StaticFile] = [:]
        var templates: [String: String] = [:]
        for (name, data) in EmbeddedAssets.load() {
            if name.hasPrefix("static/") {
                let path = String(name.dropFirst("static/".count))
                files[path] = StaticFile(data: data, name: path, lastModified: started)
            } else if name.hasPrefix("templates/"), name.hasSuffix(".mustache") {
                let templateName = String(name.dropFirst("templates/".count).dropLast(".mustache".count))
                templates[templateName] = String(decoding: data, as: UTF8.self)
            }
        }
        return AssetCatalog(source: .embedded(files: files, templates: try Self.library(templates)))
    }

    /// Reads `root/static` and `root/templates` on each request.
    public static func disk(root: URL) -> AssetCatalog {
        AssetCatalog(source: .disk(root: root))
    }

    init(source: Source) {
        self.source = source
    }

    /// The file at `path` (relative to static/), or nil.
    func file(_ path: String) -> StaticFile? {
        switch self.source {
        case .embedded(let files, _):
            return files[path]
        case .disk(let root):
            // Refuse anything that could leave the folder.
            guard !path.split(separator: "/").contains(where: { $0 == ".." || $0.hasPrefix(".") }), !path.contains("\0") else { return nil }
            let url = root.appending(path: "static").appending(path: path)
            guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
            let modified = (try? FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate] as? Date) ?? Date()
            return StaticFile(data: data, name: path, lastModified: modified)
        }
    }

    /// "/static/app.css?v=1a2b3c4d5e": changes whenever the file does, so it can be cached for a year.
    func url(_ path: String) -> String {
        guard let file = self.file(path) else { return "/static/\(path)" }
        return "/static/\(path)?v=\(file.version)"
    }

    func templates() throws -> MustacheLibrary {
        switch self.source {
        case .embedded(_, let templates):
            return templates
        case .disk(let root):
            let folder = root.appending(path: "templates")
            var templates: [String: String] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasSuffix(".mustache") {
                let data = FileManager.default.contents(atPath: folder.appending(path: name).path) ?? Data()
                templates[String(name.dropLast(".mustache".count))] = String(decoding: data, as: UTF8.self)
            }
            return try Self.library(templates)
        }
    }

    static func library(_ templates: [String: String]) throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in templates.sorted(by: { $0.key < $1.key }) {
            try library.register(text, named: name)
        }
        return library
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), as used by Last-Modified and If-Modified-Since.
enum HTTPDate {
    static func formatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter
    }

    static func format(_ date: Date) -> String { self.formatter().string(from: date) }

    static func parse(_ value: String) -> Date? { self.formatter().date(from: value) }
}
