import AsyncHTTPClient
import EaselTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

@Suite("HTTPS", .serialized)
struct TLSTests {
    let easel = Checkout.productsFolder.appending(path: "easel")

    /// A self-signed certificate for 127.0.0.1 made with the openssl command.
    func makeCertificate(in folder: URL) async throws -> (cert: String, key: String) {
        let cert = folder.appending(path: "cert.pem").path
        let key = folder.appending(path: "key.pem").path
        let result = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/openssl"),
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
        )
        #expect(result.status == 0, "openssl: \(result.stderr)")
        return (cert, key)
    }

    func freePort() throws -> Int {
        try FreePort.find()
    }

    @Test("With a certificate, easel serves HTTPS with HSTS, and the redirect listener sends plain HTTP to the public URL")
    func servesHTTPS() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let (cert, key) = try await self.makeCertificate(in: folder.url)
        let redirectPort = try self.freePort()
        let server = try await RunningServer.start(
            executable: self.easel,
            environment: [
                "EASEL_TLS_CERT_FILE": cert, "EASEL_TLS_KEY_FILE": key, "EASEL_TLS_REDIRECT_PORT": String(redirectPort),
                "EASEL_PUBLIC_URL": "https://img.example.org",
            ],
            in: folder.url
        )
        defer { server.stopBlocking() }

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { _ = client.shutdown() }

        let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(server.port)/healthz"), timeout: .seconds(30))
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "strict-transport-security")?.contains("max-age=") == true)

        let plain = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(redirectPort)/static/app.css?v=1"), timeout: .seconds(30))
        #expect(plain.status == .permanentRedirect)
        #expect(plain.headers.first(name: "location") == "https://img.example.org/static/app.css?v=1")
    }
}

