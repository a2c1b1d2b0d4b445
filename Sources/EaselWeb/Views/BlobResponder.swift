import EaselBlobs
import Foundation
import Hummingbird

/// Answers a GET for a private object in the blob store: a redirect to a presigned URL valid
/// for a minute when the store prefers it (S3, for objects it does not encrypt); otherwise the
/// bytes, decrypted, with an ETag, `If-None-Match`, a single `Range`, and `Cache-Control: private`.
struct BlobResponder {
    let blobs: any BlobStore
    static let presignedLifetime: Duration = .seconds(60)

    func respond(to request: Request, key: BlobKey, etag: String, contentType: String, disposition: String) async throws -> Response {
        let quotedETag = "\"\(etag)\""
        if self.blobs.redirectsDownloads(of: key) {
            let url = try await self.blobs.expiringURL(for: key, expiresIn: Self.presignedLifetime)
            return Response(status: .found, headers: [.location: url.absoluteString, .cacheControl: "private, max-age=30"])
        }
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == quotedETag || $0 == "*" }) {
            return Response(status: .notModified, headers: [.eTag: quotedETag, .cacheControl: "private, max-age=86400"])
        }
        guard let info = try await self.blobs.head(key) else {
            throw WebError.notFound("The file of this image is missing from storage.")
        }
        var headers: HTTPFields = [
            .contentType: contentType,
            .eTag: quotedETag,
            .cacheControl: "private, max-age=86400",
            .acceptRanges: "bytes",
            .contentDisposition: disposition,
        ]
        var range: ClosedRange<Int>?
        if let header = request.headers[.range], request.headers[.ifRange].map({ $0 == quotedETag }) ?? true {
            switch Self.parseRange(header, size: info.size) {
            case .none:
                break
            case .unsatisfiable:
                return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(info.size)", .eTag: quotedETag])
            case .range(let bytes):
                range = bytes
            }
        }
        let object = try await self.blobs.get(key, range: range)
        if let range {
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(info.size)"
            headers[.contentLength] = String(range.count)
            return Response(status: .partialContent, headers: headers, body: .init(asyncSequence: object.body))
        }
        headers[.contentLength] = String(info.size)
        return Response(status: .ok, headers: headers, body: .init(asyncSequence: object.body))
    }

    enum RangeRequest: Equatable {
        /// No usable range: answer the whole object (several ranges, or a syntax we ignore).
        case none
        case unsatisfiable
        case range(ClosedRange<Int>)
    }

    /// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14.1.2).
    static func parseRange(_ header: String, size: Int) -> RangeRequest {
        let header = header.trimmingCharacters(in: .whitespaces)
        guard header.lowercased().hasPrefix("bytes="), !header.contains(",") else { return .none }
        let spec = header.dropFirst("bytes=".count).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { return .none }
        let first = spec[0].trimmingCharacters(in: .whitespaces)
        let last = spec[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let suffix = Int(last), suffix > 0 else { return .none }
            guard size > 0 else { return .unsatisfiable }
            return .range(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int(first), start >= 0 else { return .none }
        guard start < size else { return .unsatisfiable }
        if last.isEmpty { return .range(start...(size - 1)) }
        guard let end = Int(last), end >= start else { return .none }
        return .range(start...min(end, size - 1))
    }
}
