import AsyncHTTPClient
import EaselCore
import EaselStore
import EaselTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Tests of the built `easel` executable, run as a separate process the way an operator runs it.
@Suite("The easel binary", .serialized)
struct BinaryTests {
    let easel = Checkout.productsFolder.appending(path: "easel")

    func get(_ url: String, headers: [(String, String)] = []) async throws -> (status: Int, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 10 << 20)
        return (Int(response.status.code), response.headers, String(buffer: body))
    }

    @Test("EASEL_PORT=abc easel serve exits with code 2 and one line naming EASEL_PORT")
    func badPortExitsWithCode2() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let result = try await ChildProcess.run(self.easel, ["serve"], environment: ["EASEL_PORT": "abc"], in: folder.url)
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains("EASEL_PORT") == true)
        // Nothing was created for a configuration that was refused.
        #expect(!FileManager.default.fileExists(atPath: folder.url.appending(path: "data").path))
    }

    @Test("easel config check prints the configuration with secrets masked, or exits 2")
    func configCheck() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let secret = String(repeating: "z", count: 40)
        let ok = try await ChildProcess.run(self.easel, ["config", "check", "--port", "9123"], environment: ["EASEL_SECRET_KEY": secret], in: folder.url)
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("EASEL_PORT=9123"))
        #expect(ok.stdout.contains("EASEL_SECRET_KEY=********"))
        #expect(!ok.stdout.contains(secret))
        let bad = try await ChildProcess.run(self.easel, ["config", "check"], environment: ["EASEL_STORAGE": "tape"], in: folder.url)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("EASEL_STORAGE"))
    }

    @Test("The binary alone in an empty folder serves the home page and its static files, in WAL mode, and stops cleanly on SIGTERM")
    func binaryAloneServesTheSite() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let copy = folder.url.appending(path: "easel")
        try FileManager.default.copyItem(at: self.easel, to: copy)
        let server = try await RunningServer.start(executable: copy, environment: [:], in: folder.url)
        let base = "http://127.0.0.1:\(server.port)"

        let health = try await self.get(base + "/healthz")
        #expect(health.status == 200)
        #expect(health.body == #"{"status":"ok"}"#)
        let home = try await self.get(base + "/")
        #expect(home.status == 200)
        #expect(home.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(home.body.contains("<h1>"))
        let css = try await self.get(base + "/static/app.css")
        #expect(css.status == 200)
        let etag = try #require(css.headers.first(name: "etag"))
        let again = try await self.get(base + "/static/app.css", headers: [("If-None-Match", etag)])
        #expect(again.status == 304)

        #expect(await server.stop() == 0, "graceful shutdown exits 0:\n\(server.log)")
        #expect(server.log.contains("stopped"))
        let database = try AppDatabase.open(path: folder.url.appending(path: "data/easel.db").path)
        #expect(try database.journalMode() == "wal")
        // The generated secret key is private to its owner.
        let mode = try FileManager.default.attributesOfItem(atPath: folder.url.appending(path: "data/secret.key").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test("A second server on the same data folder is refused")
    func dataFolderIsLocked() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let server = try await RunningServer.start(executable: self.easel, environment: [:], in: folder.url)
        defer { server.stopBlocking() }
        let second = try await ChildProcess.run(self.easel, ["serve"], environment: ["EASEL_PORT": "0"], in: folder.url)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another easel process is using this data folder"))
        let restore = try await ChildProcess.run(self.easel, ["restore", "/dev/null"], in: folder.url)
        #expect(restore.status == 1)
        #expect(restore.stderr.contains("stop it first"))
    }

    @Test("easel backup then easel restore round-trips; a corrupted backup is refused with a clear message")
    func backupAndRestore() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // Some history to back up.
        let run = try await ChildProcess.run(self.easel, ["jobs", "run", "database-upkeep"], in: folder.url)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("database-upkeep succeeded"))

        let backup = try await ChildProcess.run(self.easel, ["backup"], in: folder.url)
        #expect(backup.status == 0, "\(backup.stderr)")
        let listed = try await ChildProcess.run(self.easel, ["backup", "--list"], in: folder.url)
        let name = try #require(listed.stdout.split(separator: "\n").first?.split(separator: "\t").first.map(String.init))
        #expect(name.hasPrefix("backups/easel-"))

        // More history after the backup, which the restore must take away.
        _ = try await ChildProcess.run(self.easel, ["jobs", "run", "database-upkeep"], in: folder.url)
        let jobsBefore = try await ChildProcess.run(self.easel, ["jobs", "list"], in: folder.url)
        #expect(jobsBefore.status == 0)

        let restored = try await ChildProcess.run(self.easel, ["restore", name], in: folder.url)
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(restored.stdout.contains("restored"))
        let database = try AppDatabase.open(path: folder.url.appending(path: "data/easel.db").path)
        // Only the upkeep run from before the backup is left.
        #expect(try await database.recentJobRuns(job: "database-upkeep").count == 1)

        // A damaged copy of a backup is refused, and the database is left as it was.
        let stored = folder.url.appending(path: "data/blobs").appending(path: name)
        var bytes = try Data(contentsOf: stored)
        #expect(bytes.count > 4096)
        for i in 100..<bytes.count { bytes[i] = 0x5A }
        let damaged = folder.url.appending(path: "damaged.db")
        try bytes.write(to: damaged)
        let refused = try await ChildProcess.run(self.easel, ["restore", damaged.path], in: folder.url)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("restore refused"))
        #expect(refused.stderr.contains("nothing was changed"))
        #expect(refused.stderr.split(separator: "\n").count == 1)

        let missing = try await ChildProcess.run(self.easel, ["restore", "no-such-backup.db"], in: folder.url)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no stored backup of that name"))
    }

    @Test("easel version and easel migrate work without a server")
    func versionAndMigrate() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let version = try await ChildProcess.run(self.easel, ["version"], in: folder.url)
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("easel "))
        let migrate = try await ChildProcess.run(self.easel, ["migrate"], in: folder.url)
        #expect(migrate.status == 0)
        #expect(migrate.stdout.contains("is up to date"))
        #expect(migrate.stdout.contains("applied"))
    }
}

@Suite("easel admin create", .serialized)
struct AdminCreateTests {
    let easel = Checkout.productsFolder.appending(path: "easel")

    @Test("easel admin create makes a confirmed admin with the password from a file, or prints a reset link")
    func adminCreate() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let passwordFile = folder.url.appending(path: "password")
        try "a long admin passphrase\n".write(to: passwordFile, atomically: true, encoding: .utf8)
        let created = try await ChildProcess.run(self.easel, ["admin", "create", "--email", "Root@Example.org", "--password-file", passwordFile.path], in: folder.url)
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout.contains("created admin"))
        let database = try AppDatabase.open(path: folder.url.appending(path: "data/easel.db").path)
        let user = try #require(try await database.user(email: "root@example.org"))
        #expect(user.role == .admin)
        #expect(user.isVerified)
        #expect(await PasswordHasher().verify("a long admin passphrase", hash: try #require(user.passwordHash)))

        let noPassword = try await ChildProcess.run(self.easel, ["admin", "create", "--email", "second@example.org"], in: folder.url)
        #expect(noPassword.status == 0, "\(noPassword.stderr)")
        #expect(noPassword.stdout.contains("http://localhost:8080/reset-password?token="))

        let bad = try await ChildProcess.run(self.easel, ["admin", "create", "--email", "not-an-email"], in: folder.url)
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("not an email address"))
    }
}
