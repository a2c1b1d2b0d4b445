import AsyncHTTPClient
import EaselStore
import EaselTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The promise of the task queue: `kill -9` in mid-flight loses nothing and charges nothing twice.
@Suite("Crash recovery of the task queue", .serialized)
struct CrashRecoveryTests {
    let easel = Checkout.productsFolder.appending(path: "easel")

    @Test("kill -9 with 50 tasks in flight, then a restart: every task ends, credits verify, no blob without a row nor a row without a blob")
    func killNineMidFlight() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let passwordFile = folder.url.appending(path: "password")
        try Data("a long enough password 1\n".utf8).write(to: passwordFile)
        let admin = try await ChildProcess.run(self.easel, ["admin", "create", "--email", "ops@example.org", "--password-file", passwordFile.path], in: folder.url)
        #expect(admin.status == 0, "\(admin.stderr)")
        let keys = try await ChildProcess.run(self.easel, ["keys", "create", "--email", "ops@example.org", "--scopes", "generate,read"], in: folder.url)
        let key = try #require(keys.stdout.split(separator: "\n").last.map(String.init))
        let grant = try await ChildProcess.run(self.easel, ["credits", "grant", "--email", "ops@example.org", "--amount", "1000", "--reason", "crash test"], in: folder.url)
        #expect(grant.status == 0, "\(grant.stderr)")

        let limits = [
            "EASEL_SIZES": "256x256", "EASEL_WORKERS": "8", "EASEL_MAX_ACTIVE_TASKS": "1000", "EASEL_SUBMIT_RATE": "0",
            "EASEL_SUBMIT_RATE_IP": "0", "EASEL_API_KEY_RATE": "0", "EASEL_PORT": "0",
        ]
        var environment = limits
        environment["EASEL_DEMO_LATENCY_MS"] = "1500"
        let first = try await RunningServer.start(executable: self.easel, environment: environment, in: folder.url)
        var submitted = 0
        for index in 0..<50 {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(first.port)/api/v1/generations")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"prompt":"crash test \#(index)","size":"256x256"}"#))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            if response.status.code == 202 { submitted += 1 }
            _ = try await response.body.collect(upTo: 1 << 20)
        }
        #expect(submitted == 50)
        // Some finish, some run, most wait: then the process dies without any chance to clean up.
        try await Task.sleep(for: .milliseconds(1800))
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()

        let database = try AppDatabase.open(path: folder.url.appending(path: "data/easel.db").path)
        let before = try await database.generationTasks(userID: nil, limit: 100)
        #expect(before.count == 50)
        #expect(before.contains { !$0.status.isFinished }, "the kill came while tasks were in flight")

        environment["EASEL_DEMO_LATENCY_MS"] = "0"
        let second = try await RunningServer.start(executable: self.easel, environment: environment, in: folder.url)
        var tasks: [GenerationTask] = []
        for _ in 0..<600 {
            tasks = try await database.generationTasks(userID: nil, limit: 100)
            if tasks.allSatisfy({ $0.status.isFinished }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        await second.stop()
        #expect(tasks.count == 50)
        #expect(tasks.allSatisfy { $0.status == .succeeded || $0.status == .failed }, "\(tasks.map(\.status))")

        let verify = try await ChildProcess.run(self.easel, ["credits", "verify"], in: folder.url)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

        // Every row has its files, and every file under images/ belongs to a row.
        let blobs = folder.url.appending(path: "data/blobs")
        let referenced = try await database.referencedGenerationBlobKeys()
        for key in referenced {
            #expect(FileManager.default.fileExists(atPath: blobs.appending(path: key).path), "row without blob: \(key)")
        }
        let onDisk = Self.files(under: blobs.appending(path: "images"), relativeTo: blobs)
        #expect(!onDisk.isEmpty)
        for file in onDisk {
            #expect(referenced.contains(file), "blob without row: \(file)")
        }
        let charged = tasks.reduce(0) { $0 + $1.creditsCharged }
        #expect(try await database.creditBalance(userID: tasks[0].userID) == 1000 - charged)
    }

    static func files(under folder: URL, relativeTo root: URL) -> [String] {
        guard let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var files: [String] = []
        for case let url as URL in enumerator where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let path = url.standardizedFileURL.path
            let prefix = root.standardizedFileURL.path + "/"
            // Temporary files of an interrupted write are not objects.
            if url.lastPathComponent.hasPrefix(".") { continue }
            files.append(path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path)
        }
        return files
    }
}
