import Foundation
import CompressNIO
import Hummingbird
import NIOCore

/// gzip for text responses of known length when the client accepts it. Streams and responses
/// that already chose an encoding (pre-compressed static files) pass through untouched.
struct CompressionMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    static let minimumSize = 1024
    static let maximumSize = 8 * 1024 * 1024

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        guard Self.acceptsGzip(request), response.headers[.contentEncoding] == nil,
            let length = response.body.contentLength, (Self.minimumSize...Self.maximumSize).contains(length),
            Self.isCompressible(response.headers[.contentType])
        else { return response }
        let collector = CollectingWriter()
        try await response.body.write(collector)
        var plain = collector.buffer
        let compressed = try plain.compress(with: .gzip())
        response.body = ResponseBody(byteBuffer: compressed)
        response.headers[.contentEncoding] = "gzip"
        response.headers[.contentLength] = String(compressed.readableBytes)
        response.headers[values: .vary].append("Accept-Encoding")
        return response
    }

    static func acceptsGzip(_ request: Request) -> Bool {
        request.headers[values: .acceptEncoding].contains { value in
            value.split(separator: ",").contains { part in
                let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
                guard fields.first?.lowercased() == "gzip" else { return false }
                // "gzip;q=0" means "never gzip".
                return !fields.dropFirst().contains { $0.replacingOccurrences(of: " ", with: "") == "q=0" }
            }
        }
    }

    static func isCompressible(_ contentType: String?) -> Bool {
        guard let contentType = contentType?.lowercased() else { return false }
        return contentType.hasPrefix("text/") || contentType.hasPrefix("application/json")
            || contentType.hasPrefix("application/javascript") || contentType.hasPrefix("image/svg+xml")
            || contentType.hasPrefix("application/manifest+json") || contentType.hasPrefix("application/xml")
    }
}

/// Gathers a response body written through `ResponseBodyWriter` into one buffer.
final class CollectingWriter: ResponseBodyWriter, @unchecked Sendable {
    var buffer = ByteBuffer()

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        self.buffer.writeBuffer(&buffer)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
