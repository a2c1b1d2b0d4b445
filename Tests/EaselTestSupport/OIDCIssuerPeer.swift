import Foundation
import Logging

/// A real OpenID Connect issuer for tests: Flask + joserfc on 127.0.0.1, run by
/// `Tests/peers/oidc_issuer.py` with the repository's `.venv` (which `make test` creates).
///
/// It publishes a discovery document and an RSA key set, auto-approves a test user at its
/// authorization endpoint (redirecting to `redirectURI` with `code` and `state`: read them from
/// the Location header with redirects turned off), and checks client credentials, the
/// redirect URI, the PKCE verifier and single use at its token endpoint. Commands on its stdin
/// make the next ID token misbehave, rotate its keys, change its discovery document or stall it.
///
/// Start one per test and stop it when the test is done; if the test process dies, the peer
/// sees its stdin close and exits too.
public final class OIDCIssuerPeer: Sendable {
    public let issuer: URL
    public let clientID: String
    public let clientSecret: String
    /// The only redirect URI the peer accepts for `clientID`.
    public let redirectURI: URL
    /// The kid of the key the peer signs with at start.
    public let initialKeyID: String

    /// Who the peer's authorization endpoint signs in (unless a login_hint names another email).
    public static let testSubject = "248289761001"
    public static let testEmail = "ada@example.test"
    public static let testName = "Ada Lovelace"
    public static let testPicture = URL(string: "https://images.example.test/ada.png")!

    private let process: OIDCPeerProcess
    private let logger: Logger

    /// What the next ID token does wrong.
    public enum TokenFault: String, Sendable, CaseIterable {
        /// `aud` is another client.
        case wrongAudience = "wrong_audience"
        /// `aud` is [client, another service] and `azp` is the client: acceptable.
        case extraAudience = "extra_audience"
        /// `aud` is [client, another service] and `azp` is the other service.
        case extraAudienceWrongPresenter = "extra_audience_wrong_azp"
        case wrongIssuer = "wrong_issuer"
        /// `iss` without its scheme, the way Google's "accounts.google.com" looks.
        case shortIssuer = "google_short_issuer"
        /// `exp` ten minutes ago.
        case expired
        /// `iat` an hour from now.
        case issuedInFuture = "issued_in_future"
        case wrongNonce = "wrong_nonce"
        case missingNonce = "missing_nonce"
        /// Signed by a key whose kid is not in the key set.
        case unknownKeyID = "unknown_kid"
        /// Signed by a key not in the key set, under the current key's kid.
        case foreignKey = "foreign_key"
        /// HS256 with the RSA public key (PEM) as the HMAC secret, under the current kid.
        case hs256
        /// `alg: none`, no signature.
        case algNone = "alg_none"
        /// RS256 by the current key, but without a kid in the header.
        case noKeyID = "no_kid"
        case emailUnverified = "email_unverified"
        /// `email_verified` as the string "true".
        case emailVerifiedAsString = "email_verified_string"
    }

    /// How many requests each endpoint has answered.
    public struct RequestCounts: Sendable, Equatable, Decodable {
        public var discovery: Int
        public var jwks: Int
        public var authorize: Int
        public var token: Int
    }

    /// Starts the peer and waits (up to `timeout`) for it to say where it listens.
    public static func start(
        repositoryRoot: URL = Checkout.root,
        timeout: Duration = .seconds(90),
        logger: Logger = Logger(label: "easel.tests.oidc-issuer")
    ) async throws -> OIDCIssuerPeer {
        let python = Checkout.venv.appending(path: "bin/python")
        let script = repositoryRoot.appending(path: "Tests/peers/oidc_issuer.py")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw OIDCIssuerPeerError(
                "the OIDC test issuer needs \(python.path), which does not exist. Run `make test` (it creates .venv from "
                    + "Tests/peers/requirements.txt), or: python3 -m venv .venv && .venv/bin/pip install -r Tests/peers/requirements.txt"
            )
        }

        let process = try OIDCPeerProcess(python: python, script: script)
        // If the peer hangs before answering, ending it closes its stdout and so ends the wait.
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            process.terminate()
        }
        let firstLine = await process.readLine()
        watchdog.cancel()

        guard let firstLine, let announcement = try? JSONDecoder().decode(Announcement.self, from: Data(firstLine.utf8)),
            let issuer = URL(string: announcement.issuer), let redirectURI = URL(string: announcement.redirectURI)
        else {
            process.terminate()
            let detail = process.errorOutput()
            process.removeErrorOutput()
            throw OIDCIssuerPeerError("the OIDC test issuer (\(script.path)) did not start within \(timeout). Its error output:\n\(detail)")
        }

        logger.info("OIDC issuer peer started", metadata: ["issuer": .string(issuer.absoluteString)])
        return OIDCIssuerPeer(
            issuer: issuer,
            clientID: announcement.clientID,
            clientSecret: announcement.clientSecret,
            redirectURI: redirectURI,
            initialKeyID: announcement.kid,
            process: process,
            logger: logger
        )
    }

    private init(
        issuer: URL,
        clientID: String,
        clientSecret: String,
        redirectURI: URL,
        initialKeyID: String,
        process: OIDCPeerProcess,
        logger: Logger
    ) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.initialKeyID = initialKeyID
        self.process = process
        self.logger = logger
    }

    /// Makes the next ID token the token endpoint issues misbehave in one way.
    public func misbehaveOnNextToken(_ fault: TokenFault) async throws {
        _ = try await self.command(["command": "next_token", "fault": fault.rawValue])
    }

    /// Signs with a new key under a new kid from now on; returns that kid. The old key stays
    /// in the key set unless `keepingOld` is false.
    @discardableResult
    public func rotateKeys(keepingOld: Bool = true) async throws -> String {
        let reply = try await self.command(["command": "rotate_keys", "keep_old": keepingOld])
        guard let kid = reply["kid"] as? String else {
            throw OIDCIssuerPeerError("the OIDC test issuer did not name its new key")
        }
        return kid
    }

    /// Overrides fields of the discovery document (`nil` removes one); `[:]` restores it.
    public func setDiscoveryFields(_ fields: [String: String?]) async throws {
        let json = fields.mapValues { value -> Any in value ?? NSNull() }
        _ = try await self.command(["command": "set_discovery", "fields": json])
    }

    /// Sets `token_endpoint_auth_methods_supported`; the token endpoint then accepts only these.
    public func setTokenEndpointAuthMethods(_ methods: [String]) async throws {
        _ = try await self.command(["command": "set_auth_methods", "methods": methods])
    }

    /// The Cache-Control max-age of the key set's answers.
    public func setKeySetMaxAge(seconds: Int) async throws {
        _ = try await self.command(["command": "set_jwks_max_age", "seconds": seconds])
    }

    /// Makes the next request for `path` (e.g. "/.well-known/openid-configuration") wait
    /// `seconds` before it is answered.
    public func stallNextRequest(path: String, seconds: Double) async throws {
        _ = try await self.command(["command": "stall_next", "path": path, "seconds": seconds])
    }

    public func requestCounts() async throws -> RequestCounts {
        let reply = try await self.command(["command": "stats"])
        let data = try JSONSerialization.data(withJSONObject: reply)
        return try JSONDecoder().decode(RequestCounts.self, from: data)
    }

    /// Closes the peer's stdin (it then exits) and waits for it, ending it after five seconds.
    public func stop() async {
        self.process.closeInput()
        for _ in 0..<100 where self.process.isRunning {
            try? await Task.sleep(for: .milliseconds(50))
        }
        self.process.terminate()
        self.process.removeErrorOutput()
        self.logger.info("OIDC issuer peer stopped", metadata: ["issuer": .string(self.issuer.absoluteString)])
    }

    /// Sends one JSON command line and returns the peer's JSON answer, which must say ok.
    private func command(_ command: [String: Any]) async throws -> [String: Any] {
        let line = String(decoding: try JSONSerialization.data(withJSONObject: command), as: UTF8.self)
        let answer = await self.process.request(line)
        guard let answer, let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any],
            object["ok"] as? Bool == true
        else {
            throw OIDCIssuerPeerError("the OIDC test issuer refused \(line): \(answer ?? "no answer")")
        }
        return object
    }

    private struct Announcement: Decodable {
        var issuer: String
        var clientID: String
        var clientSecret: String
        var redirectURI: String
        var kid: String

        enum CodingKeys: String, CodingKey {
            case issuer
            case clientID = "client_id"
            case clientSecret = "client_secret"
            case redirectURI = "redirect_uri"
            case kid
        }
    }
}

/// The peer's process and pipes: commands go in on stdin as JSON lines, answers come out on
/// stdout as JSON lines, and stderr goes to a temporary file shown when the peer fails to start.
///
/// `@unchecked Sendable`: every use of the process, the pipes and the read buffer holds `lock`.
private final class OIDCPeerProcess: @unchecked Sendable {
    private let lock = NSLock()
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle
    private let errorLog: URL
    private var buffered = Data()
    private var inputClosed = false

    init(python: URL, script: URL) throws {
        self.errorLog = FileManager.default.temporaryDirectory.appending(path: "easel-oidc-issuer-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: self.errorLog.path, contents: nil) else {
            throw OIDCIssuerPeerError("could not create \(self.errorLog.path) for the OIDC test issuer's error output")
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

public struct OIDCIssuerPeerError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
