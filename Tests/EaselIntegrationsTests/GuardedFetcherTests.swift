import EaselTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing

@testable import EaselIntegrations

// MARK: - AddressPolicy

@Suite("GuardedFetcher: AddressPolicy")
struct GuardedFetcherAddressPolicyTests {
    static let forbidden = [
        "127.0.0.1", "127.5.5.5", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
        "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1", "203.0.113.7",
        "::1", "::", "fe80::1", "fc00::1", "fd12::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1", "2001:db8::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "::127.0.0.1",
        "[::1]", "not an address", "",
    ]

    static let allowed = [
        "8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "100.63.255.255",
        "169.255.0.1", "192.169.0.1", "223.255.255.255", "::ffff:8.8.8.8", "64:ff9b::808:808",
        "2001:4860::8888", "2606:4700:4700::1111", "2002:808:808::1", "[2001:4860::8888]",
    ]

    @Test("Refuses loopback, private, link-local, CGNAT, multicast, unspecified, broadcast, reserved and embedded forbidden IPv4", arguments: forbidden)
    func forbiddenAddresses(_ address: String) {
        #expect(AddressPolicy.isForbidden(address), "\(address) should be forbidden")
    }

    @Test("Allows globally reachable unicast addresses, also inside IPv4-mapped, NAT64 and 6to4 forms", arguments: allowed)
    func allowedAddresses(_ address: String) {
        #expect(!AddressPolicy.isForbidden(address), "\(address) should be allowed: \(AddressPolicy.reason(address) ?? "")")
    }

    @Test("Judges SocketAddress values the same as their text, whatever the port")
    func socketAddresses() throws {
        #expect(AddressPolicy.isForbidden(try SocketAddress(ipAddress: "127.0.0.1", port: 443)))
        #expect(AddressPolicy.isForbidden(try SocketAddress(ipAddress: "::ffff:192.168.0.1", port: 80)))
        #expect(AddressPolicy.isForbidden(try SocketAddress(ipAddress: "fe80::1%1", port: 80)))
        #expect(!AddressPolicy.isForbidden(try SocketAddress(ipAddress: "8.8.4.4", port: 443)))
        #expect(!AddressPolicy.isForbidden(try SocketAddress(ipAddress: "2001:4860:4860::8844", port: 443)))
        #expect(AddressPolicy.reason("169.254.169.254")?.contains("metadata") == true)
    }
}

// MARK: - FetchError

@Suite("GuardedFetcher: FetchError")
struct GuardedFetcherErrorTests {
    @Test("Network trouble, 5xx, 408 and 429 are retryable; refusals, limits and other statuses are not")
    func retryable() {
        let retryable: [FetchError.Kind] = [.timeout, .connectionFailed, .resolutionFailed, .httpStatus(500), .httpStatus(503), .httpStatus(429), .httpStatus(408)]
        let permanent: [FetchError.Kind] = [.badURL, .refusedAddress, .tooLarge, .tooManyRedirects, .protocolError, .httpStatus(404), .httpStatus(403), .httpStatus(410), .httpStatus(400)]
        for kind in retryable { #expect(FetchError(kind, "x").isRetryable, "\(kind)") }
        for kind in permanent { #expect(!FetchError(kind, "x").isRetryable, "\(kind)") }
    }

    @Test("The policy keeps allowed hosts lowercased and without IPv6 brackets")
    func policyNormalizesHosts() {
        let policy = FetchPolicy(allowedHosts: ["LocalHost", "[::1]", "127.0.0.1"])
        #expect(policy.allowedHosts == ["localhost", "::1", "127.0.0.1"])
        #expect(FetchPolicy().maximumRedirects == 3)
        #expect(FetchPolicy().timeout == .seconds(60))
    }
}

// MARK: - Against a loopback server

@Suite("GuardedFetcher against a loopback HTTP server")
struct GuardedFetcherTests {
    static let quiet = Logger(label: "easel.test.fetch", factory: { _ in SwiftLogNoOpLogHandler() })

    // Generous: the whole suite runs in parallel on two cores; tests of the timeout pass their own.
    func fetcher(allowing hosts: Set<String> = ["127.0.0.1"], maximumBytes: Int = 1024 * 1024, timeout: Duration = .seconds(60), maximumRedirects: Int = 3) -> GuardedFetcher {
        GuardedFetcher(
            policy: FetchPolicy(maximumBytes: maximumBytes, timeout: timeout, maximumRedirects: maximumRedirects, allowedHosts: hosts),
            logger: Self.quiet
        )
    }

    @Test("Without an allowance, loopback by address or by name is refused before any connection")
    func refusesLoopback() async throws {
        try await LoopbackServer.with { server in
            let fetcher = self.fetcher(allowing: [])
            for url in [
                "http://127.0.0.1:\(server.port)/x", "http://localhost:\(server.port)/x", "http://[::ffff:127.0.0.1]:\(server.port)/x",
                "http://%31%32%37.0.0.1:\(server.port)/x",
            ] {
                let error = try #require(await failure(fetcher, url))
                #expect(error.kind == .refusedAddress, "\(url): \(error)")
                #expect(!error.isRetryable)
            }
            let refused = try #require(await failure(fetcher, "http://localhost:\(server.port)/x"))
            #expect(refused.message.contains("localhost") && refused.message.contains("loopback"), "\(refused)")
            #expect(server.connections == 0)
            #expect(server.requests.isEmpty)
        }
    }

    @Test("Allowing 127.0.0.1 allows that exact host only, not other spellings of it")
    func allowanceIsExact() async throws {
        try await LoopbackServer.with { server in
            let fetcher = self.fetcher(allowing: ["127.0.0.1"])
            for url in ["http://localhost:\(server.port)/ok", "http://127.1:\(server.port)/ok", "http://2130706433:\(server.port)/ok"] {
                let error = try #require(await failure(fetcher, url))
                #expect(error.kind == .refusedAddress, "\(url): \(error)")
            }
            #expect(server.connections == 0)
        }
    }

    @Test("An allowed host is fetched: status, body, content type and final URL")
    func fetchesAllowedHost() async throws {
        try await LoopbackServer.with { server in
            let url = URL(string: "http://127.0.0.1:\(server.port)/ok")!
            let resource = try await self.fetcher().fetch(url)
            #expect(resource.status == 200)
            #expect(String(decoding: resource.data, as: UTF8.self) == "hello, easel")
            #expect(resource.contentType == "image/png")
            #expect(resource.finalURL == url)
            #expect(server.requests.map(\.target) == ["/ok"])
        }
    }

    @Test("An allowed name is resolved and every address tried until one answers")
    func fetchesAllowedName() async throws {
        try await LoopbackServer.with { server in
            // localhost may resolve to ::1 first, where nothing listens.
            let resource = try await self.fetcher(allowing: ["LOCALHOST"]).fetch(URL(string: "http://localhost:\(server.port)/ok")!)
            #expect(String(decoding: resource.data, as: UTF8.self) == "hello, easel")
        }
    }

    @Test("The request line and headers: path and query as given, Host with port, User-Agent, Accept, Connection: close")
    func requestShape() async throws {
        try await LoopbackServer.with { server in
            _ = try await self.fetcher().fetch(URL(string: "http://127.0.0.1:\(server.port)/ok/a%20b?x=1&y=%2F#fragment")!)
            let request = try #require(server.requests.first)
            #expect(request.line == "GET /ok/a%20b?x=1&y=%2F HTTP/1.1")
            #expect(request.header("host") == "127.0.0.1:\(server.port)")
            #expect(request.header("user-agent") == "easel")
            #expect(request.header("accept") == "*/*")
            #expect(request.header("connection") == "close")
        }
    }

    @Test("Chunked and close-delimited bodies are read whole")
    func chunkedAndCloseDelimited() async throws {
        try await LoopbackServer.with { server in
            let chunked = try await self.fetcher().fetch(URL(string: "http://127.0.0.1:\(server.port)/chunked")!)
            #expect(String(decoding: chunked.data, as: UTF8.self) == "hello, chunked world")
            #expect(chunked.contentType == "text/plain")
            let closeDelimited = try await self.fetcher().fetch(URL(string: "http://127.0.0.1:\(server.port)/close-delimited")!)
            #expect(String(decoding: closeDelimited.data, as: UTF8.self) == "until the end")
        }
    }

    @Test("A body of exactly the cap is accepted")
    func bodyAtTheCap() async throws {
        try await LoopbackServer.with { server in
            let resource = try await self.fetcher(maximumBytes: 4000).fetch(URL(string: "http://127.0.0.1:\(server.port)/chunked-4000")!)
            #expect(resource.data.count == 4000)
        }
    }

    @Test("A Content-Length over the cap is refused at once, without waiting for the body")
    func declaredTooLarge() async throws {
        try await LoopbackServer.with { server in
            // The server declares 100 MB, sends a few bytes and then nothing: only refusing on the
            // header ends this before the timeout.
            let error = try #require(await failure(self.fetcher(maximumBytes: 1000, timeout: .seconds(20)), "http://127.0.0.1:\(server.port)/declared-huge"))
            #expect(error.kind == .tooLarge, "\(error)")
            #expect(!error.isRetryable)
        }
    }

    @Test("A chunked body that grows past the cap is refused as soon as it does")
    func streamedTooLarge() async throws {
        try await LoopbackServer.with { server in
            // 5 × 1000 bytes against a cap of 4000, then the server stalls without ending.
            let error = try #require(await failure(self.fetcher(maximumBytes: 4000, timeout: .seconds(20)), "http://127.0.0.1:\(server.port)/chunked-5000-stall"))
            #expect(error.kind == .tooLarge, "\(error)")
        }
    }

    @Test("404 is a permanent httpStatus, 503 and 429 retryable")
    func statuses() async throws {
        try await LoopbackServer.with { server in
            let notFound = try #require(await failure(self.fetcher(), "http://127.0.0.1:\(server.port)/status/404"))
            #expect(notFound.kind == .httpStatus(404))
            #expect(!notFound.isRetryable)
            let unavailable = try #require(await failure(self.fetcher(), "http://127.0.0.1:\(server.port)/status/503"))
            #expect(unavailable.kind == .httpStatus(503))
            #expect(unavailable.isRetryable)
            let limited = try #require(await failure(self.fetcher(), "http://127.0.0.1:\(server.port)/status/429"))
            #expect(limited.kind == .httpStatus(429))
            #expect(limited.isRetryable)
        }
    }

    @Test("A server that never answers ends in a timeout")
    func timeout() async throws {
        try await LoopbackServer.with { server in
            let error = try #require(await failure(self.fetcher(timeout: .seconds(1)), "http://127.0.0.1:\(server.port)/hang"))
            #expect(error.kind == .timeout, "\(error)")
            #expect(error.isRetryable)
            #expect(server.requests.map(\.target) == ["/hang"])
        }
    }

    @Test("A body cut short, and a port where nothing listens, are retryable connection failures")
    func connectionFailures() async throws {
        try await LoopbackServer.with { server in
            let truncated = try #require(await failure(self.fetcher(), "http://127.0.0.1:\(server.port)/truncated"))
            #expect(truncated.kind == .connectionFailed, "\(truncated)")
            #expect(truncated.isRetryable)
        }
        let closedPort = try FreePort.find()
        let refused = try #require(await failure(self.fetcher(), "http://127.0.0.1:\(closedPort)/ok"))
        #expect(refused.kind == .connectionFailed, "\(refused)")
        #expect(refused.isRetryable)
    }

    @Test("A redirect from an allowed host to a loopback name that is not allowed is refused")
    func redirectToForbiddenName() async throws {
        try await LoopbackServer.with { server in
            let to = "http://localhost:\(server.port)/ok"
            let error = try #require(await failure(self.fetcher(), server.redirect(to: to)))
            #expect(error.kind == .refusedAddress, "\(error)")
            #expect(server.requests.map(\.path) == ["/redirect"])
        }
    }

    @Test("A redirect to the cloud metadata address is refused without connecting", arguments: [301, 302, 303, 307, 308])
    func redirectToMetadata(status: Int) async throws {
        try await LoopbackServer.with { server in
            // If it connected, 169.254.169.254 would not answer here: a timeout, not a refusal.
            let error = try #require(await failure(self.fetcher(timeout: .seconds(5)), server.redirect(to: "http://169.254.169.254/latest/meta-data/", status: status)))
            #expect(error.kind == .refusedAddress, "\(error)")
            #expect(error.message.contains("169.254.169.254"))
        }
    }

    @Test("Redirects are followed up to the limit (relative Locations resolved), and one more is refused")
    func redirectLimit() async throws {
        try await LoopbackServer.with { server in
            // /chain/N redirects to chain/N+1 (relative) until /chain/10, which answers.
            let followed = try await self.fetcher(maximumRedirects: 3).fetch(URL(string: "http://127.0.0.1:\(server.port)/chain/7")!)
            #expect(String(decoding: followed.data, as: UTF8.self) == "end of the chain")
            #expect(followed.finalURL.absoluteString == "http://127.0.0.1:\(server.port)/chain/10")

            let error = try #require(await failure(self.fetcher(maximumRedirects: 3), "http://127.0.0.1:\(server.port)/chain/6"))
            #expect(error.kind == .tooManyRedirects, "\(error)")
            #expect(!error.isRetryable)
            #expect(server.requests.map(\.target).suffix(4) == ["/chain/6", "/chain/7", "/chain/8", "/chain/9"])

            let none = try #require(await failure(self.fetcher(maximumRedirects: 0), "http://127.0.0.1:\(server.port)/chain/9"))
            #expect(none.kind == .tooManyRedirects)
        }
    }

    @Test("A relative Location with ../ is resolved against the current URL")
    func relativeRedirect() async throws {
        try await LoopbackServer.with { server in
            let resource = try await self.fetcher().fetch(URL(string: "http://127.0.0.1:\(server.port)/relative/a/b")!)
            #expect(String(decoding: resource.data, as: UTF8.self) == "relative target")
            #expect(resource.finalURL.path == "/relative/target")
        }
    }

    @Test("Redirects to other schemes are refused")
    func redirectToOtherScheme() async throws {
        try await LoopbackServer.with { server in
            for to in ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:11211/_stats"] {
                let error = try #require(await failure(self.fetcher(), server.redirect(to: to)))
                #expect(error.kind == .badURL, "\(to): \(error)")
            }
        }
    }

    @Test("Only http and https, without credentials, are fetched")
    func badURLs() async throws {
        let fetcher = self.fetcher()
        for url in ["ftp://example.com/x.png", "file:///etc/passwd", "data:image/png;base64,AAAA", "http:///nohost", "http://user:secret@127.0.0.1/x", "http://127.0.0.1:0/x", "http://exa%20mple.com/", "http://a%2Fb.example/"] {
            guard let parsed = URL(string: url) else {
                Issue.record("\(url) does not even parse; pick another example")
                continue
            }
            do {
                _ = try await fetcher.fetch(parsed)
                Issue.record("\(url) was fetched")
            } catch {
                #expect(error.kind == .badURL, "\(url): \(error)")
            }
        }
    }
}

// MARK: - HTTPS

@Suite("GuardedFetcher over HTTPS", .serialized)
struct GuardedFetcherTLSTests {
    /// A self-signed certificate for the name "localhost" only (no IP entry), made with openssl.
    static func makeCertificate() async throws -> (certificate: NIOSSLCertificate, key: NIOSSLPrivateKey) {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let cert = folder.url.appending(path: "cert.pem").path
        let key = folder.url.appending(path: "key.pem").path
        let result = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/openssl"),
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert]
        )
        try #require(result.status == 0, "openssl: \(result.stderr)")
        return (try #require(NIOSSLCertificate.fromPEMFile(cert).first), try NIOSSLPrivateKey(file: key, format: .pem))
    }

    func fetcher(trusting certificate: NIOSSLCertificate?, allowing hosts: Set<String>) -> GuardedFetcher {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let certificate { tls.trustRoots = .certificates([certificate]) }
        return GuardedFetcher(
            policy: FetchPolicy(timeout: .seconds(60), allowedHosts: hosts),
            tlsConfiguration: tls,
            logger: GuardedFetcherTests.quiet
        )
    }

    @Test("HTTPS with the certificate verified for the URL's name; an IP literal or an untrusted issuer fails; https never redirects to http")
    func https() async throws {
        let (certificate, key) = try await Self.makeCertificate()
        let serverTLS = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key)))
        try await LoopbackServer.with(tls: serverTLS) { server in
            let fetcher = self.fetcher(trusting: certificate, allowing: ["localhost", "127.0.0.1"])
            let resource = try await fetcher.fetch(URL(string: "https://localhost:\(server.port)/ok")!)
            #expect(String(decoding: resource.data, as: UTF8.self) == "hello, easel")

            // The certificate names localhost, not 127.0.0.1: verification is on.
            let wrongName = try #require(await failure(fetcher, "https://127.0.0.1:\(server.port)/ok"))
            #expect(wrongName.kind == .protocolError, "\(wrongName)")

            // The default trust roots do not know this self-signed certificate.
            let untrusted = try #require(await failure(self.fetcher(trusting: nil, allowing: ["localhost"]), "https://localhost:\(server.port)/ok"))
            #expect(untrusted.kind == .protocolError, "\(untrusted)")

            try await LoopbackServer.with { plain in
                let down = try #require(await failure(fetcher, "https://localhost:\(server.port)/redirect?to=" + LoopbackServer.escape("http://localhost:\(plain.port)/ok")))
                #expect(down.kind == .badURL, "\(down)")
                #expect(plain.connections == 0)
            }
        }
    }
}

// MARK: - Helpers

/// The error `fetch` threw, or nil (and an issue) when it succeeded.
private func failure(_ fetcher: GuardedFetcher, _ url: String, sourceLocation: SourceLocation = #_sourceLocation) async -> FetchError? {
    guard let parsed = URL(string: url) else {
        Issue.record("not a URL: \(url)", sourceLocation: sourceLocation)
        return nil
    }
    do {
        let resource = try await fetcher.fetch(parsed)
        Issue.record("\(url) was fetched (\(resource.status), \(resource.data.count) bytes)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// A request as the loopback server saw it.
struct RecordedRequest: Sendable {
    var line: String
    var headers: [(name: String, value: String)]

    var target: String {
        let parts = self.line.split(separator: " ")
        return parts.count == 3 ? String(parts[1]) : self.line
    }

    var path: String {
        String(self.target.prefix { $0 != "?" })
    }

    func header(_ name: String) -> String? {
        self.headers.first { $0.name.lowercased() == name }?.value
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 (optionally TLS) that writes canned raw answers, so tests
/// control every byte: chunking, missing lengths, lies about lengths, stalls. It records each
/// connection and request.
final class LoopbackServer: Sendable {
    /// Bytes to write, and whether to close afterwards (false: stall with the connection open).
    struct Reply: Sendable {
        var bytes: [UInt8]
        var close: Bool
    }

    private struct State {
        var connections = 0
        var requests: [RecordedRequest] = []
        var children: [any Channel] = []
    }

    private let state = Mutex(State())
    private let listener = Mutex<(any Channel)?>(nil)

    var port: Int { self.listener.withLock { $0?.localAddress?.port ?? 0 } }
    var connections: Int { self.state.withLock { $0.connections } }
    var requests: [RecordedRequest] { self.state.withLock { $0.requests } }

    /// Runs `body` with a fresh server, stopped afterwards.
    static func with(tls: NIOSSLContext? = nil, _ body: (LoopbackServer) async throws -> Void) async throws {
        let server = LoopbackServer()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                server.state.withLock { $0.children.append(child) }
                return child.eventLoop.makeCompletedFuture {
                    if let tls {
                        try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try child.pipeline.syncOperations.addHandler(RawHTTPHandler(server: server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        server.listener.withLock { $0 = channel }
        do {
            try await body(server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func stop() async {
        let listener = self.listener.withLock { $0 }
        try? await listener?.close()
        for child in self.state.withLock({ $0.children }) {
            try? await child.close()
        }
    }

    fileprivate func connected() {
        self.state.withLock { $0.connections += 1 }
    }

    fileprivate func received(_ request: RecordedRequest) {
        self.state.withLock { $0.requests.append(request) }
    }

    func redirect(to location: String, status: Int = 302) -> String {
        "http://127.0.0.1:\(self.port)/redirect?status=\(status)&to=" + Self.escape(location)
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }

    static func answer(_ status: String, headers: [String] = [], body: String, length: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status)\r\n"
        for header in headers { head += header + "\r\n" }
        if length { head += "Content-Length: \(body.utf8.count)\r\n" }
        return Array((head + "\r\n" + body).utf8)
    }

    static func chunked(_ chunks: [String], end: Bool = true) -> [UInt8] {
        var text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        for chunk in chunks { text += String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n" }
        if end { text += "0\r\n\r\n" }
        return Array(text.utf8)
    }

    /// The canned answers, by path.
    static func route(_ request: RecordedRequest) -> Reply {
        let components = URLComponents(string: request.target)
        let path = components?.path ?? request.target
        let query = Dictionary((components?.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { first, _ in first }
        switch path {
        case "/ok", "/ok/a%20b", "/ok/a b":
            return Reply(bytes: self.answer("200 OK", headers: ["Content-Type: image/png"], body: "hello, easel"), close: true)
        case "/chunked":
            return Reply(bytes: self.chunked(["hello, ", "chunked ", "world"]), close: true)
        case "/chunked-4000":
            return Reply(bytes: self.chunked(Array(repeating: String(repeating: "a", count: 1000), count: 4)), close: true)
        case "/chunked-5000-stall":
            return Reply(bytes: self.chunked(Array(repeating: String(repeating: "a", count: 1000), count: 5), end: false), close: false)
        case "/close-delimited":
            return Reply(bytes: self.answer("200 OK", headers: ["Content-Type: text/plain", "Connection: close"], body: "until the end", length: false), close: true)
        case "/declared-huge":
            return Reply(bytes: self.answer("200 OK", headers: ["Content-Length: 100000000"], body: "just a few bytes", length: false), close: false)
        case "/truncated":
            return Reply(bytes: self.answer("200 OK", headers: ["Content-Length: 100"], body: "only ten b", length: false), close: true)
        case "/hang":
            return Reply(bytes: [], close: false)
        case "/redirect":
            let status = query["status"] ?? "302"
            return Reply(bytes: self.answer("\(status) Moved", headers: ["Location: \(query["to"] ?? "/")"], body: ""), close: true)
        case "/relative/a/b":
            return Reply(bytes: self.answer("302 Found", headers: ["Location: ../target"], body: ""), close: true)
        case "/relative/target":
            return Reply(bytes: self.answer("200 OK", body: "relative target"), close: true)
        default:
            if path.hasPrefix("/status/"), let code = Int(path.dropFirst("/status/".count)) {
                return Reply(bytes: self.answer("\(code) Status", body: "status \(code)"), close: true)
            }
            if path.hasPrefix("/chain/"), let step = Int(path.dropFirst("/chain/".count)) {
                if step >= 10 {
                    return Reply(bytes: self.answer("200 OK", body: "end of the chain"), close: true)
                }
                return Reply(bytes: self.answer("307 Temporary Redirect", headers: ["Location: \(step + 1)"], body: ""), close: true)
            }
            return Reply(bytes: self.answer("404 Not Found", body: "no route for \(path)"), close: true)
        }
    }
}

/// Reads one request head, records it and writes the route's canned reply.
private final class RawHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: LoopbackServer
    private var received: [UInt8] = []
    private var answered = false

    init(server: LoopbackServer) {
        self.server = server
    }

    func channelActive(context: ChannelHandlerContext) {
        self.server.connected()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.answered else { return }
        self.received.append(contentsOf: self.unwrapInboundIn(data).readableBytesView)
        let text = String(decoding: self.received, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return }
        self.answered = true
        let lines = text[..<end.lowerBound].components(separatedBy: "\r\n")
        let headers = lines.dropFirst().compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let request = RecordedRequest(line: lines.first ?? "", headers: headers)
        self.server.received(request)
        let reply = LoopbackServer.route(request)
        guard !reply.bytes.isEmpty else { return }
        let written = context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(bytes: reply.bytes)))
        if reply.close {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
