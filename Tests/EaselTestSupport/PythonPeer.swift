import Foundation

/// Why a test peer could not start or answer.
public struct TestPeerError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A test peer written in Python (`Tests/peers/<script>`), run with the checkout's `.venv`:
/// it announces itself with one JSON line on stdout, then answers one line per command line
/// on stdin, and exits when its stdin closes (so it dies with the test process).
///
/// `@unchecked Sendable`: every use of the process, the pipes and the read buffer holds `lock`.
final class PythonPeer: @unchecked Sendable {
    private let lock = NSLock()
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle
    private let errorLog: URL
    private let label: String
    private var buffered = Data()
    private var inputClosed = false

    /// Starts `Tests/peers/<script>` and returns it with its announcement line.
    static func start(script: String, label: String, timeout: Duration) async throws -> (peer: PythonPeer, announcement: String) {
        let python = Checkout.venv.appending(path: "bin/python")
        let scriptURL = Checkout.root.appending(path: "Tests/peers/\(script)")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestPeerError(
                "the \(label) test peer needs \(python.path), which does not exist. Run `make test` (it creates .venv from "
                    + "Tests/peers/requirements.txt), or: python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt"
            )
        }
        let peer = try PythonPeer(python: python, script: scriptURL, label: label)
        guard let line = await peer.readLine(timeout: timeout) else {
            peer.terminate()
            let detail = peer.errorOutput()
            peer.removeErrorOutput()
            throw TestPeerError("the \(label) test peer (\(scriptURL.path)) did not start within \(timeout). Its error output:\n\(detail)")
        }
        return (peer, line)
    }

    private init(python: URL, script: URL, label: String) throws {
        self.label = label
        self.errorLog = FileManager.default.temporaryDirectory.appending(path: "easel-\(label)-peer-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: self.errorLog.path, contents: nil) else {
            throw TestPeerError("could not create \(self.errorLog.path) for the \(label) peer's error output")
        }
        let errorHandle = try FileHandle(forWritingTo: self.errorLog)
        defer { try? errorHandle.close() }

        let stdin = Pipe()
        let stdout = Pipe()
        self.process = Process()
        self.process.executableURL = python
        self.process.arguments = [script.path]
        var environment = ProcessInfo.processInfo.environment
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

    /// Sends one command line and returns the answer line; a peer silent for `timeout` is ended.
    func request(_ line: String, timeout: Duration = .seconds(30)) async throws -> String {
        let answer = await self.withWatchdog(timeout) {
            guard !self.inputClosed else { return nil }
            do {
                try self.input.write(contentsOf: Data((line + "\n").utf8))
            } catch {
                return nil
            }
            return self.readLineLocked()
        }
        guard let answer else {
            throw TestPeerError("the \(self.label) test peer gave no answer to \(line). Its error output:\n\(self.errorOutput())")
        }
        return answer
    }

    /// Closes stdin (the peer then exits) and waits up to five seconds before ending it.
    func stop() async {
        self.lock.withLock {
            if !self.inputClosed {
                self.inputClosed = true
                try? self.input.close()
            }
        }
        for _ in 0..<100 where self.isRunning {
            try? await Task.sleep(for: .milliseconds(50))
        }
        self.terminate()
        self.removeErrorOutput()
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

    private func removeErrorOutput() {
        try? FileManager.default.removeItem(at: self.errorLog)
    }

    private func readLine(timeout: Duration) async -> String? {
        await self.withWatchdog(timeout) { self.readLineLocked() }
    }

    /// Runs blocking pipe I/O on its own thread; if it takes longer than `timeout`, the peer is
    /// ended, which closes its stdout and so ends the read.
    private func withWatchdog(_ timeout: Duration, _ work: @escaping @Sendable () -> String?) async -> String? {
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            self.terminate()
        }
        defer { watchdog.cancel() }
        return await withCheckedContinuation { continuation in
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
