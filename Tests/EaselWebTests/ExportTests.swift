import AsyncHTTPClient
import Crypto
import EaselApp
import EaselBlobs
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization
import Testing

/// What a test put in a person's account, to find again in the archive.
struct SeededAccount {
    var images: [StoredImage]
    var uploads: [Upload]
    var avatarKey: String
    /// sha256 of each blob, by key.
    var digests: [String: String]
}

@Suite("Export everything: a streamed ZIP of a person's data, kept 7 days")
struct ExportTests {
    let api = APITests()

    // MARK: Helpers

    static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Incompressible bytes (like a real PNG's body), different for each `seed`.
    static func noise(_ count: Int, seed: UInt64) -> Data {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var data = Data(count: count)
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for index in words.indices {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                words[index] = state
            }
        }
        return data
    }

    /// `tasks` finished tasks of `perTask` images of `imageBytes` each, two uploads (the first
    /// used by the first task) and a profile picture, all with their blobs in storage.
    func seed(_ services: AppServices, _ user: User, tasks: Int, perTask: Int, imageBytes: Int) async throws -> SeededAccount {
        let userID = user.id!
        var digests: [String: String] = [:]
        func store(_ key: String, _ data: Data) async throws -> String {
            try await services.blobs.put(try BlobKey(key), data: data, contentType: nil)
            let digest = Self.sha256(data)
            digests[key] = digest
            return digest
        }
        var uploads: [Upload] = []
        for index in 0..<2 {
            let key = "uploads/u\(userID)/ref\(index).png"
            let data = Self.noise(50_000 + index, seed: UInt64(900 + index))
            let digest = try await store(key, data)
            uploads.append(
                try await services.database.insertUpload(
                    Upload(userID: userID, blobKey: key, format: "png", width: 64, height: 64, bytes: data.count, sha256: digest, createdAt: Date())
                )
            )
        }
        try await services.database.grantCredits(userID: userID, amount: tasks * 10, reason: "test credits, \"quoted\", with a comma")
        var seed: UInt64 = 1
        // Due an hour from now, so the app's own dispatcher (running in the test app) never
        // claims these tasks: this test finishes them itself, with its own files.
        let later = Date().addingTimeInterval(3600)
        for taskIndex in 0..<tasks {
            let task = try await services.database.submitGenerationTask(
                NewGenerationTask(
                    userID: userID, provider: "demo", model: "gpt-image-2", prompt: "a lighthouse, number \(taskIndex), at dusk", size: "1024x1024",
                    quality: "high", count: perTask, referenceUploadIDs: taskIndex == 0 ? [uploads[0].id!] : [], credits: 2, idempotencyKey: nil,
                    requestHash: nil, apiKeyID: nil, maximumActiveTasks: 10_000
                ),
                now: later
            ).task
            var finished: [FinishedImage] = []
            for index in 0..<perTask {
                let key = "images/u\(userID)/t\(task.id!)/\(index).png"
                seed += 1
                let data = Self.noise(imageBytes, seed: seed)
                let digest = try await store(key, data)
                finished.append(FinishedImage(blobKey: key, thumbKey: "images/u\(userID)/t\(task.id!)/\(index).thumb.webp", format: "png", width: 1024, height: 1024, bytes: data.count, sha256: digest))
            }
            let claimed = try await services.database.claimDueGenerationTasks(now: later, excluding: [], limit: 1)
            #expect(claimed.map(\.id) == [task.id])
            #expect(try await services.database.completeGenerationTask(taskID: task.id!, images: finished, charge: 1))
        }
        let avatarKey = "avatars/u\(userID)/me.webp"
        _ = try await store(avatarKey, Self.noise(9_000, seed: 77))
        _ = try await services.database.replaceAvatar(userID: userID, key: avatarKey)
        var images: [StoredImage] = []
        var before: Int64?
        while true {
            let page = try await services.database.images(userID: userID, before: before, limit: 500)
            if page.isEmpty { break }
            images += page
            before = page.last?.id
        }
        return SeededAccount(images: images, uploads: uploads, avatarKey: avatarKey, digests: digests)
    }

    /// The archive of a ready export, read through the blob store (which decrypts it) into a
    /// file; checks on the way that storage itself holds only ciphertext.
    func archiveFile(_ services: AppServices, _ export: DataExport) async throws -> URL {
        let key = try BlobKey(try #require(export.blobKey))
        let stored = try #require(services.blobs as? EncryptedBlobStore)
        #expect(try await stored.inner.getData(key, range: 0...7) == Data("EASELENC".utf8), "the archive is encrypted at rest")
        let file = services.config.workDirectory.appending(path: "archive-\(export.id!).zip")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        for try await chunk in try await services.blobs.get(key).body {
            try handle.write(contentsOf: chunk.readableBytesView)
        }
        return file
    }

    /// Checks the archive holds every original, upload and the avatar with the right bytes,
    /// and every record file; returns the report.
    @discardableResult
    func verifyArchive(_ file: URL, _ seeded: SeededAccount, user: User) async throws -> PythonZip.Report {
        let report = try await PythonZip.inspect(file, texts: ["account.json", "images.json", "tasks.json", "prompts.json", "ledger.csv", "uploads.json", "payments.json"])
        #expect(report.firstBadEntry == nil, "every CRC-32 matches")
        for name in ["README.txt", "account.json", "prompts.json", "tasks.json", "images.json", "uploads.json", "ledger.csv", "payments.json"] {
            #expect(report.entry(name)?.method == 8, "\(name) is there, deflated")
        }
        for image in seeded.images {
            let name = "images/t\(image.taskID!)/\(image.resultIndex).png"
            let entry = try #require(report.entry(name), "\(name) is in the archive")
            #expect(entry.sha256 == image.sha256, "\(name) has the bytes its image row describes")
            #expect(entry.method == 0, "images are stored, not compressed again")
        }
        for upload in seeded.uploads {
            #expect(report.entry("uploads/\(upload.id!).png")?.sha256 == upload.sha256)
        }
        #expect(report.entry("avatar.webp")?.sha256 == seeded.digests[seeded.avatarKey])
        #expect(report.entries.count == 8 + seeded.images.count + seeded.uploads.count + 1, "nothing else is in it")

        let images = try JSONSerialization.jsonObject(with: Data(try #require(report.texts["images.json"]).utf8)) as? [[String: Any]]
        #expect(images?.count == seeded.images.count)
        let described = Set((images ?? []).compactMap { row in (row["file"] as? String).map { "\($0) \(row["sha256"] as? String ?? "")" } })
        let actual = Set(report.entries.filter { $0.name.hasPrefix("images/") }.map { "\($0.name) \($0.sha256)" })
        #expect(described == actual, "images.json names each original with its checksum")

        let account = try #require(report.texts["account.json"])
        #expect(account.contains("\"email\":\"\(user.email)\""))
        #expect(!account.contains("password_hash") && !account.contains("$2"), "no password hash")
        #expect(!account.contains("totp_secret"))
        let tasks = try JSONSerialization.jsonObject(with: Data(try #require(report.texts["tasks.json"]).utf8)) as? [[String: Any]]
        #expect(tasks?.count == Set(seeded.images.map(\.taskID)).count)
        #expect((tasks?.first?["reference_upload_ids"] as? [Int])?.map(Int64.init) == [seeded.uploads[0].id!])
        #expect(try #require(report.texts["prompts.json"]).contains("a lighthouse, number 0, at dusk"))
        let ledger = try #require(report.texts["ledger.csv"]).split(separator: "\r\n")
        #expect(ledger.first == "id,created_at,kind,amount,balance_after,task_id,payment_ref,reason")
        #expect(ledger.contains { $0.hasSuffix(",\"test credits, \"\"quoted\"\", with a comma\"") }, "CSV quoting")
        #expect(try JSONSerialization.jsonObject(with: Data(try #require(report.texts["payments.json"]).utf8)) is [Any])
        return report
    }

    func makeExports(_ services: AppServices, blobs: any BlobStore, settings: ExportService.Settings = .init()) -> ExportService {
        ExportService(
            settings: settings, database: services.database, blobs: blobs,
            mails: AccountMails(siteName: services.config.siteName, publicURL: services.config.publicURL, localizer: services.localizer),
            logger: Logger(label: "test.exports")
        )
    }

    // MARK: Tests

    @Test("Pressing Export everything queues one export; the job builds a ZIP with every file; a mail brings the link; the owner downloads it")
    func exportEverything() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.api.signedIn(services, client)
            let seeded = try await self.seed(services, user, tasks: 3, perTask: 2, imageBytes: 300_000)

            let page = try await browser.get("/account/privacy")
            #expect(page.text.contains("action=\"/account/privacy/export\""), "the Privacy page has the Export everything button")

            let token = try self.api.formToken(page)
            let started = try await browser.post("/account/privacy/export", [:], csrf: token)
            #expect(started.status == .seeOther)
            #expect(started.headers[.location] == "/account/privacy#export")
            let again = try await browser.post("/account/privacy/export", [:], csrf: token)
            #expect(again.status == .seeOther)
            let exports = try await services.database.dataExports(userID: user.id!)
            #expect(exports.count == 1, "a second press finds the export under way")
            let export = try #require(exports.first)
            // The request woke the export job, which may have started already.
            let active = try await services.database.dataExport(id: export.id!)
            if active?.status.isActive == true {
                let waiting = try await browser.get("/account/privacy")
                #expect(waiting.text.contains("id=\"export-progress\""))
                #expect(!waiting.text.contains("action=\"/account/privacy/export\""), "no second button while one is under way")
            }
            let queued = try await browser.get("/account/privacy/exports/\(export.id!)/status")
            #expect(queued.status == .ok)
            #expect(queued.headers[.contentType]?.hasPrefix("application/json") == true)

            try await services.exports.runPending()
            let ready = try #require(try await services.database.dataExport(id: export.id!))
            #expect(ready.status == .ready)
            #expect(ready.attempts == 1)
            #expect(ready.entriesDone == ready.entriesTotal)
            #expect(ready.entriesTotal == 8 + 6 + 2 + 1)
            #expect(ready.bytesDone >= 6 * 300_000)
            #expect(ready.blobKey == "exports/u\(user.id!)/\(export.id!).zip")
            let expiresAt = try #require(ready.expiresAt)
            #expect(abs(expiresAt.timeIntervalSince(try #require(ready.finishedAt)) - 7 * 86400) < 1, "kept 7 days")

            let status = try JSONSerialization.jsonObject(with: Data(buffer: try await browser.get("/account/privacy/exports/\(export.id!)/status").body)) as? [String: Any]
            #expect(status?["status"] as? String == "ready")
            #expect(status?["download_url"] as? String == "/account/privacy/exports/\(export.id!)/download")
            #expect(status?["entries_done"] as? Int == ready.entriesTotal)

            let mail = try #require(try await services.database.recentMails().first { $0.kind == AccountMails.exportReadyKind })
            #expect(mail.toEmail == user.email)
            #expect(mail.textBody.contains("http://localhost:8080/account/privacy/exports/\(export.id!)/download"))
            #expect(mail.subject.contains("export is ready"))

            let download = try await browser.get("/account/privacy/exports/\(export.id!)/download")
            #expect(download.status == .ok)
            #expect(download.headers[.contentType] == "application/zip")
            #expect(download.headers[.contentDisposition]?.contains("attachment; filename=\"easel-export-") == true)
            #expect(download.headers[.contentEncoding] == nil, "a ZIP is not compressed again")
            #expect(download.body.readableBytes == Int(try #require(ready.size)))
            let folder = try TemporaryDirectory("easel-export")
            defer { folder.remove() }
            let file = folder.url.appending(path: "download.zip")
            try Data(buffer: download.body).write(to: file)
            try await self.verifyArchive(file, seeded, user: user)

            let after = try await browser.get("/account/privacy")
            #expect(after.text.contains("href=\"/account/privacy/exports/\(export.id!)/download\""))
            #expect(after.text.contains("action=\"/account/privacy/export\""), "a new export can be started")
            #expect(try await services.database.dataRequests(userID: user.id!).contains { $0.kind == .export && $0.outcome.hasPrefix("ready") })
        }
    }

    @Test("Only the owner sees the progress of an export or downloads it; signed out, nobody does")
    func ownerOnly() async throws {
        try await withTestApp { services, client in
            let (owner, user) = try await self.api.signedIn(services, client, email: "ada@example.org")
            let (other, otherUser) = try await self.api.signedIn(services, client, email: "bob@example.org")
            _ = try await self.seed(services, user, tasks: 1, perTask: 1, imageBytes: 1000)
            let token = try self.api.formToken(try await owner.get("/account/privacy"))
            #expect(try await owner.post("/account/privacy/export", [:], csrf: token).status == .seeOther)
            try await services.exports.runPending()
            let export = try #require(try await services.database.dataExports(userID: user.id!).first)
            #expect(export.status == .ready)

            #expect(try await owner.get("/account/privacy/exports/\(export.id!)/download").status == .ok)
            let stolen = try await other.get("/account/privacy/exports/\(export.id!)/download")
            #expect(stolen.status == .notFound)
            #expect(stolen.headers[.contentType] != "application/zip")
            #expect(try await other.get("/account/privacy/exports/\(export.id!)/status").status == .notFound)
            #expect(try await other.get("/account/privacy/exports/\(export.id! + 1)/download").status == .notFound)
            let anonymous = try await Browser(client).get("/account/privacy/exports/\(export.id!)/download")
            #expect(anonymous.status == .seeOther)
            #expect(anonymous.headers[.location]?.hasPrefix("/signin") == true)
            let anonymousStart = try await Browser(client).post("/account/privacy/export", [:])
            #expect(anonymousStart.headers[.location] != "/account/privacy#export")
            // A forged form without the session's token starts nothing.
            let forged = try await other.post("/account/privacy/export", [:], csrf: "forged-token-value-forged-token-value")
            #expect(forged.status == .forbidden)
            #expect(try await services.database.dataExports(userID: otherUser.id!).isEmpty)
        }
    }

    @Test("Exports are removed by the expiry job after 7 days, archive first, under a controllable clock")
    func expiry() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.api.signedIn(services, client)
            _ = try await self.seed(services, user, tasks: 1, perTask: 1, imageBytes: 1000)
            let t0 = Date(timeIntervalSinceNow: -3600)
            _ = try await services.exports.request(for: user, now: t0)
            try await services.exports.runPending(now: { t0 })
            let export = try #require(try await services.database.dataExports(userID: user.id!).first)
            let key = try BlobKey(try #require(export.blobKey))
            #expect(try await services.blobs.head(key) != nil)

            #expect(try await services.exports.removeExpired(now: t0.addingTimeInterval(7 * 86400 - 60)) == 0, "still within 7 days")
            #expect(try await services.blobs.head(key) != nil)
            #expect(try await services.database.dataExport(id: export.id!) != nil)

            #expect(try await services.exports.removeExpired(now: t0.addingTimeInterval(7 * 86400 + 1)) == 1)
            #expect(try await services.blobs.head(key) == nil, "the archive is gone from storage")
            #expect(try await services.database.dataExport(id: export.id!) == nil)
            #expect(try await services.blobs.list(prefix: "exports/").isEmpty)
            #expect(try await browser.get("/account/privacy/exports/\(export.id!)/download").status == .notFound)

            // The job is registered with the scheduler, so it runs on its timer and from `easel jobs run`.
            #expect(services.scheduler.jobs.contains { $0.name == ExportService.expiryJobName })
            #expect(services.scheduler.jobs.contains { $0.name == ExportService.buildJobName })
        }
    }

    @Test("A build cut short (a stop or a crash) leaves nothing in storage, and the next run starts it over and finishes it")
    func restartMidExport() async throws {
        try await withTestApp { services, client in
            let (_, user) = try await self.api.signedIn(services, client)
            let seeded = try await self.seed(services, user, tasks: 4, perTask: 3, imageBytes: 300_000)
            _ = try await services.exports.request(for: user)

            // The first process stops half way through the originals.
            let stop = Mutex<(@Sendable () -> Void)?>(nil)
            let interrupting = MeteredBlobs(inner: services.blobs, onImageRead: { count in
                if count == 5 { stop.withLock { $0?() } }
            })
            let first = self.makeExports(services, blobs: interrupting)
            stop.withLock { $0 = { first.stop() } }
            try await first.runPending()
            let cut = try #require(try await services.database.dataExports(userID: user.id!).first)
            #expect(cut.status == .running, "left as it was when the process stopped")
            #expect(cut.attempts == 1)
            #expect(cut.entriesDone > 0 && cut.entriesDone < cut.entriesTotal)
            #expect(try await services.blobs.list(prefix: "exports/").isEmpty, "no partial archive is visible")
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: services.config.blobsDirectory.appending(path: ".tmp").path)) ?? []
            #expect(leftovers.isEmpty, "no temporary file is left behind")

            // The next process (a restart, after the build has been silent long enough) starts it again from the beginning.
            let second = self.makeExports(services, blobs: services.blobs)
            try await second.runPending(now: { Date().addingTimeInterval(600) })
            let done = try #require(try await services.database.dataExport(id: cut.id!))
            #expect(done.status == .ready)
            #expect(done.attempts == 2)
            try await self.verifyArchive(try await self.archiveFile(services, done), seeded, user: user)
            #expect(try await services.database.recentMails().filter { $0.kind == AccountMails.exportReadyKind }.count == 1, "one mail")
        }
    }

    @Test("While an export waits, the Privacy page shows its progress instead of the button, and the status endpoint says so")
    func waitingExport() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.api.signedIn(services, client)
            // Through the service, without waking the job: it stays queued.
            let (export, created) = try await services.exports.request(for: user)
            #expect(created)
            #expect(try await services.exports.request(for: user).created == false, "one active export per person")
            let page = try await browser.get("/account/privacy")
            #expect(page.text.contains("id=\"export-progress\""))
            #expect(page.text.contains("data-status-url=\"/account/privacy/exports/\(export.id!)/status\""))
            #expect(page.text.contains("waiting to start"))
            let script = try #require(page.text.firstMatch(of: /src="(\/static\/export\.js[^"]*)"/).map { String($0.1) })
            #expect(try await browser.get(script).status == .ok, "the progress script is served")
            #expect(!page.text.contains("action=\"/account/privacy/export\""))
            let status = try JSONSerialization.jsonObject(with: Data(buffer: try await browser.get("/account/privacy/exports/\(export.id!)/status").body)) as? [String: Any]
            #expect(status?["status"] as? String == "queued")
            #expect(status?["download_url"] == nil)
            #expect(try await browser.get("/account/privacy/exports/\(export.id!)/download").status == .notFound, "nothing to download yet")
        }
    }

    @Test("On S3 storage the archive goes up encrypted as a multipart upload, and the download streams through Easel decrypted", .serialized)
    func s3Export() async throws {
        let peer = try await S3Peer.start()
        do {
            try await self.s3Export(peer)
        } catch {
            await peer.stop()
            throw error
        }
        await peer.stop()
    }

    func s3Export(_ peer: S3Peer) async throws {
        let bucket = "easel-export-\(UUID().uuidString.prefix(8).lowercased())"
        try await HTTPClient.withHTTPClient { client in
            try await S3BlobStore(
                configuration: S3Configuration(
                    endpoint: peer.endpoint, region: peer.region, bucket: bucket, accessKeyID: peer.accessKeyID, secretAccessKey: peer.secretAccessKey,
                    pathStyle: true
                ),
                httpClient: client, logger: Logger(label: "test")
            ).createBucket()
        }
        try await withTestApp(S3StorageTests().settings(peer, bucket: bucket)) { services, client in
            #expect(services.blobs.kind == "s3")
            let (browser, user) = try await self.api.signedIn(services, client)
            // 12 MB of originals: more than one 8 MiB part.
            let seeded = try await self.seed(services, user, tasks: 4, perTask: 1, imageBytes: 3_000_000)
            _ = try await services.exports.request(for: user)
            try await services.exports.runPending()
            let export = try #require(try await services.database.dataExports(userID: user.id!).first)
            #expect(export.status == .ready)
            #expect(try await services.blobs.head(try BlobKey(try #require(export.blobKey)))?.size == Int(try #require(export.size)))

            let stored = try #require(services.blobs as? EncryptedBlobStore)
            #expect(try await stored.inner.getData(try BlobKey(try #require(export.blobKey)), range: 0...7) == Data("EASELENC".utf8), "the bucket holds ciphertext")

            // A presigned bucket URL would hand out ciphertext: Easel streams the plaintext itself.
            let download = try await browser.get("/account/privacy/exports/\(export.id!)/download")
            #expect(download.status == .ok)
            #expect(download.headers[.location] == nil)
            let folder = try TemporaryDirectory("easel-export")
            defer { folder.remove() }
            let file = folder.url.appending(path: "s3.zip")
            try Data(buffer: download.body).write(to: file)
            try await self.verifyArchive(file, seeded, user: user)
        }
    }

    /// The memory bound, asserted by construction: the archive is pulled through the ZIP
    /// writer by the blob store, so at any moment at most one chunk (256 KiB) of an original
    /// has been read and not yet handed to storage, whatever the size or number of images.
    @Test("An export of 1,000 images never has more than one 256 KiB chunk in flight, and the ZIP opens with every file")
    func thousandImagesFlatMemory() async throws {
        try await withTestApp { services, client in
            let (_, user) = try await self.api.signedIn(services, client)
            // 270,000 bytes: each original takes two chunks, so holding a whole one would show.
            let seeded = try await self.seed(services, user, tasks: 100, perTask: 10, imageBytes: 270_000)
            #expect(seeded.images.count == 1000)
            _ = try await services.exports.request(for: user)
            let metered = MeteredBlobs(inner: services.blobs, slowSink: true)
            let exports = self.makeExports(services, blobs: metered)
            try await exports.runPending()

            let export = try #require(try await services.database.dataExports(userID: user.id!).first)
            #expect(export.status == .ready)
            let statistics = try #require(exports.statisticsOfLastBuild)
            let chunk = DiskBlobStore.readChunkSize
            #expect(statistics.entries == 8 + 1000 + 2 + 1)
            #expect(statistics.contentBytes >= 1000 * 270_000)
            #expect(statistics.largestInput <= chunk, "no read larger than a chunk")
            #expect(statistics.largestOutput <= chunk + 16 * 1024, "nothing handed to storage larger than a chunk and a header")
            let meter = metered.meter.withLock { $0 }
            #expect(meter.imageBytesRead >= 1000 * 270_000)
            #expect(meter.maximumInFlight <= chunk, "read ahead of storage: at most one chunk (saw \(meter.maximumInFlight) bytes)")
            #expect(meter.largestSinkChunk <= chunk + 16 * 1024)
            try await self.verifyArchive(try await self.archiveFile(services, export), seeded, user: user)
        }
    }
}

/// A blob store in front of another that counts what an export reads and writes: the bytes
/// of originals read since the archive's consumer last received a buffer (what is in flight),
/// and the largest buffer the consumer received.
final class MeteredBlobs: BlobStore, @unchecked Sendable {
    struct Meter {
        var imageBytesRead = 0
        var imageReads = 0
        var inFlight = 0
        var maximumInFlight = 0
        var largestSinkChunk = 0
    }

    let inner: any BlobStore
    let meter = Mutex(Meter())
    let onImageRead: @Sendable (Int) -> Void
    /// The consumer yields a few times per buffer, so a producer that read ahead on its own
    /// would get the chance to (and be caught).
    let slowSink: Bool
    var kind: String { self.inner.kind }

    init(inner: any BlobStore, slowSink: Bool = false, onImageRead: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.inner = inner
        self.slowSink = slowSink
        self.onImageRead = onImageRead
    }

    func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo {
        try await self.inner.put(key, data: data, contentType: contentType)
    }

    func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo {
        let slow = self.slowSink
        let iterator = IteratorBox(body)
        let counted = AsyncThrowingStream<ByteBuffer, any Error>(unfolding: {
            if slow { for _ in 0..<3 { await Task.yield() } }
            guard let chunk = try await iterator.next() else { return nil }
            self.meter.withLock { meter in
                meter.largestSinkChunk = max(meter.largestSinkChunk, chunk.readableBytes)
                meter.inFlight = 0
            }
            return chunk
        })
        return try await self.inner.put(key, body: counted, contentType: contentType)
    }

    func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject {
        var object = try await self.inner.get(key, range: range)
        guard key.rawValue.hasPrefix("images/") else { return object }
        let count = self.meter.withLock { meter in
            meter.imageReads += 1
            return meter.imageReads
        }
        self.onImageRead(count)
        let iterator = IteratorBox(object.body)
        object.body = AsyncThrowingStream(unfolding: {
            guard let chunk = try await iterator.next() else { return nil }
            self.meter.withLock { meter in
                meter.imageBytesRead += chunk.readableBytes
                meter.inFlight += chunk.readableBytes
                meter.maximumInFlight = max(meter.maximumInFlight, meter.inFlight)
            }
            return chunk
        })
        return object
    }

    func head(_ key: BlobKey) async throws -> BlobInfo? { try await self.inner.head(key) }
    func delete(_ key: BlobKey) async throws { try await self.inner.delete(key) }
    func list(prefix: String) async throws -> [BlobInfo] { try await self.inner.list(prefix: prefix) }
    func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL { try await self.inner.expiringURL(for: key, expiresIn: expiresIn) }
    func checkReady() async throws { try await self.inner.checkReady() }
}

/// One stream's iterator, for an `unfolding` closure. `@unchecked Sendable`: the stream calls
/// the closure one call after another.
final class IteratorBox: @unchecked Sendable {
    private var iterator: BlobByteStream.AsyncIterator

    init(_ stream: BlobByteStream) {
        self.iterator = stream.makeAsyncIterator()
    }

    func next() async throws -> ByteBuffer? {
        try await self.iterator.next()
    }
}
