import Crypto
import EaselBlobs
import EaselImages
import EaselStore
import Foundation
import Logging
import NIOCore

/// What someone asks for on the Create page or `POST /api/v1/generations`.
public struct GenerationRequest: Sendable, Codable, Equatable {
    public var prompt: String
    public var model: String?
    public var size: String?
    public var quality: String?
    public var n: Int?
    /// Ids from `POST /api/v1/uploads`, in order.
    public var referenceUploadIDs: [Int64]?

    public init(prompt: String, model: String? = nil, size: String? = nil, quality: String? = nil, n: Int? = nil, referenceUploadIDs: [Int64]? = nil) {
        self.prompt = prompt
        self.model = model
        self.size = size
        self.quality = quality
        self.n = n
        self.referenceUploadIDs = referenceUploadIDs
    }

    enum CodingKeys: String, CodingKey {
        case prompt, model, size, quality, n
        case referenceUploadIDs = "reference_upload_ids"
    }
}

/// A request with every default filled in and every value checked.
public struct ValidatedGeneration: Sendable, Equatable {
    public var prompt: String
    public var model: String
    public var size: String
    public var quality: String
    public var count: Int
    public var referenceUploadIDs: [Int64]
    public var quote: PriceTable.Quote
}

/// Who is asking: the owner sees their own tasks and images, an admin everyone's.
public struct Viewer: Sendable, Equatable {
    public var userID: Int64
    public var isAdmin: Bool

    public init(userID: Int64, isAdmin: Bool) {
        self.userID = userID
        self.isAdmin = isAdmin
    }

    /// Owners see their own; admins see everyone's.
    public func maySee(ownerID: Int64) -> Bool { self.isAdmin || ownerID == self.userID }
}

/// Why a generation request was refused, in words for the person and a code for scripts.
public struct GenerationError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case invalid, rateLimited = "rate_limited", tooManyActiveTasks = "too_many_active_tasks"
        case insufficientCredits = "insufficient_credits", idempotencyConflict = "idempotency_conflict"
        case notFound = "not_found", notAnImage = "not_an_image", tooLarge = "too_large"
        /// The person restricted processing, or their account awaits deletion.
        case restricted = "processing_restricted"
    }

    public var kind: Kind
    public var message: String
    /// The request field at fault, for `invalid`.
    public var field: String?
    /// For `rateLimited`.
    public var retryAfter: Duration?

    public init(_ kind: Kind, _ message: String, field: String? = nil, retryAfter: Duration? = nil) {
        self.kind = kind
        self.message = message
        self.field = field
        self.retryAfter = retryAfter
    }

    public var description: String { "\(self.kind.rawValue): \(self.message)" }
}

/// Submit, cancel and read tasks; upload references; list and delete images.
public struct GenerationService: Sendable {
    public let settings: GenerationSettings
    public let database: AppDatabase
    public let blobs: any BlobStore
    public let images: ImageLibrary
    public let events: TaskEvents
    private let limiter: RateLimiter
    private let wake: @Sendable () -> Void
    private let logger: Logger

    /// `wake` tells the dispatcher a task is waiting.
    public init(
        settings: GenerationSettings, database: AppDatabase, blobs: any BlobStore, images: ImageLibrary, events: TaskEvents,
        limiter: RateLimiter = RateLimiter(), wake: @escaping @Sendable () -> Void, logger: Logger
    ) {
        self.settings = settings
        self.database = database
        self.blobs = blobs
        self.images = images
        self.events = events
        self.limiter = limiter
        self.wake = wake
        self.logger = logger
    }

    // MARK: Validation and price

    public func validate(_ request: GenerationRequest) throws(GenerationError) -> ValidatedGeneration {
        let prompt = request.prompt.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !prompt.isEmpty else { throw GenerationError(.invalid, "Write a prompt: it says what the picture should show.", field: "prompt") }
        guard prompt.count <= self.settings.maximumPromptLength else {
            throw GenerationError(.invalid, "The prompt is too long: at most \(self.settings.maximumPromptLength) characters.", field: "prompt")
        }
        let model = request.model ?? self.settings.models[0]
        guard self.settings.models.contains(model) else {
            throw GenerationError(.invalid, "Unknown model \"\(model)\". Choose one of: \(self.settings.models.joined(separator: ", ")).", field: "model")
        }
        let size = request.size ?? self.settings.sizes[0]
        guard self.settings.sizes.contains(size) else {
            throw GenerationError(.invalid, "Size \"\(size)\" is not offered. Choose one of: \(self.settings.sizes.joined(separator: ", ")).", field: "size")
        }
        let quality = request.quality ?? self.settings.qualities[0]
        guard self.settings.qualities.contains(quality) else {
            throw GenerationError(.invalid, "Quality \"\(quality)\" is not offered. Choose one of: \(self.settings.qualities.joined(separator: ", ")).", field: "quality")
        }
        let count = request.n ?? 1
        guard (1...self.settings.maximumCount).contains(count) else {
            throw GenerationError(.invalid, "Ask for 1 to \(self.settings.maximumCount) images.", field: "n")
        }
        let references = request.referenceUploadIDs ?? []
        guard references.count <= self.settings.maximumReferences else {
            throw GenerationError(.invalid, "At most \(self.settings.maximumReferences) reference images per task.", field: "reference_upload_ids")
        }
        guard Set(references).count == references.count else {
            throw GenerationError(.invalid, "The same reference image is attached twice.", field: "reference_upload_ids")
        }
        let quote = self.settings.prices.quote(model: model, quality: quality, size: size, count: count, referenceCount: references.count)
        return ValidatedGeneration(prompt: prompt, model: model, size: size, quality: quality, count: count, referenceUploadIDs: references, quote: quote)
    }

    /// The price of a request; `referenceCount` prices reference images not uploaded yet.
    public func quote(_ request: GenerationRequest, referenceCount: Int? = nil) throws(GenerationError) -> PriceTable.Quote {
        guard let referenceCount else { return try self.validate(request).quote }
        guard (0...self.settings.maximumReferences).contains(referenceCount) else {
            throw GenerationError(.invalid, "At most \(self.settings.maximumReferences) reference images per task.", field: "reference_count")
        }
        var request = request
        request.referenceUploadIDs = nil
        let valid = try self.validate(request)
        return self.settings.prices.quote(model: valid.model, quality: valid.quality, size: valid.size, count: valid.count, referenceCount: referenceCount)
    }

    // MARK: Submit

    /// Checks limits, then inserts the task and reserves its price in one transaction, and
    /// wakes the dispatcher. The same idempotency key and body return the first task again.
    public func submit(
        _ request: GenerationRequest, viewer: Viewer, clientIP: String?, apiKeyID: Int64? = nil, idempotencyKey: String? = nil, now: Date = Date()
    ) async throws(GenerationError) -> SubmitOutcome {
        let valid = try self.validate(request)
        if let idempotencyKey {
            guard (1...255).contains(idempotencyKey.utf8.count) else {
                throw GenerationError(.invalid, "The Idempotency-Key header must be 1 to 255 characters.", field: "Idempotency-Key")
            }
        }
        let requestHash = idempotencyKey.map { _ in Self.hash(valid) }
        // A retry with a key already used should find its task even when the limits are reached.
        let isRetry = if let idempotencyKey { await self.hasTask(userID: viewer.userID, idempotencyKey: idempotencyKey) } else { false }
        if !isRetry {
            var buckets: [(key: String, rule: RateLimiter.Rule)] = [("submit-user:\(viewer.userID)", self.settings.submitPerPerson)]
            if let clientIP { buckets.append(("submit-ip:\(clientIP)", self.settings.submitPerIP)) }
            if let wait = self.limiter.take(buckets) {
                throw GenerationError(.rateLimited, "You are sending requests faster than allowed. Try again in \(wait.retryAfterSeconds) s.", retryAfter: wait)
            }
        }
        let new = NewGenerationTask(
            userID: viewer.userID, provider: self.settings.provider.rawValue, model: valid.model, prompt: valid.prompt, size: valid.size,
            quality: valid.quality, count: valid.count, referenceUploadIDs: valid.referenceUploadIDs, credits: valid.quote.credits,
            idempotencyKey: idempotencyKey, requestHash: requestHash, apiKeyID: apiKeyID, maximumActiveTasks: self.settings.maximumActiveTasks
        )
        do {
            let outcome = try await self.database.submitGenerationTask(new, now: now)
            if case .created = outcome { self.wake() }
            return outcome
        } catch let error as CreditStoreError {
            if case .insufficientCredits(let balance, let needed) = error {
                throw GenerationError(.insufficientCredits, "This costs \(needed) credits and your balance is \(balance).")
            }
            throw GenerationError(.notFound, "Your account was not found.")
        } catch PrivacyStoreError.processingRestricted {
            throw GenerationError(
                .restricted, "Processing is restricted on this account, so no images are made. Lift the restriction under Settings → Privacy to create again."
            )
        } catch let error as GenerationStoreError {
            switch error {
            case .idempotencyKeyReused:
                throw GenerationError(.idempotencyConflict, "This Idempotency-Key was already used for a different request. Use a new key for a new request.")
            case .tooManyActiveTasks(let limit):
                throw GenerationError(.tooManyActiveTasks, "You already have \(limit) images on the way. Wait for one to finish, then try again.", retryAfter: .seconds(5))
            case .unknownUpload(let id):
                throw GenerationError(.invalid, "Reference image \(id) was not found. Upload it again.", field: "reference_upload_ids")
            }
        } catch {
            self.logger.error("submit failed: \(error)")
            throw GenerationError(.invalid, "The task could not be saved. Try again.")
        }
    }

    private func hasTask(userID: Int64, idempotencyKey: String) async -> Bool {
        (try? await self.database.generationTask(userID: userID, idempotencyKey: idempotencyKey)) != nil
    }

    static func hash(_ valid: ValidatedGeneration) -> Data {
        let canonical = [valid.prompt, valid.model, valid.size, valid.quality, String(valid.count), valid.referenceUploadIDs.map(String.init).joined(separator: ",")]
            .joined(separator: "\u{1F}")
        return Data(SHA256.hash(data: Data(canonical.utf8)))
    }

    // MARK: Tasks

    public func task(id: Int64, viewer: Viewer) async throws -> GenerationTask? {
        guard let task = try await self.database.generationTask(id: id), viewer.maySee(ownerID: task.userID) else { return nil }
        return task
    }

    public func tasks(
        viewer: Viewer, everyone: Bool = false, before: Int64? = nil, limit: Int = 50, status: GenerationTask.Status? = nil, excluding excludedStatus: GenerationTask.Status? = nil
    ) async throws -> [GenerationTask] {
        try await self.database.generationTasks(
            userID: everyone && viewer.isAdmin ? nil : viewer.userID, before: before, limit: min(max(limit, 1), 100), status: status, excluding: excludedStatus
        )
    }

    /// Cancels a task that has not finished and refunds it; nil when there is no such task of
    /// theirs or it already finished.
    public func cancel(id: Int64, viewer: Viewer, now: Date = Date()) async throws -> GenerationTask? {
        guard let task = try await self.database.generationTask(id: id), viewer.maySee(ownerID: task.userID) else { return nil }
        let canceled = try await self.database.cancelGenerationTask(id: id, userID: task.userID, now: now)
        if canceled != nil { self.events.publish(id) }
        return canceled
    }

    // MARK: Uploads

    /// Checks an uploaded reference image (magic bytes, pixels, a full decode), strips its
    /// metadata and stores it under a generated name.
    public func upload(_ data: Data, viewer: Viewer, now: Date = Date()) async throws(GenerationError) -> Upload {
        guard data.count <= self.settings.uploadMaximumBytes else {
            throw GenerationError(.tooLarge, "The image is larger than \(self.settings.uploadMaximumBytes / 1_048_576) MB.")
        }
        guard !data.isEmpty else { throw GenerationError(.notAnImage, "The file is empty.") }
        let clean: (data: Data, info: ImageInfo)
        do {
            clean = try await BlockingWork.run { [images] in try images.sanitize(data) }
        } catch let error as ImageError {
            switch error.kind {
            case .tooManyPixels, .tooLarge: throw GenerationError(.tooLarge, error.description)
            default: throw GenerationError(.notAnImage, error.description)
            }
        } catch {
            throw GenerationError(.notAnImage, "The file could not be read as an image.")
        }
        let key = "uploads/u\(viewer.userID)/\(SecureToken.make(bytes: 16)).\(clean.info.format.fileExtension)"
        do {
            try await self.blobs.put(try BlobKey(key), data: ByteBuffer(bytes: clean.data), contentType: clean.info.format.contentType)
            return try await self.database.insertUpload(
                Upload(
                    userID: viewer.userID, blobKey: key, format: clean.info.format.rawValue, width: clean.info.width, height: clean.info.height,
                    bytes: clean.data.count, sha256: Self.hex(SHA256.hash(data: clean.data)), createdAt: now
                )
            )
        } catch {
            self.logger.error("storing an upload failed: \(error)")
            try? await self.blobs.delete(BlobKey(key))
            throw GenerationError(.invalid, "The image could not be stored. Try again.")
        }
    }

    // MARK: Images

    public func image(id: Int64, viewer: Viewer) async throws -> StoredImage? {
        guard let image = try await self.database.image(id: id), viewer.maySee(ownerID: image.userID) else { return nil }
        return image
    }

    public func images(viewer: Viewer, before: Int64? = nil, limit: Int = 50) async throws -> [StoredImage] {
        try await self.database.images(userID: viewer.userID, before: before, limit: min(max(limit, 1), 100))
    }

    /// Removes the row, then the original and the thumbnail from storage.
    public func deleteImage(id: Int64, viewer: Viewer) async throws -> Bool {
        guard let image = try await self.database.image(id: id), viewer.maySee(ownerID: image.userID) else { return false }
        guard let deleted = try await self.database.deleteImage(id: id) else { return false }
        for key in [deleted.blobKey, deleted.thumbKey] {
            do { try await self.blobs.delete(BlobKey(key)) } catch { self.logger.warning("could not delete blob \(key): \(error)") }
        }
        return true
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
