import Foundation
import Logging

/// A real S3 server for tests: moto on 127.0.0.1 with SigV4 checking on, run by
/// `Tests/peers/s3_peer.py` with the repository's `.venv` (which `make test` creates).
///
/// Start one per test suite and stop it when the suite is done; if the test process dies, the
/// peer sees its stdin close and exits too.
public final class S3Peer: Sendable {
    public let endpoint: URL
    public let accessKeyID: String
    public let secretAccessKey: String
    public let region: String

    private let process: PeerProcess
    private let logger: Logger

    /// Starts the peer and waits (up to `timeout`) for it to say where it listens.
    public static func start(
        repositoryRoot: URL = S3Peer.repositoryRoot(),
        timeout: Duration = .seconds(90),
        logger: Logger = Logger(label: "easel.tests.s3-peer")
    ) async throws -> S3Peer {
        // `make test` names the virtual environment in EASEL_TEST_VENV; by default it is <repo>/.venv.
        let venv =
            ProcessInfo.processInfo.environment["EASEL_TEST_VENV"].map { URL(fileURLWithPath: $0) }
            ?? repositoryRoot.appending(path: ".venv")
        let python = venv.appending(path: "bin/python")
        let script = repositoryRoot.appending(path: "Tests/peers/s3_peer.py")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw S3PeerError(
                "the S3 test peer needs \(python.path), which does not exist. Run `make test` (it creates .venv from "
                    + "Tests/peers/requirements.txt), or: python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt"
            )
        }

        let process = try PeerProcess(python: python, script: script)
        // If the peer hangs before answering, ending it closes its stdout and so ends the wait.
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            process.terminate()
        }
        let firstLine = await process.readLine()
        watchdog.cancel()

        guard let firstLine, let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(firstLine.utf8)),
            let endpoint = URL(string: announcement.endpoint)
        else {
            process.terminate()
            let detail = process.errorOutput()
            process.removeErrorOutput()
            throw S3PeerError("the S3 test peer (\(script.path)) did not start within \(timeout). Its error output:\n\(detail)")
        }

        logger.info("S3 peer started", metadata: ["endpoint": .string(endpoint.absoluteString)])
        return S3Peer(
            endpoint: endpoint,
            accessKeyID: announcement.accessKeyID,
            secretAccessKey: announcement.secretAccessKey,
            region: announcement.region,
            process: process,
            logger: logger
        )
    }

    private init(endpoint: URL, accessKeyID: String, secretAccessKey: String, region: String, process: PeerProcess, logger: Logger) {
        self.endpoint = endpoint
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.region = region
        self.process = process
        self.logger = logger
    }

    /// Makes the next `count` requests for `bucket` (path-style) fail with `status` and the S3
    /// error `code`, as a busy or broken server would; for testing retries.
    public func failNextRequests(bucket: String, count: Int, status: Int = 503, code: String = "SlowDown") async throws {
        let command = FailNextCommand(command: "fail_next", bucket: bucket, count: count, status: status, code: code)
        let line = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        let answer = await self.process.request(line)
        guard let answer, let reply = try? JSONDecoder().decode(CommandReply.self, from: Data(answer.utf8)), reply.ok else {
            throw S3PeerError("the S3 test peer refused the fault command: \(answer ?? "no answer")")
        }
    }

    /// Closes the peer's stdin (it then exits) and waits for it, ending it after five seconds.
    public func stop() async {
        self.process.closeInput()
        for _ in 0..<100 where self.process.isRunning {
            try? await Task.sleep(for: .milliseconds(50))
        }
        self.process.terminate()
        self.process.removeErrorOutput()
        self.logger.info("S3 peer stopped", metadata: ["endpoint": .string(self.endpoint.absoluteString)])
    }

    /// The repository holding this file: three levels above Tests/EaselTestSupport/S3Peer.swift.
    public static func repositoryRoot(filePath: String = #filePath) -> URL {
        URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private struct Announcement: Decodable {
        var endpoint: String
        var accessKeyID: String
        var secretAccessKey: String
        var region: String

        enum CodingKeys: String, CodingKey {
            case endpoint
            case accessKeyID = "access_key_id"
            case secretAccessKey = "secret_access_key"
            case region
        }
    }

    private struct FailNextCommand: Encodable {
        var command: String
        var bucket: String
        var count: Int
        var status: Int
        var code: String
    }

    private struct CommandReply: Decodable {
        var ok: Bool
    }
}

/// The peer's process and pipes: commands go in on stdin as JSON lines, answers come out on
/// stdout as JSON lines, and stderr goes to a temporary file shown when the peer fails to start.
///
/// `@unchecked Sendable`: every use of the process, the pipes and the read buffer holds `lock`.
private final class PeerProcess: @unchecked Sendable {
    private let lock = NSLock()
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle
    private let errorLog: URL
    private var buffered = Data()
    private var inputClosed = false

    init(python: URL, script: URL) throws {
        self.errorLog = FileManager.default.temporaryDirectory.appending(path: "easel-s3-peer-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: self.errorLog.path, contents: nil) else {
            throw S3PeerError("could not create \(self.errorLog.path) for the S3 peer's error output")
        }
        let errorHandle = try FileHandle(forWritingTo: self.errorLog)
        defer { try? errorHandle.close() }

        let stdin = Pipe()
        let stdout = Pipe()
        self.process = Process()
        self.process.executableURL = python
        self.process.arguments = [script.path]
        var environment = ProcessInfo.processInfo.environment
        environment["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        environment["PYTHONUNBUFFERED"] = "1"
        self.process.environment = environment
        self.process.standardInput = stdin
        self.process.standardOutput = stdout
        self.process.standardError = errorHandle
        self.input = stdin.fileHandleForWriting
        self.output = stdout.fileHandleForReading
        try self.process.run()
    }

    var isRunning: Bool {
        self.lock.withLock { self.process.isRunning }
    }

    /// Reads one line off the cooperative pool, since the read blocks.
    func readLine() async -> String? {
        await self.onThread { self.readLineLocked() }
    }

    /// Sends one command line and reads its answer; one command at a time.
    func request(_ line: String) async -> String? {
        await self.onThread {
            guard !self.inputClosed else { return nil }
            do {
                try self.input.write(contentsOf: Data((line + "\n").utf8))
            } catch {
                return nil
            }
            return self.readLineLocked()
        }
    }

    func closeInput() {
        self.lock.withLock {
            guard !self.inputClosed else { return }
            self.inputClosed = true
            try? self.input.close()
        }
    }

    /// Not under `lock`: it must work while a blocked read holds the lock.
    func terminate() {
        if self.process.isRunning {
            self.process.terminate()
        }
    }

    func errorOutput() -> String {
        guard let data = try? Data(contentsOf: self.errorLog) else { return "(none)" }
        let text = String(decoding: data.suffix(4_000), as: UTF8.self)
        return text.isEmpty ? "(none)" : text
    }

    func removeErrorOutput() {
        try? FileManager.default.removeItem(at: self.errorLog)
    }

    private func onThread(_ work: @escaping @Sendable () -> String?) async -> String? {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let result = self.lock.withLock { work() }
                continuation.resume(returning: result)
            }
        }
    }

    /// Called with `lock` held.
    private func readLineLocked() -> String? {
        while true {
            if let newline = self.buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: self.buffered[self.buffered.startIndex..<newline], as: UTF8.self)
                self.buffered = Data(self.buffered[self.buffered.index(after: newline)...])
                return line
            }
            let data = self.output.availableData
            if data.isEmpty { return nil }
            self.buffered.append(data)
        }
    }
}

public struct S3PeerError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
