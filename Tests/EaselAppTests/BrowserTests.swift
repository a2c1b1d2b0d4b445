import EaselTestSupport
import Foundation
import Testing

/// The site driven by a real browser (Debian's chromium through selenium), as a person uses it.
@Suite("In a browser", .serialized)
struct BrowserTests {
    /// Starts `easel` on a free port in a fresh folder with `environment` added, runs
    /// Tests/browser/`script` against it, expects it to succeed, and returns what it printed.
    func run(_ script: String, environment: [String: String] = [:], in folder: TemporaryDirectory) async throws -> String {
        // The browser's Origin must match the public URL, so the port is chosen up front.
        let port = try FreePort.find()
        let server = try await RunningServer.start(
            executable: Checkout.productsFolder.appending(path: "easel"),
            environment: ["EASEL_PORT": String(port), "EASEL_PUBLIC_URL": "http://localhost:\(port)", "EASEL_BACKUP_INTERVAL": "off"]
                .merging(environment) { _, new in new },
            in: folder.url
        )
        defer { server.stopBlocking() }
        let shots = folder.url.appending(path: "screenshots")
        try FileManager.default.createDirectory(at: shots, withIntermediateDirectories: true)
        let result = try await ChildProcess.run(
            Checkout.venv.appending(path: "bin/python"),
            [Checkout.root.appending(path: "Tests/browser/\(script)").path, "http://localhost:\(server.port)", shots.path]
        )
        #expect(result.status == 0, "browser steps:\n\(result.stdout)\n\(result.stderr)\nserver log:\n\(server.log.suffix(3000))")
        return result.stdout
    }

    @Test("Sign up, confirm from the dev mailbox, sign in, turn on 2FA, sign out, sign in with a code")
    func signUpAndTwoFactor() async throws {
        let folder = try TemporaryDirectory("easel-browser")
        defer { folder.remove() }
        let printed = try await self.run("signup_2fa.py", in: folder)
        #expect(printed.contains("10-signed-in-with-code"))
    }

    @Test("Sign up, generate with the demo provider, watch the progress, see the image in the gallery, delete it")
    func generateWithDemo() async throws {
        let folder = try TemporaryDirectory("easel-browser")
        defer { folder.remove() }
        // Long enough for the progress bar to be seen moving.
        let printed = try await self.run("generate.py", environment: ["EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "2500"], in: folder)
        #expect(printed.contains("08-empty-gallery"))
        // Nothing is left of the deleted image on disk: only the folders it was in.
        let images = folder.url.appending(path: "data/blobs/images")
        let files = FileManager.default.enumerator(at: images, includingPropertiesForKeys: [.isRegularFileKey])?.compactMap { $0 as? URL }
            .filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true } ?? []
        #expect(files.isEmpty, "\(files)")
    }

    @Test("Cookie banner: decline, still gone after a reload, accept from Cookie choices; Export everything: watch it, download the ZIP, read the mail; the Privacy page fits a phone")
    func cookieChoicesAndExport() async throws {
        let folder = try TemporaryDirectory("easel-browser")
        defer { folder.remove() }
        let printed = try await self.run(
            "privacy.py",
            environment: [
                // The banner shows only while visits are counted.
                "EASEL_ANALYTICS": "on",
                // One quick picture, so the export holds an original.
                "EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "500",
            ],
            in: folder
        )
        #expect(printed.contains("03-still-declined-after-reload"))
        #expect(printed.contains("13-export-downloaded"))
        #expect(printed.contains("15-privacy-on-a-phone"))
    }
}
