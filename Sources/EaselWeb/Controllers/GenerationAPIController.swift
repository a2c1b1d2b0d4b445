import EaselBlobs
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import MultipartKit
import NIOCore

/// `/api/v1` for making images: quotes, tasks (with their live events), reference uploads,
/// images and their files, and the credits ledger. The pages' scripts use it too.
struct GenerationAPIController {
    let generation: GenerationService
    let database: AppDatabase
    let blobs: any BlobStore
    /// Checks the signed token in a provider's callback URL.
    let callbackSigner: SignedValue
    /// Makes a task due at once, so a callback is confirmed by polling without delay.
    let wakeDispatcher: @Sendable () -> Void

    func addRoutes(to api: RouterGroup<APIContext>, router: Router<AppRequestContext>) {
        api.post("quote", use: self.quote)
        api.post("generations", use: self.submit)
        api.get("generations", use: self.listTasks)
        api.get("generations/:id", use: self.task)
        api.post("generations/:id/cancel", use: self.cancel)
        api.get("generations/:id/events", use: self.events)
        api.post("uploads", use: self.upload)
        api.get("images", use: self.listImages)
        api.get("images/:id", use: self.image)
        api.get("images/:id/file", use: self.imageFile)
        api.get("images/:id/thumb", use: self.imageThumb)
        api.delete("images/:id", use: self.deleteImage)
        api.get("credits", use: self.credits)
        // Outside the authenticated group: the provider proves itself with the URL's signed token.
        router.post("api/v1/callbacks/evolink/:token", use: self.evolinkCallback)
    }

    // MARK: Types

    struct TaskView: ResponseEncodable {
        struct Credits: Encodable {
            var reserved: Int
            var charged: Int
            var refunded: Int
        }

        struct Failure: Encodable {
            var code: String
            var message: String
        }

        var id: Int64
        var userId: Int64
        /// Only in admins' listings of everyone's tasks.
        var ownerEmail: String?
        var status: String
        var progress: Int
        var prompt: String
        var model: String
        var size: String
        var quality: String
        var n: Int
        var referenceCount: Int
        var provider: String
        var credits: Credits
        var failure: Failure?
        /// While running: why the last try failed and that it will be retried.
        var note: String?
        var createdAt: Date
        var startedAt: Date?
        var finishedAt: Date?
        var durationSeconds: Double?
        var images: [ImageView]

        init(_ task: GenerationTask, images: [StoredImage]) {
            self.id = task.id!
            self.userId = task.userID
            self.status = task.status.rawValue
            self.progress = task.progress
            self.prompt = task.prompt
            self.model = task.model
            self.size = task.size
            self.quality = task.quality
            self.n = task.count
            self.referenceCount = task.referenceCount
            self.provider = task.provider
            self.credits = Credits(reserved: task.creditsReserved, charged: task.creditsCharged, refunded: task.creditsRefunded)
            if task.status == .failed || task.status == .canceled {
                self.failure = Failure(code: task.failureCode ?? "failed", message: task.failureMessage ?? "")
            } else if task.status == .running {
                self.note = task.failureMessage
            }
            self.createdAt = task.createdAt
            self.startedAt = task.startedAt
            self.finishedAt = task.finishedAt
            self.durationSeconds = task.duration.map { ($0 * 10).rounded() / 10 }
            self.images = images.map(ImageView.init)
        }

        enum CodingKeys: String, CodingKey {
            case id, userId, ownerEmail, status, progress, prompt, model, size, quality, n, referenceCount, provider, credits, failure, note
            case createdAt, startedAt, finishedAt, durationSeconds, images
        }

        // Written out so that absent values are `null`, not missing keys.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(self.id, forKey: .id)
            try c.encode(self.userId, forKey: .userId)
            try c.encodeIfPresent(self.ownerEmail, forKey: .ownerEmail)
            try c.encode(self.status, forKey: .status)
            try c.encode(self.progress, forKey: .progress)
            try c.encode(self.prompt, forKey: .prompt)
            try c.encode(self.model, forKey: .model)
            try c.encode(self.size, forKey: .size)
            try c.encode(self.quality, forKey: .quality)
            try c.encode(self.n, forKey: .n)
            try c.encode(self.referenceCount, forKey: .referenceCount)
            try c.encode(self.provider, forKey: .provider)
            try c.encode(self.credits, forKey: .credits)
            try c.encode(self.failure, forKey: .failure)
            try c.encode(self.note, forKey: .note)
            try c.encode(self.createdAt, forKey: .createdAt)
            try c.encode(self.startedAt, forKey: .startedAt)
            try c.encode(self.finishedAt, forKey: .finishedAt)
            try c.encode(self.durationSeconds, forKey: .durationSeconds)
            try c.encode(self.images, forKey: .images)
        }
    }

    struct ImageView: ResponseEncodable {
        var id: Int64
        var taskId: Int64?
        var format: String
        var width: Int
        var height: Int
        var bytes: Int
        var sha256: String
        var provider: String
        var model: String
        var quality: String
        var size: String
        var prompt: String
        var createdAt: Date
        var url: String
        var thumbUrl: String

        init(_ image: StoredImage) {
            self.id = image.id!
            self.taskId = image.taskID
            self.format = image.format
            self.width = image.width
            self.height = image.height
            self.bytes = image.bytes
            self.sha256 = image.sha256
            self.provider = image.provider
            self.model = image.model
            self.quality = image.quality
            self.size = image.size
            self.prompt = image.prompt
            self.createdAt = image.createdAt
            self.url = "/api/v1/images/\(image.id!)/file"
            self.thumbUrl = "/api/v1/images/\(image.id!)/thumb"
        }
    }

    struct TaskList: ResponseEncodable {
        var tasks: [TaskView]
        /// Pass as `before` for the next page; null on the last one.
        var nextBefore: Int64?
    }

    struct ImageList: ResponseEncodable {
        var images: [ImageView]
        var nextBefore: Int64?
    }

    struct QuoteView: ResponseEncodable {
        var credits: Int
        var perImage: Int
        var n: Int
        var referenceCharge: Int
        var sizeClass: String
        var balance: Int
        var affordable: Bool
    }

    struct QuoteRequest: Decodable {
        var prompt: String?
        var model: String?
        var size: String?
        var quality: String?
        var n: Int?
        var referenceUploadIds: [Int64]?
        /// For a quote before the images are uploaded.
        var referenceCount: Int?
    }

    struct SubmitRequest: Decodable {
        var prompt: String?
        var model: String?
        var size: String?
        var quality: String?
        var n: Int?
        var referenceUploadIds: [Int64]?
    }

    struct UploadView: ResponseEncodable {
        var id: Int64
        var format: String
        var width: Int
        var height: Int
        var bytes: Int
        var createdAt: Date
    }

    struct UploadFromImage: Decodable {
        var imageId: Int64?
    }

    struct LedgerView: ResponseEncodable {
        struct Entry: Encodable {
            var id: Int64
            var kind: String
            var amount: Int
            var balanceAfter: Int
            var taskId: Int64?
            var reason: String
            var createdAt: Date
        }

        var balance: Int
        var entries: [Entry]
        var nextBefore: Int64?
    }

    // MARK: Quote and submit

    @Sendable func quote(_ request: Request, context: APIContext) async throws -> QuoteView {
        let caller = try context.require(anyOf: [.generate, .read])
        let body = try await APIController.decode(QuoteRequest.self, from: request, context: context)
        let quote: PriceTable.Quote
        do {
            quote = try self.generation.quote(
                GenerationRequest(
                    prompt: body.prompt ?? "quote", model: body.model, size: body.size, quality: body.quality, n: body.n,
                    referenceUploadIDs: body.referenceUploadIds
                ),
                referenceCount: body.referenceUploadIds == nil ? body.referenceCount : nil
            )
        } catch {
            throw Self.webError(error)
        }
        let balance = try await self.database.creditBalance(userID: caller.user.id!)
        return QuoteView(
            credits: quote.credits, perImage: quote.perImage, n: quote.count, referenceCharge: quote.referenceCharge, sizeClass: quote.sizeClass,
            balance: balance, affordable: balance >= quote.credits
        )
    }

    @Sendable func submit(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.generate)
        let body = try await APIController.decode(SubmitRequest.self, from: request, context: context)
        let key = request.headers[HTTPField.Name("Idempotency-Key")!]
        let outcome: SubmitOutcome
        do {
            outcome = try await self.generation.submit(
                GenerationRequest(
                    prompt: body.prompt ?? "", model: body.model, size: body.size, quality: body.quality, n: body.n,
                    referenceUploadIDs: body.referenceUploadIds
                ),
                viewer: caller.viewer, clientIP: context.clientIP.isEmpty ? nil : context.clientIP, apiKeyID: caller.apiKeyID,
                idempotencyKey: key
            )
        } catch {
            throw Self.webError(error)
        }
        let task = outcome.task
        let images = try await self.database.images(taskID: task.id!)
        var response = try TaskView(task, images: images).response(from: request, context: context)
        response.status = .accepted
        response.headers[.location] = "/api/v1/generations/\(task.id!)"
        if case .existing = outcome { response.headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return response
    }

    // MARK: Tasks

    @Sendable func listTasks(_ request: Request, context: APIContext) async throws -> TaskList {
        let caller = try context.require(.read)
        let (before, limit) = try Self.page(request)
        let everyone = request.uri.queryParameters["all"].map { $0 == "1" || $0 == "true" } ?? false
        if everyone && caller.user.role != .admin {
            throw WebError(.forbidden, code: "admin_only", message: "Only admins can list everyone's tasks.")
        }
        var status: GenerationTask.Status?
        if let raw = request.uri.queryParameters["status"] {
            guard let parsed = GenerationTask.Status(rawValue: String(raw)) else {
                throw APIController.invalid("status", "status must be one of: queued, running, succeeded, failed, canceled.")
            }
            status = parsed
        }
        var excluded: GenerationTask.Status?
        if let raw = request.uri.queryParameters["exclude_status"] {
            guard let parsed = GenerationTask.Status(rawValue: String(raw)) else {
                throw APIController.invalid("exclude_status", "exclude_status must be one of: queued, running, succeeded, failed, canceled.")
            }
            excluded = parsed
        }
        let tasks = try await self.generation.tasks(viewer: caller.viewer, everyone: everyone, before: before, limit: limit, status: status, excluding: excluded)
        let images = Dictionary(grouping: try await self.database.images(taskIDs: tasks.compactMap(\.id)), by: { $0.taskID! })
        let owners = everyone ? try await self.database.emails(userIDs: Set(tasks.map(\.userID))) : [:]
        return TaskList(
            tasks: tasks.map { task in
                var view = TaskView(task, images: images[task.id!] ?? [])
                view.ownerEmail = owners[task.userID]
                return view
            },
            nextBefore: tasks.count == limit ? tasks.last?.id : nil
        )
    }

    @Sendable func task(_ request: Request, context: APIContext) async throws -> TaskView {
        let caller = try context.require(.read)
        let task = try await self.visibleTask(context, caller)
        return TaskView(task, images: try await self.database.images(taskID: task.id!))
    }

    @Sendable func cancel(_ request: Request, context: APIContext) async throws -> TaskView {
        let caller = try context.require(.generate)
        let task = try await self.visibleTask(context, caller)
        guard let canceled = try await self.generation.cancel(id: task.id!, viewer: caller.viewer) else {
            throw WebError(.conflict, code: "already_finished", message: "This task has already finished (\(task.status.rawValue)); there is nothing to cancel.")
        }
        return TaskView(canceled, images: [])
    }

    /// Server-sent events: a `task` event with the whole task at once and on every change, and
    /// `progress` events in between; the stream ends after the task finishes.
    @Sendable func events(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.read)
        let task = try await self.visibleTask(context, caller)
        let taskID = task.id!
        let encoder = context.responseEncoder
        let database = self.database
        let events = self.generation.events
        let body = ResponseBody { writer in
            func send(_ event: String, _ data: Data) async throws {
                var buffer = ByteBuffer(string: "event: \(event)\ndata: ")
                buffer.writeBytes(data)
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            // Changes of this task and a tick every 15 s, in one stream read by this loop alone.
            let (signals, signal) = AsyncStream<TaskEvents.Change?>.makeStream(bufferingPolicy: .bufferingNewest(8))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await change in events.changes(of: taskID) { signal.yield(change) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(15))
                        signal.yield(nil)
                    }
                }
                var last: GenerationTask?
                var iterator = signals.makeAsyncIterator()
                while true {
                    if let current = try await database.generationTask(id: taskID), current != last {
                        last = current
                        let images = current.status == .succeeded ? try await database.images(taskID: taskID) : []
                        try await send("task", try encoder.encode(TaskView(current, images: images)))
                        if current.status.isFinished { break }
                    }
                    guard let next = await iterator.next() else { break }
                    if let change = next, let progress = change.progress {
                        try await send("progress", Data(#"{"id":\#(taskID),"progress":\#(progress)}"#.utf8))
                    } else if next == nil {
                        // A comment line keeps proxies from closing a quiet stream.
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    }
                }
                group.cancelAll()
                signal.finish()
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no"],
            body: body
        )
    }

    // MARK: Uploads

    /// `multipart/form-data` with a `file` part, a raw image body, or JSON `{"image_id": N}` to
    /// reuse one of your images as a reference.
    @Sendable func upload(_ request: Request, context: APIContext) async throws -> EditedResponse<UploadView> {
        let caller = try context.require(.generate)
        let limit = self.generation.settings.uploadMaximumBytes
        let contentType = request.headers[.contentType] ?? ""
        var request = request
        let data: Data
        if contentType.lowercased().hasPrefix("application/json") {
            let body = try await APIController.decode(UploadFromImage.self, from: request, context: context)
            guard let imageID = body.imageId, let image = try await self.generation.image(id: imageID, viewer: caller.viewer) else {
                throw WebError.notFound("No image with that id. Send image_id of one of your images, or upload a file.")
            }
            data = try await self.blobs.get(BlobKey(image.blobKey), range: nil).collect()
        } else {
            let buffer: ByteBuffer
            do {
                // Multipart framing adds a little to the file itself.
                buffer = try await request.collectBody(upTo: limit + 64 * 1024)
            } catch {
                throw WebError(.contentTooLarge, code: "too_large", message: "The image is larger than \(limit / 1_048_576) MB. Make it smaller and try again.")
            }
            if contentType.lowercased().hasPrefix("multipart/form-data") {
                guard let boundary = Self.boundary(contentType) else {
                    throw WebError.badRequest("The multipart body has no boundary in its Content-Type.")
                }
                struct Form: Decodable { var file: Data }
                do {
                    data = try FormDataDecoder().decode(Form.self, from: buffer, boundary: boundary).file
                } catch {
                    throw WebError(.unprocessableContent, code: "invalid_field", message: "file: send the image in a form field named \"file\".")
                }
            } else {
                data = Data(buffer.readableBytesView)
            }
        }
        do {
            let upload = try await self.generation.upload(data, viewer: caller.viewer)
            return EditedResponse(
                status: .created,
                response: UploadView(id: upload.id!, format: upload.format, width: upload.width, height: upload.height, bytes: upload.bytes, createdAt: upload.createdAt)
            )
        } catch {
            throw Self.webError(error)
        }
    }

    static func boundary(_ contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    // MARK: Images

    @Sendable func listImages(_ request: Request, context: APIContext) async throws -> ImageList {
        let caller = try context.require(.read)
        let (before, limit) = try Self.page(request)
        let images = try await self.generation.images(viewer: caller.viewer, before: before, limit: limit)
        return ImageList(images: images.map(ImageView.init), nextBefore: images.count == limit ? images.last?.id : nil)
    }

    @Sendable func image(_ request: Request, context: APIContext) async throws -> ImageView {
        let caller = try context.require(.read)
        return ImageView(try await self.visibleImage(context, caller))
    }

    @Sendable func imageFile(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.read)
        let image = try await self.visibleImage(context, caller)
        let filename = "easel-\(image.id!).\(image.format == "jpeg" ? "jpg" : image.format)"
        let download = request.uri.queryParameters["download"] != nil
        return try await BlobResponder(blobs: self.blobs).respond(
            to: request, key: BlobKey(image.blobKey), etag: image.sha256, contentType: "image/\(image.format)",
            disposition: "\(download ? "attachment" : "inline"); filename=\"\(filename)\""
        )
    }

    @Sendable func imageThumb(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.read)
        let image = try await self.visibleImage(context, caller)
        return try await BlobResponder(blobs: self.blobs).respond(
            to: request, key: BlobKey(image.thumbKey), etag: image.sha256 + "-thumb", contentType: "image/webp", disposition: "inline"
        )
    }

    @Sendable func deleteImage(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.generate)
        let id = try context.parameters.require("id", as: Int64.self)
        guard try await self.generation.deleteImage(id: id, viewer: caller.viewer) else { throw Self.noImage(id) }
        return Response(status: .noContent)
    }

    // MARK: Credits

    @Sendable func credits(_ request: Request, context: APIContext) async throws -> LedgerView {
        let caller = try context.require(anyOf: [.read, .account])
        let (before, limit) = try Self.page(request)
        let entries = try await self.database.ledger(userID: caller.user.id!, before: before, limit: limit)
        return LedgerView(
            balance: try await self.database.creditBalance(userID: caller.user.id!),
            entries: entries.map {
                LedgerView.Entry(id: $0.id!, kind: $0.kind.rawValue, amount: $0.amount, balanceAfter: $0.balanceAfter, taskId: $0.taskID, reason: $0.reason, createdAt: $0.createdAt)
            },
            nextBefore: entries.count == limit ? entries.last?.id : nil
        )
    }

    // MARK: Provider callbacks

    /// Evolink's callback: only a nudge. The task is polled at once and only the poll's answer
    /// is trusted, so a forged or repeated callback changes nothing.
    @Sendable func evolinkCallback(_ request: Request, context: AppRequestContext) async throws -> Response {
        let token = try context.parameters.require("token")
        guard let taskID = GenerationDispatcher.taskID(fromCallbackToken: token, signer: self.callbackSigner) else {
            throw WebError.notFound("Unknown callback.")
        }
        var request = request
        _ = try? await request.collectBody(upTo: 256 * 1024)
        guard try await self.database.pollGenerationTaskNow(taskID: taskID) != nil else { throw WebError.notFound("Unknown callback.") }
        self.wakeDispatcher()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"received":true}"#)))
    }

    // MARK: Helpers

    private func visibleTask(_ context: APIContext, _ caller: APIPrincipal) async throws -> GenerationTask {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let task = try await self.generation.task(id: id, viewer: caller.viewer) else {
            throw WebError.notFound("You have no task with the id \(id). List them with GET /api/v1/generations.")
        }
        return task
    }

    private func visibleImage(_ context: APIContext, _ caller: APIPrincipal) async throws -> StoredImage {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let image = try await self.generation.image(id: id, viewer: caller.viewer) else { throw Self.noImage(id) }
        return image
    }

    static func noImage(_ id: Int64) -> WebError {
        WebError.notFound("You have no image with the id \(id). List them with GET /api/v1/images.")
    }

    /// `before` (an id) and `limit` (1–100, default 30) from the query.
    static func page(_ request: Request) throws -> (before: Int64?, limit: Int) {
        var before: Int64?
        if let raw = request.uri.queryParameters["before"] {
            guard let value = Int64(String(raw)) else { throw APIController.invalid("before", "before must be an id from next_before.") }
            before = value
        }
        var limit = 30
        if let raw = request.uri.queryParameters["limit"] {
            guard let value = Int(String(raw)), (1...100).contains(value) else { throw APIController.invalid("limit", "limit must be 1 to 100.") }
            limit = value
        }
        return (before, limit)
    }

    static func webError(_ error: any Error) -> any Error {
        guard let error = error as? GenerationError else { return error }
        switch error.kind {
        case .invalid:
            return WebError(.unprocessableContent, code: "invalid_field", message: error.message)
        case .rateLimited, .tooManyActiveTasks:
            let seconds = error.retryAfter?.retryAfterSeconds ?? 5
            return WebError(.tooManyRequests, code: error.kind.rawValue, message: error.message, headers: [.retryAfter: String(seconds)])
        case .insufficientCredits:
            return WebError(.init(code: 402, reasonPhrase: "Payment Required"), code: "insufficient_credits", message: error.message + " Buy credits or ask an admin for more.")
        case .idempotencyConflict:
            return WebError(.conflict, code: "idempotency_conflict", message: error.message)
        case .notFound:
            return WebError.notFound(error.message)
        case .notAnImage:
            return WebError(.unprocessableContent, code: "not_an_image", message: error.message)
        case .tooLarge:
            return WebError(.contentTooLarge, code: "too_large", message: error.message)
        case .restricted:
            return WebError(.forbidden, code: "processing_restricted", message: error.message)
        }
    }
}

extension APIPrincipal {
    var viewer: Viewer { Viewer(userID: self.user.id!, isAdmin: self.user.role == .admin) }

    var apiKeyID: Int64? {
        if case .key(let key) = self.credential { return key.id }
        return nil
    }
}
