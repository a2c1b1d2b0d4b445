import Foundation
import GRDB

/// One request for images, from submit to its end.
public struct GenerationTask: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "generation_task"

    public enum Status: String, Codable, Sendable, CaseIterable {
        case queued, running, succeeded, failed, canceled

        public var isFinished: Bool { self == .succeeded || self == .failed || self == .canceled }
    }

    public var id: Int64?
    public var userID: Int64
    public var status: Status
    public var provider: String
    public var model: String
    public var prompt: String
    public var size: String
    public var quality: String
    public var count: Int
    public var referenceCount: Int
    public var progress: Int
    public var creditsReserved: Int
    public var creditsCharged: Int
    public var creditsRefunded: Int
    public var providerTaskID: String?
    public var attempts: Int
    public var nextAttemptAt: Date
    public var failureCode: String?
    public var failureMessage: String?
    public var idempotencyKey: String?
    public var requestHash: Data?
    public var apiKeyID: Int64?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, status, provider, model, prompt, size, quality, count, progress, attempts
        case userID = "user_id"
        case referenceCount = "reference_count"
        case creditsReserved = "credits_reserved"
        case creditsCharged = "credits_charged"
        case creditsRefunded = "credits_refunded"
        case providerTaskID = "provider_task_id"
        case nextAttemptAt = "next_attempt_at"
        case failureCode = "failure_code"
        case failureMessage = "failure_message"
        case idempotencyKey = "idempotency_key"
        case requestHash = "request_hash"
        case apiKeyID = "api_key_id"
        case createdAt = "created_at"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case updatedAt = "updated_at"
    }

    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let userID = Column(CodingKeys.userID)
        public static let status = Column(CodingKeys.status)
        public static let nextAttemptAt = Column(CodingKeys.nextAttemptAt)
        public static let startedAt = Column(CodingKeys.startedAt)
        public static let provider = Column(CodingKeys.provider)
        public static let providerTaskID = Column(CodingKeys.providerTaskID)
    }

    /// Seconds from submit to the end, once finished.
    public var duration: TimeInterval? {
        self.finishedAt.map { $0.timeIntervalSince(self.createdAt) }
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A reference image someone uploaded, cleaned and stored, ready to attach to tasks.
public struct Upload: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "upload"

    public var id: Int64?
    public var userID: Int64
    public var blobKey: String
    public var format: String
    public var width: Int
    public var height: Int
    public var bytes: Int
    public var sha256: String
    public var createdAt: Date

    public init(id: Int64? = nil, userID: Int64, blobKey: String, format: String, width: Int, height: Int, bytes: Int, sha256: String, createdAt: Date) {
        self.id = id
        self.userID = userID
        self.blobKey = blobKey
        self.format = format
        self.width = width
        self.height = height
        self.bytes = bytes
        self.sha256 = sha256
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, format, width, height, bytes, sha256
        case userID = "user_id"
        case blobKey = "blob_key"
        case createdAt = "created_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A finished image, kept in the blob store with its thumbnail.
public struct StoredImage: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "image"

    public var id: Int64?
    public var userID: Int64
    public var taskID: Int64?
    public var resultIndex: Int
    public var blobKey: String
    public var thumbKey: String
    public var format: String
    public var width: Int
    public var height: Int
    public var bytes: Int
    public var sha256: String
    public var provider: String
    public var model: String
    public var quality: String
    public var size: String
    public var prompt: String
    public var createdAt: Date

    public init(
        id: Int64? = nil, userID: Int64, taskID: Int64?, resultIndex: Int, blobKey: String, thumbKey: String,
        format: String, width: Int, height: Int, bytes: Int, sha256: String,
        provider: String, model: String, quality: String, size: String, prompt: String, createdAt: Date
    ) {
        self.id = id
        self.userID = userID
        self.taskID = taskID
        self.resultIndex = resultIndex
        self.blobKey = blobKey
        self.thumbKey = thumbKey
        self.format = format
        self.width = width
        self.height = height
        self.bytes = bytes
        self.sha256 = sha256
        self.provider = provider
        self.model = model
        self.quality = quality
        self.size = size
        self.prompt = prompt
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, format, width, height, bytes, sha256, provider, model, quality, size, prompt
        case userID = "user_id"
        case taskID = "task_id"
        case resultIndex = "result_index"
        case blobKey = "blob_key"
        case thumbKey = "thumb_key"
        case createdAt = "created_at"
    }

    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let userID = Column(CodingKeys.userID)
        public static let taskID = Column(CodingKeys.taskID)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// One line of a person's credits ledger.
public struct LedgerEntry: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "credit_ledger"

    public enum Kind: String, Codable, Sendable, CaseIterable {
        case grant, purchase, reserve, capture, refund, adjust, expire
    }

    public var id: Int64?
    public var userID: Int64
    public var kind: Kind
    public var amount: Int
    public var balanceAfter: Int
    public var taskID: Int64?
    public var paymentRef: String?
    public var reason: String
    public var actorID: Int64?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, kind, amount, reason
        case userID = "user_id"
        case balanceAfter = "balance_after"
        case taskID = "task_id"
        case paymentRef = "payment_ref"
        case actorID = "actor_id"
        case createdAt = "created_at"
    }

    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let userID = Column(CodingKeys.userID)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}
