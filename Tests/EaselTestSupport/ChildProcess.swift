import Foundation

/// Runs a program and collects what it printed, for tests of the `easel` binary itself.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs blocking work on a GCD thread, so waiting for a child process never occupies one of the
/// few threads of Swift's cooperative pool (on 2 cores, that would stall every other test).
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try work() })
        }
    }
}

public enum ChildProcess {
    /// Runs `executable` to completion.
    public static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], in folder: URL? = nil) async throws -> ProcessResult {
        try await offThePool { try self.runBlocking(executable, arguments, environment: environment, in: folder) }
    }

    static func runBlocking(_ executable: URL, _ arguments: [String], environment: [String: String], in folder: URL?) throws -> ProcessResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = Self.baseEnvironment().merging(environment) { _, new in new }
        if let folder { process.currentDirectoryURL = folder }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read before waiting so a chatty child cannot fill the pipe and stall.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// The environment without EASEL_ settings of the developer's shell.
    public static func baseEnvironment() -> [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("EASEL_") }
    }
}

/// A long-running `easel serve` started for a test; `stop()` sends SIGTERM and waits.
public final class RunningServer: @unchecked Sendable {
    public let process: Process
    public let port: Int
    private let errorPipe: Pipe
    private let lock = NSLock()
    private var collected = Data()

    /// Starts `executable serve` with EASEL_PORT=0 and waits for its "listening" log line.
    public static func start(executable: URL, environment: [String: String], in folder: URL, timeout: TimeInterval = 60) async throws -> RunningServer {
        try await offThePool { try RunningServer(executable: executable, environment: environment, in: folder, timeout: timeout) }
    }

    init(executable: URL, environment: [String: String], in folder: URL, timeout: TimeInterval) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = ["serve"]
        process.environment = ChildProcess.baseEnvironment().merging(["EASEL_PORT": "0", "EASEL_LOG_FORMAT": "text"]) { _, new in new }.merging(environment) { _, new in new }
        process.currentDirectoryURL = folder
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        self.process = process
        self.errorPipe = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var port: Int?
        var startLog = Data()
        while port == nil, Date() < deadline, process.isRunning {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { Thread.sleep(forTimeInterval: 0.05); continue }
            startLog.append(chunk)
            port = Self.listeningPort(in: String(decoding: startLog, as: UTF8.self))
        }
        guard let port else {
            process.terminate()
            throw ServerFailedToStart(log: String(decoding: startLog, as: UTF8.self))
        }
        self.port = port
        self.collected = startLog
        // Keep draining the log so the child never blocks on a full pipe.
        err.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            self?.lock.withLock { self?.collected.append(data) }
        }
    }

    public var log: String { String(decoding: self.lock.withLock { self.collected }, as: UTF8.self) }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    public func stop() async -> Int32 {
        (try? await offThePool { self.stopBlocking() }) ?? -1
    }

    /// The blocking form, for `defer` blocks.
    @discardableResult
    public func stopBlocking() -> Int32 {
        if self.process.isRunning { self.process.terminate() }
        self.process.waitUntilExit()
        self.errorPipe.fileHandleForReading.readabilityHandler = nil
        return self.process.terminationStatus
    }

    static func listeningPort(in log: String) -> Int? {
        // "listening address=http://127.0.0.1:PORT …"
        for line in log.split(separator: "\n") where line.contains("listening") {
            if let range = line.range(of: "address=http"), let colon = line[range.upperBound...].split(separator: " ").first?.split(separator: ":").last {
                return Int(colon)
            }
        }
        return nil
    }

    public struct ServerFailedToStart: Error, CustomStringConvertible {
        public var log: String
        public var description: String { "easel serve did not start:\n\(self.log)" }
    }
}
