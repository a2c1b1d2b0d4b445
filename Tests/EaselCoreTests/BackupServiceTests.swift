import EaselBlobs
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import Logging
import Testing

@testable import EaselCore

@Suite("Backups")
struct BackupServiceTests {
    @Test("Backups go to the blob store, are valid databases, and only the newest N are kept")
    func backupsAreStoredAndPruned() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try AppDatabase.open(path: folder.url.appending(path: "easel.db").path)
        let run = try #require(try await database.recordJobStarted("marker", trigger: .manual))
        try await database.recordJobFinished(run, outcome: .succeeded, error: nil)
        let blobs = try DiskBlobStore(root: folder.url.appending(path: "blobs"), urlSigner: BlobURLSigner(baseURL: URL(string: "http://localhost")!, secret: Data(repeating: 1, count: 32)))
        let service = BackupService(database: database, blobs: blobs, workFolder: folder.url.appending(path: "tmp"), keep: 2, logger: Logger(label: "test"))

        let base = Date(timeIntervalSince1970: 1_800_000_000)
        for hour in 0..<3 {
            try await service.backUp(now: base.addingTimeInterval(Double(hour) * 3600))
        }
        let kept = try await service.list()
        #expect(kept.map(\.key.rawValue) == ["backups/easel-20270115T100000Z.db", "backups/easel-20270115T090000Z.db"])

        // A stored backup downloads as a verified database holding the data.
        let copy = folder.url.appending(path: "copy.db")
        try await service.download(kept[0].key, to: copy)
        let facts = try AppDatabase.verifyFile(at: copy)
        #expect(facts.appliedMigrations == AppDatabase.knownMigrations)
        let jobs = try await DatabaseQueue(path: copy.path).read { db in try String.fetchAll(db, sql: "SELECT job FROM job_run") }
        #expect(jobs == ["marker"])
        // The local snapshot is removed once stored.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.url.appending(path: "tmp").path).isEmpty)
    }
}
