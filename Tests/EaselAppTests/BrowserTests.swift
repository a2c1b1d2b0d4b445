import EaselTestSupport
import Foundation
import Testing

/// The site driven by a real browser (Debian's chromium through selenium), as a person uses it.
@Suite("In a browser", .serialized)
struct BrowserTests {
    @Test("Sign up, confirm from the dev mailbox, sign in, turn on 2FA, sign out, sign in with a code")
    func signUpAndTwoFactor() async throws {
        let folder = try TemporaryDirectory("easel-browser")
        defer { folder.remove() }
        // The browser's Origin must match the public URL, so the port is chosen up front.
        let port = try FreePort.find()
        let server = try await RunningServer.start(
            executable: Checkout.productsFolder.appending(path: "easel"),
            environment: ["EASEL_PORT": String(port), "EASEL_PUBLIC_URL": "http://localhost:\(port)", "EASEL_BACKUP_INTERVAL": "off"],
            in: folder.url
        )
        defer { server.stopBlocking() }
        let shots = folder.url.appending(path: "screenshots")
        try FileManager.default.createDirectory(at: shots, withIntermediateDirectories: true)
        let result = try await ChildProcess.run(
            Checkout.venv.appending(path: "bin/python"),
            [Checkout.root.appending(path: "Tests/browser/signup_2fa.py").path, "http://localhost:\(server.port)", shots.path]
        )
        #expect(result.status == 0, "browser steps:\n\(result.stdout)\n\(result.stderr)\nserver log:\n\(server.log.suffix(3000))")
        #expect(result.stdout.contains("10-signed-in-with-code"))
    }
}
