import EaselBlobs
import Foundation
import Hummingbird

/// `/blobs/{key}?expires=…&sig=…`: objects of the disk store under URLs signed by
/// `BlobURLSigner`: every object with the disk store, and encrypted objects with S3 too (the
/// encrypting store hands out these URLs, and decrypts on the way out).
struct SignedBlobController {
    let blobs: any BlobStore
    let signer: BlobURLSigner

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/blobs/**", use: self.serve)
    }

    @Sendable func serve(_ request: Request, context: AppRequestContext) async throws -> Response {
        let raw = context.parameters.getCatchAll().joined(separator: "/").removingPercentEncoding ?? ""
        guard let key = try? BlobKey(raw),
            let expires = request.uri.queryParameters["expires"].flatMap({ Int(String($0)) }),
            let signature = request.uri.queryParameters["sig"].map(String.init),
            self.signer.verify(key, expires: expires, signature: signature)
        else {
            throw WebError(.forbidden, code: "link_expired", message: "This link has expired or is not valid. Go back and open the file again to get a fresh link.")
        }
        let object: BlobObject
        do {
            object = try await self.blobs.get(key)
        } catch BlobError.notFound {
            throw WebError.notFound("This file no longer exists.")
        }
        var headers: HTTPFields = [
            .contentType: object.info.contentType ?? "application/octet-stream",
            .contentLength: String(object.info.size),
            .cacheControl: "private, max-age=300",
        ]
        headers[.contentDisposition] = "inline"
        return Response(status: .ok, headers: headers, body: .init(asyncSequence: object.body))
    }
}
