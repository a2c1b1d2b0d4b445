import EaselApp
import EaselBlobs
import EaselCore
import EaselImages
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import Testing

/// `/api/v1` for making images, through the router with the demo provider answering at once.
@Suite("Generation API: quotes, tasks, uploads, images, credits")
struct GenerationAPITests {
    let api = APITests()
    static let instant = ["EASEL_DEMO_LATENCY_MS": "0", "EASEL_SIGNUP_CREDITS": "50", "EASEL_SIZES": "256x256,1024x1024,auto"]

    func json(_ response: TestResponse) throws -> [String: Any] { try self.api.object(response) }

    /// Posts JSON with a key and optional extra headers.
    func post(_ client: any TestClientProtocol, _ uri: String, key: String, json: String, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/json"]
        headers.append(contentsOf: extra)
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    /// Polls a task until it has finished (bounded).
    func finished(_ client: any TestClientProtocol, task id: Int, key: String) async throws -> [String: Any] {
        for _ in 0..<400 {
            let task = try self.json(try await self.api.call(client, .get, "/api/v1/generations/\(id)", key: key))
            if let status = task["status"] as? String, ["succeeded", "failed", "canceled"].contains(status) { return task }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("task \(id) did not finish")
        return [:]
    }

    func png(width: Int = 64, height: Int = 48) throws -> Data {
        let pixels = [UInt8]((0..<(width * height * 3)).map { UInt8($0 % 251) })
        return try ImageLibrary().encode(rgb: pixels, width: width, height: height, as: .png)
    }

    func multipart(_ data: Data, filename: String = "ref.png") -> (HTTPFields, ByteBuffer) {
        let boundary = "easel-test-\(UUID().uuidString)"
        var body = ByteBuffer(string: "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: image/png\r\n\r\n")
        body.writeBytes(data)
        body.writeString("\r\n--\(boundary)--\r\n")
        return ([.contentType: "multipart/form-data; boundary=\(boundary)"], body)
    }

    @Test("A key without the generate scope gets 403 naming the scope on a generation call, and nothing is reserved")
    func generateScope() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.read])
            let response = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"a lighthouse"}"#)
            #expect(response.status == .forbidden)
            let error = try self.api.error(response)
            #expect(error.code == "insufficient_scope")
            #expect(error.message.contains("\"generate\""), "\(error.message)")
            #expect(try await services.database.creditBalance(userID: user.id!) == 50)
            #expect(try await services.database.generationTasks(userID: user.id!).isEmpty)
        }
    }

    @Test("Quote, submit, finish: the balance falls by exactly the quoted price and the image is listed and served privately")
    func happyPath() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let body = #"{"prompt":"a lighthouse at dusk","size":"1024x1024","quality":"medium","n":2}"#
            let quote = try self.json(try await self.post(client, "/api/v1/quote", key: key, json: body))
            let price = try #require(quote["credits"] as? Int)
            #expect(price == PriceTable.standard.quote(model: "gpt-image-2", quality: "medium", size: "1024x1024", count: 2, referenceCount: 0).credits)
            #expect(quote["balance"] as? Int == 50)

            let submitted = try await self.post(client, "/api/v1/generations", key: key, json: body, headers: [HTTPField.Name("Idempotency-Key")!: "k-1"])
            #expect(submitted.status == .accepted)
            let id = try #require(try self.json(submitted)["id"] as? Int)
            #expect(submitted.headers[.location] == "/api/v1/generations/\(id)")
            let task = try await self.finished(client, task: id, key: key)
            #expect(task["status"] as? String == "succeeded")
            let credits = try #require(task["credits"] as? [String: Any])
            #expect(credits["charged"] as? Int == price)
            #expect(try await services.database.creditBalance(userID: user.id!) == 50 - price)
            #expect(try await services.database.verifyCreditBalances().isEmpty)

            let images = try #require(try self.json(try await self.api.call(client, .get, "/api/v1/images", key: key))["images"] as? [[String: Any]])
            #expect(images.count == 2)
            let image = try #require(images.first)
            #expect(image["width"] as? Int == 1024 && image["height"] as? Int == 1024)
            let imageID = try #require(image["id"] as? Int)

            let file = try await self.api.call(client, .get, "/api/v1/images/\(imageID)/file", key: key)
            #expect(file.status == .ok)
            #expect(file.headers[.contentType] == "image/png")
            #expect(file.headers[.cacheControl]?.hasPrefix("private") == true)
            #expect(ImageLibrary.sniffFormat(Data(buffer: file.body)) == .png)
            let etag = try #require(file.headers[.eTag])
            let notModified = try await client.execute(
                uri: "/api/v1/images/\(imageID)/file", method: .get, headers: [.authorization: "Bearer \(key)", .ifNoneMatch: etag], body: nil)
            #expect(notModified.status == .notModified)
            let partial = try await client.execute(
                uri: "/api/v1/images/\(imageID)/file", method: .get, headers: [.authorization: "Bearer \(key)", .range: "bytes=0-7"], body: nil)
            #expect(partial.status == .partialContent)
            #expect(partial.body.readableBytes == 8)
            #expect(partial.headers[.contentRange]?.hasPrefix("bytes 0-7/") == true)
            let thumb = try await self.api.call(client, .get, "/api/v1/images/\(imageID)/thumb", key: key)
            #expect(thumb.status == .ok && ImageLibrary.sniffFormat(Data(buffer: thumb.body)) == .webp)

            let ledger = try self.json(try await self.api.call(client, .get, "/api/v1/credits", key: key))
            let kinds = (ledger["entries"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
            #expect(kinds == ["capture", "reserve", "grant"])
        }
    }

    @Test("The same Idempotency-Key and body returns the same task without charging again; another body is 409")
    func idempotency() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let header: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "retry-me"]
            let first = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"a red kite","size":"256x256"}"#, headers: header)
            let second = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"a red kite","size":"256x256"}"#, headers: header)
            #expect(first.status == .accepted && second.status == .accepted)
            #expect(try self.json(first)["id"] as? Int == (try self.json(second)["id"] as? Int))
            #expect(second.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            let conflict = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"a blue kite","size":"256x256"}"#, headers: header)
            #expect(conflict.status == .conflict)
            #expect(try self.api.error(conflict).code == "idempotency_conflict")
            _ = try await self.finished(client, task: try #require(try self.json(first)["id"] as? Int), key: key)
            #expect(try await services.database.generationTasks(userID: user.id!).count == 1)
            #expect(try await services.database.creditBalance(userID: user.id!) == 50 - 4)
        }
    }

    @Test("Another person's task, image, file and thumbnail are 404, and they cannot delete it")
    func authorization() async throws {
        try await withTestApp(Self.instant) { services, client in
            let owner = try await self.api.makeAccount(services, email: "owner@example.org")
            let other = try await self.api.makeAccount(services, email: "other@example.org")
            let ownerKey = try await self.api.key(services, for: owner, scopes: [.generate, .read])
            let otherKey = try await self.api.key(services, for: other, scopes: [.generate, .read])
            let id = try #require(try self.json(try await self.post(client, "/api/v1/generations", key: ownerKey, json: #"{"prompt":"mine","size":"256x256"}"#))["id"] as? Int)
            let task = try await self.finished(client, task: id, key: ownerKey)
            let imageID = try #require((task["images"] as? [[String: Any]])?.first?["id"] as? Int)
            for uri in ["/api/v1/generations/\(id)", "/api/v1/generations/\(id)/events", "/api/v1/images/\(imageID)", "/api/v1/images/\(imageID)/file", "/api/v1/images/\(imageID)/thumb"] {
                #expect(try await self.api.call(client, .get, uri, key: otherKey).status == .notFound, "\(uri)")
            }
            #expect(try await self.api.call(client, .delete, "/api/v1/images/\(imageID)", key: otherKey).status == .notFound)
            #expect(try await self.post(client, "/api/v1/generations/\(id)/cancel", key: otherKey, json: "{}").status == .notFound)
            #expect(try await services.database.image(id: Int64(imageID)) != nil)
            let listed = try self.json(try await self.api.call(client, .get, "/api/v1/images", key: otherKey))["images"] as? [Any]
            #expect(listed?.isEmpty == true)
        }
    }

    @Test("Deleting an image removes its row, its file and its thumbnail")
    func deleteImage() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let id = try #require(try self.json(try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"to delete","size":"256x256"}"#))["id"] as? Int)
            _ = try await self.finished(client, task: id, key: key)
            let image = try #require(try await services.database.images(taskID: Int64(id)).first)
            #expect(try await services.blobs.head(BlobKey(image.blobKey)) != nil)
            let response = try await self.api.call(client, .delete, "/api/v1/images/\(image.id!)", key: key)
            #expect(response.status == .noContent)
            #expect(try await services.database.image(id: image.id!) == nil)
            #expect(try await services.blobs.head(BlobKey(image.blobKey)) == nil)
            #expect(try await services.blobs.head(BlobKey(image.thumbKey)) == nil)
            #expect(try await self.api.call(client, .get, "/api/v1/images/\(image.id!)/file", key: key).status == .notFound)
        }
    }

    @Test("Uploads are checked by their bytes: text, a truncated PNG and a pixel bomb are refused; a PNG is stored and usable as a reference")
    func uploads() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let other = try await self.api.makeAccount(services, email: "other@example.org")
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let otherKey = try await self.api.key(services, for: other, scopes: [.generate, .read])
            func upload(_ data: Data, key: String) async throws -> TestResponse {
                var (headers, body) = self.multipart(data)
                headers[.authorization] = "Bearer \(key)"
                return try await client.execute(uri: "/api/v1/uploads", method: .post, headers: headers, body: body)
            }
            let text = try await upload(Data("<html>not an image</html>".utf8), key: key)
            #expect(text.status == .unprocessableContent)
            #expect(try self.api.error(text).code == "not_an_image")
            let png = try self.png()
            let truncated = try await upload(png.prefix(png.count / 2), key: key)
            #expect(truncated.status == .unprocessableContent, "\(truncated.text)")
            let bomb = try await upload(Self.pngHeader(width: 40_000, height: 40_000), key: key)
            #expect(bomb.status == .contentTooLarge || bomb.status == .unprocessableContent, "\(bomb.status)")

            let stored = try await upload(png, key: key)
            #expect(stored.status == .created, "\(stored.text)")
            let uploadID = try #require(try self.json(stored)["id"] as? Int)
            #expect(try self.json(stored)["width"] as? Int == 64)

            // Someone else cannot attach it.
            let foreign = try await self.post(client, "/api/v1/generations", key: otherKey, json: #"{"prompt":"steal","size":"256x256","reference_upload_ids":[\#(uploadID)]}"#)
            #expect(foreign.status == .unprocessableContent)
            let quote = try self.json(try await self.post(client, "/api/v1/quote", key: key, json: #"{"size":"256x256","reference_upload_ids":[\#(uploadID)]}"#))
            #expect(quote["reference_charge"] as? Int == PriceTable.standard.perReferenceImage)
            let submitted = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"with a reference","size":"256x256","reference_upload_ids":[\#(uploadID)]}"#)
            #expect(submitted.status == .accepted)
            let task = try await self.finished(client, task: try #require(try self.json(submitted)["id"] as? Int), key: key)
            #expect(task["status"] as? String == "succeeded")
            #expect(task["reference_count"] as? Int == 1)
        }
    }

    /// A PNG signature and IHDR claiming `width`×`height`, with no pixel data: judged by its header alone.
    static func pngHeader(width: UInt32, height: UInt32) -> Data {
        var data = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var ihdr = Data("IHDR".utf8)
        for value in [width, height] { withUnsafeBytes(of: value.bigEndian) { ihdr.append(contentsOf: $0) } }
        ihdr.append(contentsOf: [8, 2, 0, 0, 0])
        withUnsafeBytes(of: UInt32(13).bigEndian) { data.append(contentsOf: $0) }
        data.append(ihdr)
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in ihdr {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        withUnsafeBytes(of: (crc ^ 0xFFFF_FFFF).bigEndian) { data.append(contentsOf: $0) }
        return data
    }

    @Test("Past the submit rate a person gets 429 with Retry-After; an empty balance gets 402; a key past its rate gets 429")
    func limits() async throws {
        try await withTestApp(Self.instant.merging(["EASEL_SUBMIT_RATE": "2", "EASEL_API_KEY_RATE": "30"]) { _, new in new }) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            for _ in 0..<2 {
                #expect(try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"quick","size":"256x256"}"#).status == .accepted)
            }
            let limited = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"quick","size":"256x256"}"#)
            #expect(limited.status == .tooManyRequests)
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try await services.database.generationTasks(userID: user.id!).count == 2)
            // 30 a minute: well before 300 calls the bucket is empty, however slowly this machine runs.
            var lastStatus: HTTPResponse.Status = .ok
            var calls = 0
            while lastStatus != .tooManyRequests && calls < 300 {
                lastStatus = try await self.api.call(client, .get, "/api/v1/images", key: key).status
                calls += 1
            }
            #expect(lastStatus == .tooManyRequests, "the key's own rate applies to every call")
            #expect(calls >= 20, "the first calls within the rate pass")
        }
        try await withTestApp(Self.instant.merging(["EASEL_SIGNUP_CREDITS": "0"]) { _, new in new }) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let broke = try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"free lunch","size":"256x256"}"#)
            #expect(broke.status.code == 402)
            #expect(try self.api.error(broke).code == "insufficient_credits")
            #expect(try await services.database.generationTasks(userID: user.id!).isEmpty)
        }
    }

    @Test("Bad requests name the field: unknown size, n out of range, empty prompt")
    func validation() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            for (body, word) in [(#"{"prompt":"x","size":"999x999"}"#, "Size"), (#"{"prompt":"x","n":11}"#, "1 to"), (#"{"prompt":"  "}"#, "prompt")] {
                let response = try await self.post(client, "/api/v1/generations", key: key, json: body)
                #expect(response.status == .unprocessableContent, "\(body)")
                #expect(try self.api.error(response).message.contains(word), "\(body): \(response.text)")
            }
            // More reference images than a task may carry: the quote says so too.
            let quote = try await self.post(client, "/api/v1/quote", key: key, json: #"{"size":"1024x1024","reference_count":17}"#)
            #expect(quote.status == .unprocessableContent)
            #expect(try self.api.error(quote).message.contains("16"), "\(quote.text)")
            #expect(try await services.database.creditBalance(userID: user.id!) == 50)
        }
    }

    @Test("The events stream sends the task and ends once it has finished")
    func events() async throws {
        try await withTestApp(Self.instant) { services, client in
            let user = try await self.api.makeAccount(services)
            let key = try await self.api.key(services, for: user, scopes: [.generate, .read])
            let id = try #require(try self.json(try await self.post(client, "/api/v1/generations", key: key, json: #"{"prompt":"streamed","size":"256x256"}"#))["id"] as? Int)
            let stream = try await self.api.call(client, .get, "/api/v1/generations/\(id)/events", key: key)
            #expect(stream.headers[.contentType]?.hasPrefix("text/event-stream") == true)
            #expect(stream.text.contains("event: task"))
            #expect(stream.text.contains(#""status":"succeeded""#), "\(stream.text.suffix(300))")
        }
    }

    @Test("A callback with a forged token is 404 and changes nothing")
    func forgedCallback() async throws {
        try await withTestApp(Self.instant) { _, client in
            let response = try await client.execute(uri: "/api/v1/callbacks/evolink/MQ.9999999999.forged", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}"))
            #expect(response.status == .notFound)
        }
    }
}
