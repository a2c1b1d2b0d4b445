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

    private let peer: PythonPeer
    private let logger: Logger

    /// Starts the peer and waits (up to `timeout`) for it to say where it listens.
    public static func start(timeout: Duration = .seconds(90), logger: Logger = Logger(label: "easel.tests.s3-peer")) async throws -> S3Peer {
        let (peer, line) = try await PythonPeer.start(script: "s3_peer.py", label: "S3", timeout: timeout)
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(line.utf8)),
            let endpoint = URL(string: announcement.endpoint)
        else {
            await peer.stop()
            throw TestPeerError("the S3 test peer announced something unexpected: \(line)")
        }
        logger.info("S3 peer started", metadata: ["endpoint": .string(endpoint.absoluteString)])
        return S3Peer(endpoint: endpoint, announcement: announcement, peer: peer, logger: logger)
    }

    private init(endpoint: URL, announcement: Announcement, peer: PythonPeer, logger: Logger) {
        self.endpoint = endpoint
        self.accessKeyID = announcement.accessKeyID
        self.secretAccessKey = announcement.secretAccessKey
        self.region = announcement.region
        self.peer = peer
        self.logger = logger
    }

    /// Makes the next `count` requests for `bucket` (path-style) fail with `status` and the S3
    /// error `code`, as a busy or broken server would; for testing retries.
    public func failNextRequests(bucket: String, count: Int, status: Int = 503, code: String = "SlowDown") async throws {
        let command = FailNextCommand(command: "fail_next", bucket: bucket, count: count, status: status, code: code)
        let line = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        let answer = try await self.peer.request(line)
        guard let reply = try? JSONDecoder().decode(CommandReply.self, from: Data(answer.utf8)), reply.ok else {
            throw TestPeerError("the S3 test peer refused the fault command: \(answer)")
        }
    }

    /// Closes the peer's stdin (it then exits) and waits for it, ending it after five seconds.
    public func stop() async {
        await self.peer.stop()
        self.logger.info("S3 peer stopped", metadata: ["endpoint": .string(self.endpoint.absoluteString)])
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
