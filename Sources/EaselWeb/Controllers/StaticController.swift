import Foundation
import Hummingbird
import NIOCore

/// `/static/…` from the asset catalog, with ETag, Last-Modified, Cache-Control, 304 answers
/// and pre-compressed gzip.
struct StaticController {
    let assets: AssetCatalog

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/static/**", use: self.serve)
        router.head("/static/**", use: self.serve)
        router.get("/favicon.ico") { _, _ in Response(status: .movedPermanently, headers: [.location: "/static/icon.svg"]) }
    }

    @Sendable func serve(_ request: Request, context: AppRequestContext) throws -> Response {
        let path = context.parameters.getCatchAll().joined(separator: "/")
        guard !path.isEmpty, let file = self.assets.file(path) else { throw WebError.notFound() }

        // Versioned URLs (?v= from the templates) never change content: cache them for a year.
        let versioned = request.uri.queryParameters["v"].map { String($0) == file.version } ?? false
        var headers: HTTPFields = [
            .eTag: file.etag,
            .lastModified: file.lastModifiedHeader,
            .cacheControl: versioned ? "public, max-age=31536000, immutable" : "public, max-age=3600",
            .vary: "Accept-Encoding",
        ]
        if Self.notModified(request, file: file) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = file.contentType
        var body = file.body
        if let gzipped = file.gzipped, CompressionMiddleware.acceptsGzip(request) {
            body = gzipped
            headers[.contentEncoding] = "gzip"
        }
        headers[.contentLength] = String(body.readableBytes)
        if request.method == .head {
            return Response(status: .ok, headers: headers, body: .init())
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    static func notModified(_ request: Request, file: StaticFile) -> Bool {
        if let match = request.headers[.ifNoneMatch] {
            if match.trimmingCharacters(in: .whitespaces) == "*" { return true }
            let tags = match.split(separator: ",").map { tag -> String in
                let trimmed = tag.trimmingCharacters(in: .whitespaces)
                // A weak comparison suffices for GET.
                return trimmed.hasPrefix("W/") ? String(trimmed.dropFirst(2)) : trimmed
            }
            return tags.contains(file.etag)
        }
        if let since = request.headers[.ifModifiedSince], let date = HTTPDate.parse(since) {
            return file.lastModified.timeIntervalSince1970.rounded(.down) <= date.timeIntervalSince1970
        }
        return false
    }
}
