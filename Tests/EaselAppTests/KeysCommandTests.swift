import AsyncHTTPClient
import EaselStore
import EaselTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `easel keys create`, run as the built binary the way an operator runs it.
@Suite("easel keys create")
struct KeysCommandTests {
    let easel = Checkout.productsFolder.appending(path: "easel")

    /// A confirmed account in the data folder's database, written through the store.
    func makeAccount(in folder: URL, email: String) async throws -> AppDatabase {
        let data = folder.appending(path: "data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let database = try AppDatabase.open(path: data.appending(path: "easel.db").path)
        let user = try await database.createAccount(
            NewAccount(email: email, passwordHash: nil, displayName: "Ada", language: nil, termsVersion: "test"),
            verification: NewEmailToken(
                purpose: .verifyEmail,
                tokenHash: Data("link".utf8),
                codeHash: Data("code".utf8),
                expiresAt: Date().addingTimeInterval(3600)
            ),
            mail: MailDraft(
                kind: "verify_email",
                toEmail: email,
                toName: nil,
                subject: "Confirm",
                text: "Confirm",
                html: nil,
                messageID: "<test@easel>"
            )
        )
        _ = try #require(try await database.verifyEmail(userID: user.id!, codeHash: Data("code".utf8), maxAttempts: 5))
        return database
    }

    @Test("prints the key alone on its last line; the key works against the running server with its scopes")
    func createsAWorkingKey() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try await self.makeAccount(in: folder.url, email: "ada@example.org")

        let result = try await ChildProcess.run(
            self.easel,
            ["keys", "create", "--email", "ADA@example.org", "--scopes", "generate,read", "--name", "ci", "--expires-days", "30"],
            in: folder.url
        )
        #expect(result.status == 0, "\(result.stderr)")
        let lastLine = try #require(result.stdout.split(separator: "\n").last.map(String.init))
        #expect(lastLine.wholeMatch(of: /easel_[a-z0-9]{8}_[A-Za-z0-9]{43}/) != nil, "last line: \(lastLine)")

        let prefix = String(lastLine.prefix("easel_".count + 8))
        let (stored, owner) = try #require(try await database.apiKey(prefix: prefix))
        #expect(owner.email == "ada@example.org")
        #expect(stored.name == "ci")
        #expect(stored.scopes == "generate,read")
        #expect(stored.secretHash.count == 32)
        #expect(stored.secretHash != Data(lastLine.utf8))
        let days = try #require(stored.expiresAt).timeIntervalSince(stored.createdAt) / 86400
        #expect(abs(days - 30) < 0.01)

        let server = try await RunningServer.start(executable: self.easel, environment: [:], in: folder.url)
        defer { server.stopBlocking() }
        var me = HTTPClientRequest(url: "http://127.0.0.1:\(server.port)/api/v1/me")
        me.headers.add(name: "Authorization", value: "Bearer \(lastLine)")
        let response = try await HTTPClient.shared.execute(me, timeout: .seconds(30))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status.code == 200, "\(body)")
        #expect(body.contains(#""email":"ada@example.org""#))

        var patch = HTTPClientRequest(url: "http://127.0.0.1:\(server.port)/api/v1/me")
        patch.method = .PATCH
        patch.headers.add(name: "Authorization", value: "Bearer \(lastLine)")
        patch.headers.add(name: "Content-Type", value: "application/json")
        patch.body = .bytes(ByteBuffer(string: #"{"theme":"dark"}"#))
        let refused = try await HTTPClient.shared.execute(patch, timeout: .seconds(30))
        let refusal = String(buffer: try await refused.body.collect(upTo: 1 << 20))
        #expect(refused.status.code == 403, "no account scope")
        #expect(refusal.contains("insufficient_scope"))
        #expect(await server.stop() == 0)
    }

    @Test("an unknown email or scope ends with exit code 1 and one line on stderr")
    func errors() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        _ = try await self.makeAccount(in: folder.url, email: "ada@example.org")

        let unknownEmail = try await ChildProcess.run(
            self.easel,
            ["keys", "create", "--email", "nobody@example.org", "--scopes", "read"],
            in: folder.url
        )
        #expect(unknownEmail.status == 1)
        #expect(unknownEmail.stdout.isEmpty)
        #expect(unknownEmail.stderr.split(separator: "\n").count == 1, "\(unknownEmail.stderr)")
        #expect(unknownEmail.stderr.contains("nobody@example.org"))

        let badScope = try await ChildProcess.run(
            self.easel,
            ["keys", "create", "--email", "ada@example.org", "--scopes", "read,paint"],
            in: folder.url
        )
        #expect(badScope.status == 1)
        #expect(badScope.stdout.isEmpty)
        #expect(badScope.stderr.split(separator: "\n").count == 1, "\(badScope.stderr)")
        #expect(badScope.stderr.contains("\"paint\""))

        let badExpiry = try await ChildProcess.run(
            self.easel,
            ["keys", "create", "--email", "ada@example.org", "--scopes", "read", "--expires-days", "0"],
            in: folder.url
        )
        #expect(badExpiry.status == 1)
        #expect(badExpiry.stderr.split(separator: "\n").count == 1, "\(badExpiry.stderr)")
    }
}
