import Foundation
import GRDB

/// What submit writes, decided (validated and priced) by EaselCore.
public struct NewGenerationTask: Sendable {
    public var userID: Int64
    public var provider: String
    public var model: String
    public var prompt: String
    public var size: String
    public var quality: String
    public var count: Int
    /// Upload ids, in order; each must belong to `userID`.
    public var referenceUploadIDs: [Int64]
    /// The quoted price, reserved from the balance.
    public var credits: Int
    public var idempotencyKey: String?
    /// Identifies the request body under `idempotencyKey`.
    public var requestHash: Data?
    public var apiKeyID: Int64?
    /// The most queued and running tasks one person may have.
    public var maximumActiveTasks: Int

    public init(
        userID: Int64, provider: String, model: String, prompt: String, size: String, quality: String, count: Int,
        referenceUploadIDs: [Int64], credits: Int, idempotencyKey: String?, requestHash: Data?, apiKeyID: Int64?,
        maximumActiveTasks: Int
    ) {
        self.userID = userID
        self.provider = provider
        self.model = model
        self.prompt = prompt
        self.size = size
        self.quality = quality
        self.count = count
        self.referenceUploadIDs = referenceUploadIDs
        self.credits = credits
        self.idempotencyKey = idempotencyKey
        self.requestHash = requestHash
        self.apiKeyID = apiKeyID
        self.maximumActiveTasks = maximumActiveTasks
    }
}

public enum GenerationStoreError: Error, Equatable, Sendable {
    /// The idempotency key was used before with another request body.
    case idempotencyKeyReused
    /// The person already has this many queued or running tasks.
    case tooManyActiveTasks(limit: Int)
    /// A reference upload that does not exist or belongs to someone else.
    case unknownUpload(Int64)
}

/// What submit did: made a new task, or found the one this idempotency key already made.
public enum SubmitOutcome: Sendable, Equatable {
    case created(GenerationTask)
    case existing(GenerationTask)

    public var task: GenerationTask {
        switch self {
        case .created(let task), .existing(let task): task
        }
    }
}

/// An image finished by a worker and already in the blob store, to be recorded with the task's end.
public struct FinishedImage: Sendable, Equatable {
    public var blobKey: String
    public var thumbKey: String
    public var format: String
    public var width: Int
    public var height: Int
    public var bytes: Int
    public var sha256: String

    public init(blobKey: String, thumbKey: String, format: String, width: Int, height: Int, bytes: Int, sha256: String) {
        self.blobKey = blobKey
        self.thumbKey = thumbKey
        self.format = format
        self.width = width
        self.height = height
        self.bytes = bytes
        self.sha256 = sha256
    }
}

extension AppDatabase {
    // MARK: Submit and cancel

    /// Validates ownership and limits, inserts the task as queued and reserves its credits, in
    /// one transaction. The same idempotency key with the same body returns the first task.
    public func submitGenerationTask(_ new: NewGenerationTask, now: Date = Date()) async throws -> SubmitOutcome {
        try await self.writer.write { db in
            try Self.refuseIfProcessingRestricted(db, userID: new.userID)
            if let key = new.idempotencyKey {
                if let existing = try GenerationTask.filter(GenerationTask.Columns.userID == new.userID && Column("idempotency_key") == key).fetchOne(db) {
                    guard existing.requestHash == new.requestHash else { throw GenerationStoreError.idempotencyKeyReused }
                    return .existing(existing)
                }
            }
            let active = try GenerationTask
                .filter(GenerationTask.Columns.userID == new.userID && [GenerationTask.Status.queued.rawValue, GenerationTask.Status.running.rawValue].contains(GenerationTask.Columns.status))
                .fetchCount(db)
            guard active < new.maximumActiveTasks else { throw GenerationStoreError.tooManyActiveTasks(limit: new.maximumActiveTasks) }
            for uploadID in new.referenceUploadIDs {
                guard try Upload.filter(key: uploadID).filter(Column("user_id") == new.userID).fetchCount(db) == 1 else {
                    throw GenerationStoreError.unknownUpload(uploadID)
                }
            }
            var task = GenerationTask(
                id: nil, userID: new.userID, status: .queued, provider: new.provider, model: new.model, prompt: new.prompt,
                size: new.size, quality: new.quality, count: new.count, referenceCount: new.referenceUploadIDs.count, progress: 0,
                creditsReserved: new.credits, creditsCharged: 0, creditsRefunded: 0, providerTaskID: nil,
                attempts: 0, nextAttemptAt: now, failureCode: nil, failureMessage: nil,
                idempotencyKey: new.idempotencyKey, requestHash: new.requestHash, apiKeyID: new.apiKeyID,
                createdAt: now, startedAt: nil, finishedAt: nil, updatedAt: now
            )
            try task.insert(db)
            for (position, uploadID) in new.referenceUploadIDs.enumerated() {
                try db.execute(sql: "INSERT INTO task_reference (task_id, position, upload_id) VALUES (?, ?, ?)", arguments: [task.id!, position, uploadID])
            }
            if new.credits > 0 {
                try Self.appendLedgerEntry(db, userID: new.userID, kind: .reserve, amount: -new.credits, taskID: task.id!, reason: "reserved for task \(task.id!)", now: now)
            }
            return .created(task)
        }
    }

    /// Cancels a queued or running task and refunds it. Nil when it was not the person's or
    /// had already finished.
    public func cancelGenerationTask(id: Int64, userID: Int64, now: Date = Date()) async throws -> GenerationTask? {
        try await self.writer.write { db in
            guard let task = try GenerationTask.filter(key: id).filter(GenerationTask.Columns.userID == userID).fetchOne(db),
                !task.status.isFinished
            else { return nil }
            return try Self.finishUnsuccessfully(db, task: task, status: .canceled, code: "canceled", message: "Canceled.", now: now)
        }
    }

    // MARK: The dispatcher's transitions

    /// Due tasks (queued or running, next attempt passed), oldest first, except `excluding`,
    /// marked running in the same transaction: one write claims a whole batch for the workers.
    /// A running task stays running (it is being resumed after a retry wait or a restart).
    public func claimDueGenerationTasks(now: Date = Date(), excluding: Set<Int64>, limit: Int) async throws -> [GenerationTask] {
        try await self.writer.write { db in
            var request = GenerationTask
                .filter([GenerationTask.Status.queued.rawValue, GenerationTask.Status.running.rawValue].contains(GenerationTask.Columns.status))
                .filter(GenerationTask.Columns.nextAttemptAt <= now)
            if !excluding.isEmpty { request = request.filter(!excluding.contains(GenerationTask.Columns.id)) }
            var tasks = try request.order(GenerationTask.Columns.nextAttemptAt, GenerationTask.Columns.id).limit(limit).fetchAll(db)
            for index in tasks.indices where tasks[index].status == .queued {
                tasks[index].status = .running
                tasks[index].startedAt = now
                tasks[index].updatedAt = now
                try tasks[index].update(db)
            }
            return tasks
        }
    }

    /// Stores an asynchronous provider's task id, once: a task with one is never submitted again.
    public func recordProviderTaskID(taskID: Int64, providerTaskID: String, nextPollAt: Date, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE generation_task SET provider_task_id = ?, next_attempt_at = ?, updated_at = ?
                    WHERE id = ? AND provider_task_id IS NULL AND status = 'running'
                    """,
                arguments: [providerTaskID, nextPollAt, now, taskID]
            )
            return db.changesCount == 1
        }
    }

    /// Moves progress forward (never back) and sets when to look at the task next.
    public func recordGenerationProgress(taskID: Int64, progress: Int, nextAttemptAt: Date? = nil, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE generation_task SET progress = MAX(progress, ?), next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?
                    WHERE id = ? AND status = 'running'
                    """,
                arguments: [min(max(progress, 0), 100), nextAttemptAt, now, taskID]
            )
        }
    }

    /// After a failure worth retrying: counts it, and says when to try again and why the last try failed.
    public func scheduleGenerationRetry(taskID: Int64, at date: Date, reason: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE generation_task SET attempts = attempts + 1, next_attempt_at = ?, failure_message = ?, updated_at = ?
                    WHERE id = ? AND status = 'running'
                    """,
                arguments: [date, reason, now, taskID]
            )
        }
    }

    /// Makes a running task due now (a provider's callback asked for a poll, which confirms it).
    public func pollGenerationTaskNow(taskID: Int64, now: Date = Date()) async throws -> GenerationTask? {
        try await self.writer.write { db in
            guard var task = try GenerationTask.fetchOne(db, key: taskID) else { return nil }
            if task.status == .running {
                task.nextAttemptAt = now
                task.updatedAt = now
                try task.update(db)
            }
            return task
        }
    }

    /// Ends a task in success: records its images (already in the blob store), captures what it
    /// cost and refunds the rest of the reservation. False when the task is no longer running
    /// (canceled or reaped meanwhile): the caller then removes the blobs it wrote.
    public func completeGenerationTask(taskID: Int64, images: [FinishedImage], charge: Int, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            guard var task = try GenerationTask.fetchOne(db, key: taskID), task.status == .running else { return false }
            let charged = min(max(charge, 0), task.creditsReserved)
            for (index, image) in images.enumerated() {
                var row = StoredImage(
                    userID: task.userID, taskID: taskID, resultIndex: index, blobKey: image.blobKey, thumbKey: image.thumbKey,
                    format: image.format, width: image.width, height: image.height, bytes: image.bytes, sha256: image.sha256,
                    provider: task.provider, model: task.model, quality: task.quality, size: task.size, prompt: task.prompt, createdAt: now
                )
                try row.insert(db)
            }
            if task.creditsReserved > 0 {
                try Self.appendLedgerEntry(db, userID: task.userID, kind: .capture, amount: 0, taskID: taskID, reason: "charged \(charged) of \(task.creditsReserved) for task \(taskID)", now: now)
            }
            let refund = task.creditsReserved - charged
            if refund > 0 {
                try Self.appendLedgerEntry(db, userID: task.userID, kind: .refund, amount: refund, taskID: taskID, reason: "unused part of task \(taskID)", now: now)
            }
            task.status = .succeeded
            task.progress = 100
            task.creditsCharged = charged
            task.creditsRefunded = refund
            task.failureCode = nil
            task.failureMessage = nil
            task.finishedAt = now
            task.updatedAt = now
            try task.update(db)
            return true
        }
    }

    /// Ends a task in failure and refunds its whole reservation, exactly once. Nil when it had
    /// already finished.
    public func failGenerationTask(taskID: Int64, code: String, message: String, now: Date = Date()) async throws -> GenerationTask? {
        try await self.writer.write { db in
            guard let task = try GenerationTask.fetchOne(db, key: taskID), !task.status.isFinished else { return nil }
            return try Self.finishUnsuccessfully(db, task: task, status: .failed, code: code, message: message, now: now)
        }
    }

    /// Running tasks started before `startedBefore`: the reaper fails and refunds them.
    public func stuckGenerationTasks(startedBefore: Date) async throws -> [GenerationTask] {
        try await self.writer.read { db in
            try GenerationTask.filter(GenerationTask.Columns.status == GenerationTask.Status.running.rawValue)
                .filter(GenerationTask.Columns.startedAt < startedBefore).fetchAll(db)
        }
    }

    static func finishUnsuccessfully(_ db: Database, task: GenerationTask, status: GenerationTask.Status, code: String, message: String, now: Date) throws -> GenerationTask {
        var task = task
        if task.creditsReserved > 0 {
            let reason = status == .canceled ? "task \(task.id!) canceled" : "task \(task.id!) failed"
            try Self.appendLedgerEntry(db, userID: task.userID, kind: .refund, amount: task.creditsReserved, taskID: task.id!, reason: reason, now: now)
        }
        task.status = status
        task.creditsCharged = 0
        task.creditsRefunded = task.creditsReserved
        task.failureCode = code
        task.failureMessage = message
        task.finishedAt = now
        task.updatedAt = now
        try task.update(db)
        return task
    }

    // MARK: Reading

    public func generationTask(id: Int64) async throws -> GenerationTask? {
        try await self.writer.read { db in try GenerationTask.fetchOne(db, key: id) }
    }

    /// The uploads attached to a task, in order.
    public func taskReferences(taskID: Int64) async throws -> [Upload] {
        try await self.writer.read { db in
            try Upload.fetchAll(
                db,
                sql: "SELECT upload.* FROM task_reference JOIN upload ON upload.id = task_reference.upload_id WHERE task_id = ? ORDER BY position",
                arguments: [taskID]
            )
        }
    }

    /// Newest first, keyset-paged by id; all people's when `userID` is nil (admins), with
    /// failures first when `failuresFirst`.
    public func generationTasks(
        userID: Int64?, before: Int64? = nil, limit: Int = 50, status: GenerationTask.Status? = nil, excluding excludedStatus: GenerationTask.Status? = nil
    ) async throws -> [GenerationTask] {
        try await self.writer.read { db in
            var request = GenerationTask.all()
            if let userID { request = request.filter(GenerationTask.Columns.userID == userID) }
            if let status { request = request.filter(GenerationTask.Columns.status == status.rawValue) }
            if let excludedStatus { request = request.filter(GenerationTask.Columns.status != excludedStatus.rawValue) }
            if let before { request = request.filter(GenerationTask.Columns.id < before) }
            return try request.order(GenerationTask.Columns.id.desc).limit(limit).fetchAll(db)
        }
    }

    public func images(taskID: Int64) async throws -> [StoredImage] {
        try await self.writer.read { db in
            try StoredImage.filter(StoredImage.Columns.taskID == taskID).order(Column("result_index")).fetchAll(db)
        }
    }

    // MARK: Uploads and images

    public func insertUpload(_ upload: Upload) async throws -> Upload {
        try await self.writer.write { db in
            var upload = upload
            try upload.insert(db)
            return upload
        }
    }

    /// Newest first, keyset-paged by id; everyone's when `userID` is nil.
    public func images(userID: Int64?, before: Int64? = nil, limit: Int = 50) async throws -> [StoredImage] {
        try await self.writer.read { db in
            var request = StoredImage.all()
            if let userID { request = request.filter(StoredImage.Columns.userID == userID) }
            if let before { request = request.filter(StoredImage.Columns.id < before) }
            return try request.order(StoredImage.Columns.id.desc).limit(limit).fetchAll(db)
        }
    }

    public func image(id: Int64) async throws -> StoredImage? {
        try await self.writer.read { db in try StoredImage.fetchOne(db, key: id) }
    }

    /// Removes the row; the caller removes the blobs it names (after, so a crash in between
    /// leaves at worst an orphan blob that the blob sweep finds, never a row without a blob).
    public func deleteImage(id: Int64) async throws -> StoredImage? {
        try await self.writer.write { db in
            guard let image = try StoredImage.fetchOne(db, key: id) else { return nil }
            try image.delete(db)
            return image
        }
    }

    /// Every blob key the database refers to under images/ and uploads/, for consistency checks.
    public func referencedGenerationBlobKeys() async throws -> Set<String> {
        try await self.writer.read { db in
            var keys = Set(try String.fetchAll(db, sql: "SELECT blob_key FROM image UNION ALL SELECT thumb_key FROM image"))
            keys.formUnion(try String.fetchAll(db, sql: "SELECT blob_key FROM upload"))
            return keys
        }
    }
}

extension AppDatabase {
    public func generationTask(userID: Int64, idempotencyKey: String) async throws -> GenerationTask? {
        try await self.writer.read { db in
            try GenerationTask.filter(GenerationTask.Columns.userID == userID && Column("idempotency_key") == idempotencyKey).fetchOne(db)
        }
    }
}

extension AppDatabase {
    /// The images of several tasks at once, for task lists.
    public func images(taskIDs: [Int64]) async throws -> [StoredImage] {
        guard !taskIDs.isEmpty else { return [] }
        return try await self.writer.read { db in
            try StoredImage.filter(taskIDs.contains(StoredImage.Columns.taskID)).order(Column("task_id"), Column("result_index")).fetchAll(db)
        }
    }
}
