import EaselBlobs
import EaselStore
import Foundation
import NIOCore

/// How far an archive has got, reported after each file.
public struct ExportProgress: Sendable, Equatable {
    public var entriesDone: Int
    public var entriesTotal: Int
    /// Bytes of file content read (originals, uploads, records), before compression.
    public var bytesDone: Int64
}

/// What one build measured: the proof that memory stays flat is that no buffer it handed on,
/// and no chunk it read, was larger than a chunk (plus zlib's worst-case growth).
public struct ExportStatistics: Sendable, Equatable {
    public var entries = 0
    public var archiveBytes: Int64 = 0
    public var contentBytes: Int64 = 0
    /// The largest buffer read from a source (a blob chunk, a page of records).
    public var largestInput = 0
    /// The largest buffer handed to the blob store.
    public var largestOutput = 0
    /// Files named in the database that storage no longer had (listed in missing-files.txt).
    public var missing: [String] = []
}

/// The files of one person's archive, read lazily: records page by page from the database,
/// originals chunk by chunk from the blob store.
struct ExportArchivePlan: Sendable {
    static let pageSize = 100
    /// Text files in the archive, before the originals.
    static let recordFiles = ["README.txt", "account.json", "prompts.json", "tasks.json", "images.json", "uploads.json", "ledger.csv", "payments.json"]

    let user: User
    let database: AppDatabase
    let blobs: any BlobStore
    let siteName: String
    let now: Date

    /// Every entry, in order; totals are known up front, so progress has a denominator.
    func entryCount(totals: DataExportTotals) -> Int {
        Self.recordFiles.count + totals.images + totals.uploads + (self.user.avatarKey == nil ? 0 : 1)
    }

    // MARK: Names inside the archive

    static func imagePath(_ image: StoredImage) -> String {
        let ext = Self.fileExtension(image.blobKey, format: image.format)
        if let task = image.taskID { return "images/t\(task)/\(image.resultIndex).\(ext)" }
        return "images/i\(image.id ?? 0).\(ext)"
    }

    static func uploadPath(_ upload: Upload) -> String {
        "uploads/\(upload.id ?? 0).\(Self.fileExtension(upload.blobKey, format: upload.format))"
    }

    static func avatarPath(_ key: String) -> String {
        "avatar.\(Self.fileExtension(key, format: "webp"))"
    }

    static func fileExtension(_ key: String, format: String) -> String {
        let last = key.split(separator: "/").last.map(String.init) ?? key
        if let dot = last.lastIndex(of: "."), last.index(after: dot) < last.endIndex {
            return String(last[last.index(after: dot)...])
        }
        return format == "jpeg" ? "jpg" : format
    }

    // MARK: Records as JSON and CSV

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    struct AccountFile: Encodable {
        struct Identity: Encodable {
            var issuer: String
            var subject: String
            var email: String?
            var created_at: Date
        }
        struct SessionEntry: Encodable {
            var created_at: Date
            var last_seen_at: Date
            var expires_at: Date
            var user_agent: String
            var ip: String
            var country: String?
        }
        struct Key: Encodable {
            var name: String
            var prefix: String
            var scopes: String
            var created_at: Date
            var expires_at: Date?
            var last_used_at: Date?
            var revoked_at: Date?
        }
        var id: Int64
        var email: String
        var email_verified_at: Date?
        var display_name: String
        var role: String
        var status: String
        var language: String?
        var theme: String
        var two_factor_enabled: Bool
        var has_password: Bool
        var avatar: String?
        var age_confirmed_at: Date
        var terms_version: String
        var terms_accepted_at: Date
        var created_at: Date
        var updated_at: Date
        var credit_balance: Int
        var sign_in_identities: [Identity]
        var sessions: [SessionEntry]
        var api_keys: [Key]
        var exported_at: Date
    }

    func accountFile() async throws -> ByteBuffer {
        let user = self.user
        let userID = user.id!
        let file = AccountFile(
            id: userID, email: user.email, email_verified_at: user.emailVerifiedAt, display_name: user.displayName, role: user.role.rawValue,
            status: user.status.rawValue, language: user.language, theme: user.theme.rawValue, two_factor_enabled: user.hasTwoFactor,
            has_password: user.passwordHash != nil, avatar: user.avatarKey.map(Self.avatarPath), age_confirmed_at: user.ageConfirmedAt,
            terms_version: user.termsVersion, terms_accepted_at: user.termsAcceptedAt, created_at: user.createdAt, updated_at: user.updatedAt,
            credit_balance: try await self.database.creditBalance(userID: userID),
            sign_in_identities: try await self.database.identities(userID: userID).map {
                .init(issuer: $0.issuer, subject: $0.subject, email: $0.email, created_at: $0.createdAt)
            },
            sessions: try await self.database.sessions(userID: userID).map {
                .init(created_at: $0.createdAt, last_seen_at: $0.lastSeenAt, expires_at: $0.expiresAt, user_agent: $0.userAgent, ip: $0.ip, country: $0.country)
            },
            api_keys: try await self.database.apiKeys(userID: userID).map {
                .init(name: $0.name, prefix: $0.prefix, scopes: $0.scopes, created_at: $0.createdAt, expires_at: $0.expiresAt, last_used_at: $0.lastUsedAt, revoked_at: $0.revokedAt)
            },
            exported_at: self.now
        )
        var data = try Self.encoder().encode(file)
        data.append(0x0A)
        return ByteBuffer(bytes: data)
    }

    struct PromptEntry: Encodable {
        var task_id: Int64
        var created_at: Date
        var prompt: String
        var model: String
        var size: String
        var quality: String
        var count: Int
    }

    struct TaskEntry: Encodable {
        var id: Int64
        var status: String
        var provider: String
        var model: String
        var prompt: String
        var size: String
        var quality: String
        var count: Int
        var reference_upload_ids: [Int64]
        var credits_reserved: Int
        var credits_charged: Int
        var credits_refunded: Int
        var failure_code: String?
        var failure_message: String?
        var via_api_key: Bool
        var created_at: Date
        var started_at: Date?
        var finished_at: Date?
    }

    struct ImageEntry: Encodable {
        var id: Int64
        var file: String
        var task_id: Int64?
        var result_index: Int
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
        var created_at: Date
    }

    struct UploadEntry: Encodable {
        var id: Int64
        var file: String
        var format: String
        var width: Int
        var height: Int
        var bytes: Int
        var sha256: String
        var created_at: Date
    }

    /// A JSON array written page by page: only one page of rows is ever in memory.
    static func jsonArray<Row: Sendable, Item: Encodable>(
        fetch: @escaping @Sendable (_ after: Int64) async throws -> [Row], id: @escaping @Sendable (Row) -> Int64,
        items: @escaping @Sendable ([Row]) async throws -> [Item]
    ) -> ChunkSource {
        let encoder = Self.encoder()
        var after: Int64 = 0
        var first = true
        var done = false
        return {
            if done { return nil }
            let rows = try await fetch(after)
            var buffer = ByteBuffer()
            if first { buffer.writeString("[") }
            if rows.isEmpty {
                buffer.writeString(first ? "]\n" : "\n]\n")
                done = true
                return buffer
            }
            for item in try await items(rows) {
                buffer.writeString(first ? "\n" : ",\n")
                first = false
                buffer.writeBytes(try encoder.encode(item))
            }
            after = id(rows[rows.count - 1])
            return buffer
        }
    }

    func prompts() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        return Self.jsonArray(
            fetch: { try await database.exportedTasks(userID: userID, after: $0, limit: Self.pageSize) }, id: { $0.id! },
            items: { tasks in
                tasks.map { PromptEntry(task_id: $0.id!, created_at: $0.createdAt, prompt: $0.prompt, model: $0.model, size: $0.size, quality: $0.quality, count: $0.count) }
            }
        )
    }

    func tasks() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        return Self.jsonArray(
            fetch: { try await database.exportedTasks(userID: userID, after: $0, limit: Self.pageSize) }, id: { $0.id! },
            items: { tasks in
                let references = try await database.exportedTaskReferences(taskIDs: tasks.map { $0.id! })
                return tasks.map { task in
                    TaskEntry(
                        id: task.id!, status: task.status.rawValue, provider: task.provider, model: task.model, prompt: task.prompt, size: task.size,
                        quality: task.quality, count: task.count, reference_upload_ids: references[task.id!] ?? [], credits_reserved: task.creditsReserved,
                        credits_charged: task.creditsCharged, credits_refunded: task.creditsRefunded, failure_code: task.failureCode,
                        failure_message: task.failureMessage, via_api_key: task.apiKeyID != nil, created_at: task.createdAt, started_at: task.startedAt,
                        finished_at: task.finishedAt
                    )
                }
            }
        )
    }

    func imagesFile() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        return Self.jsonArray(
            fetch: { try await database.exportedImages(userID: userID, after: $0, limit: Self.pageSize) }, id: { $0.id! },
            items: { images in
                images.map {
                    ImageEntry(
                        id: $0.id!, file: Self.imagePath($0), task_id: $0.taskID, result_index: $0.resultIndex, format: $0.format, width: $0.width,
                        height: $0.height, bytes: $0.bytes, sha256: $0.sha256, provider: $0.provider, model: $0.model, quality: $0.quality,
                        size: $0.size, prompt: $0.prompt, created_at: $0.createdAt
                    )
                }
            }
        )
    }

    func uploadsFile() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        return Self.jsonArray(
            fetch: { try await database.exportedUploads(userID: userID, after: $0, limit: Self.pageSize) }, id: { $0.id! },
            items: { uploads in
                uploads.map {
                    UploadEntry(
                        id: $0.id!, file: Self.uploadPath($0), format: $0.format, width: $0.width, height: $0.height, bytes: $0.bytes,
                        sha256: $0.sha256, created_at: $0.createdAt
                    )
                }
            }
        )
    }

    func payments() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        return Self.jsonArray(
            fetch: { try await database.exportedPayments(userID: userID, after: $0, limit: Self.pageSize) }, id: { $0.id! },
            items: { $0 }
        )
    }

    static let ledgerColumns = ["id", "created_at", "kind", "amount", "balance_after", "task_id", "payment_ref", "reason"]

    func ledger() -> ChunkSource {
        let (database, userID) = (self.database, self.user.id!)
        var after: Int64 = 0
        var header = true
        let formatter = ISO8601DateFormatter()
        return {
            var buffer = ByteBuffer()
            if header {
                header = false
                buffer.writeString(Self.ledgerColumns.joined(separator: ",") + "\r\n")
            }
            let rows = try await database.exportedLedger(userID: userID, after: after, limit: Self.pageSize)
            if rows.isEmpty { return buffer.readableBytes > 0 ? buffer : nil }
            for row in rows {
                let fields = [
                    String(row.id!), formatter.string(from: row.createdAt), row.kind.rawValue, String(row.amount), String(row.balanceAfter),
                    row.taskID.map(String.init) ?? "", row.paymentRef ?? "", row.reason,
                ]
                buffer.writeString(fields.map(Self.csvField).joined(separator: ",") + "\r\n")
            }
            after = rows[rows.count - 1].id!
            return buffer
        }
    }

    /// RFC 4180: quoted when it holds a comma, quote or line break; a leading = + - @ is
    /// prefixed with ' so a spreadsheet does not run it as a formula.
    static func csvField(_ value: String) -> String {
        var value = value
        if let first = value.first, "=+-@".contains(first), Double(value) == nil { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    func readme(totals: DataExportTotals) -> ByteBuffer {
        let formatter = ISO8601DateFormatter()
        let text = """
            Everything \(self.siteName) keeps about \(self.user.email), exported \(formatter.string(from: self.now)).

            account.json    your account: profile, sign-in identities, sessions, API keys (never their secrets), credit balance
            prompts.json    every prompt you submitted, oldest first
            tasks.json      every generation task: settings, status, credits, the uploads it used
            images.json     metadata of every image; "file" names the original in this archive, "sha256" its checksum
            uploads.json    metadata of the reference images you uploaded
            ledger.csv      your credits ledger, one row per movement
            payments.json   your payments (no card numbers are ever kept)
            images/         the originals, as the image model made them (\(totals.images) files)
            uploads/        your reference images, as stored after cleaning (\(totals.uploads) files)
            avatar.*        your profile picture, if you have one

            Times are UTC (ISO 8601). Passwords, two-factor secrets and API key secrets are never exported.

            """
        return ByteBuffer(string: text)
    }

    // MARK: Files

    /// One file of the archive.
    struct Entry {
        var name: String
        var method: ZipStreamWriter.Method
        var modified: Date
        /// Opens the file's bytes; a blob gone from storage throws `BlobError.notFound`.
        var open: () async throws -> ChunkSource
    }

    /// Hands out the entries in order, fetching image and upload rows a page at a time.
    func entries(totals: DataExportTotals) -> () async throws -> Entry? {
        var records = Self.recordFiles[...]
        var imagesAfter: Int64 = 0
        var uploadsAfter: Int64 = 0
        var pendingImages: [StoredImage] = []
        var pendingUploads: [Upload] = []
        var imagesDone = false
        var uploadsDone = false
        var avatarDone = self.user.avatarKey == nil
        let (database, blobs, userID, now) = (self.database, self.blobs, self.user.id!, self.now)

        func blob(_ key: String) -> () async throws -> ChunkSource {
            {
                let object = try await blobs.get(try BlobKey(key))
                var iterator = object.body.makeAsyncIterator()
                return { try await iterator.next() }
            }
        }

        return {
            if let name = records.popFirst() {
                let source: () async throws -> ChunkSource =
                    switch name {
                    case "README.txt": { [buffer = self.readme(totals: totals)] in Self.single(buffer) }
                    case "account.json": { [plan = self] in Self.single(try await plan.accountFile()) }
                    case "prompts.json": { self.prompts() }
                    case "tasks.json": { self.tasks() }
                    case "images.json": { self.imagesFile() }
                    case "uploads.json": { self.uploadsFile() }
                    case "ledger.csv": { self.ledger() }
                    default: { self.payments() }
                    }
                return Entry(name: name, method: .deflated, modified: now, open: source)
            }
            while !imagesDone {
                if pendingImages.isEmpty {
                    pendingImages = try await database.exportedImages(userID: userID, after: imagesAfter, limit: Self.pageSize)
                    if pendingImages.isEmpty {
                        imagesDone = true
                        break
                    }
                    imagesAfter = pendingImages[pendingImages.count - 1].id!
                    pendingImages.reverse()
                }
                let image = pendingImages.removeLast()
                // Already compressed (PNG, JPEG, WebP): stored as they are.
                return Entry(name: Self.imagePath(image), method: .stored, modified: image.createdAt, open: blob(image.blobKey))
            }
            while !uploadsDone {
                if pendingUploads.isEmpty {
                    pendingUploads = try await database.exportedUploads(userID: userID, after: uploadsAfter, limit: Self.pageSize)
                    if pendingUploads.isEmpty {
                        uploadsDone = true
                        break
                    }
                    uploadsAfter = pendingUploads[pendingUploads.count - 1].id!
                    pendingUploads.reverse()
                }
                let upload = pendingUploads.removeLast()
                return Entry(name: Self.uploadPath(upload), method: .stored, modified: upload.createdAt, open: blob(upload.blobKey))
            }
            if !avatarDone, let key = self.user.avatarKey {
                avatarDone = true
                return Entry(name: Self.avatarPath(key), method: .stored, modified: self.user.updatedAt, open: blob(key))
            }
            return nil
        }
    }

    static func single(_ buffer: ByteBuffer) -> ChunkSource {
        var pending: ByteBuffer? = buffer
        return {
            defer { pending = nil }
            return pending
        }
    }
}

/// The next chunk of a file's bytes, nil at its end.
typealias ChunkSource = () async throws -> ByteBuffer?

/// Pulls the archive one piece at a time: nothing is read from storage or the database until
/// the blob store asks for the next bytes, so at most one chunk is in flight.
///
/// `@unchecked Sendable`: `AsyncThrowingStream(unfolding:)` calls `next()` for one consumer,
/// one call after the other, so the state is never touched concurrently.
final class ExportArchiveProducer: @unchecked Sendable {
    private let writer: ZipStreamWriter
    private let nextEntry: () async throws -> ExportArchivePlan.Entry?
    private let entriesTotal: Int
    private let shouldStop: @Sendable () -> Bool
    private let progress: @Sendable (ExportProgress) async -> Void
    private var source: ChunkSource?
    private var closing = false
    private var finished = false
    private var missingListed = false
    private(set) var statistics = ExportStatistics()
    private var entriesDone = 0

    init(
        plan: ExportArchivePlan, totals: DataExportTotals, forceZip64: Bool = false, shouldStop: @escaping @Sendable () -> Bool,
        progress: @escaping @Sendable (ExportProgress) async -> Void
    ) {
        self.writer = ZipStreamWriter(forceZip64: forceZip64)
        self.nextEntry = plan.entries(totals: totals)
        self.entriesTotal = plan.entryCount(totals: totals)
        self.shouldStop = shouldStop
        self.progress = progress
    }

    /// The archive as a stream the blob store pulls from.
    func stream() -> BlobByteStream {
        AsyncThrowingStream(unfolding: { try await self.next() })
    }

    func next() async throws -> ByteBuffer? {
        while true {
            if self.shouldStop() { throw CancellationError() }
            if self.finished { return nil }
            if self.closing {
                guard let piece = try self.writer.nextClosingPiece() else {
                    self.finished = true
                    self.statistics.archiveBytes = Int64(self.writer.offset)
                    return nil
                }
                return self.handOn(piece)
            }
            if let source = self.source {
                if let chunk = try await source() {
                    self.statistics.largestInput = max(self.statistics.largestInput, chunk.readableBytes)
                    self.statistics.contentBytes += Int64(chunk.readableBytes)
                    let output = try self.writer.write(chunk)
                    if output.readableBytes == 0 { continue }
                    return self.handOn(output)
                }
                self.source = nil
                let descriptor = try self.writer.finishEntry()
                self.entriesDone += 1
                self.statistics.entries = self.writer.entryCount
                // A missing-files.txt can make one more file than was counted.
                await self.progress(
                    ExportProgress(entriesDone: self.entriesDone, entriesTotal: max(self.entriesTotal, self.entriesDone), bytesDone: self.statistics.contentBytes)
                )
                return self.handOn(descriptor)
            }
            guard let entry = try await self.nextEntry() else {
                if !self.statistics.missing.isEmpty, !self.missingListed {
                    self.missingListed = true
                    let text = "These files are named in the records but were missing from storage, or could not be read, when the archive was made:\n"
                        + self.statistics.missing.joined(separator: "\n") + "\n"
                    self.source = ExportArchivePlan.single(ByteBuffer(string: text))
                    return self.handOn(try self.writer.startEntry(name: "missing-files.txt", method: .deflated, modified: Date()))
                }
                self.closing = true
                continue
            }
            do {
                self.source = try await entry.open()
            } catch let error as BlobError {
                // Gone, or no longer readable (altered in storage): list it rather than fail the whole export.
                switch error {
                case .notFound, .undecryptable: break
                default: throw error
                }
                self.statistics.missing.append(entry.name)
                self.entriesDone += 1
                continue
            }
            return self.handOn(try self.writer.startEntry(name: entry.name, method: entry.method, modified: entry.modified))
        }
    }

    private func handOn(_ buffer: ByteBuffer) -> ByteBuffer {
        self.statistics.largestOutput = max(self.statistics.largestOutput, buffer.readableBytes)
        return buffer
    }
}
