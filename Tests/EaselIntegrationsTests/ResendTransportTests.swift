import AsyncHTTPClient
import EaselTestSupport
import Foundation
import Testing

@testable import EaselIntegrations

/// The Resend API peer of the suite marked `.resendPeer`, started before it and stopped after.
enum ResendPeerScope {
    @TaskLocal static var peer: ResendPeer?
}

extension Trait where Self == PeerScope<ResendPeer> {
    static var resendPeer: Self { Self(ResendPeerScope.$peer, start: { try await ResendPeer.start() }, stop: { await $0.stop() }) }
}

@Suite("ResendTransport against a stand-in of Resend's API", .resendPeer)
struct ResendTransportTests {
    var peer: ResendPeer { ResendPeerScope.peer! }

    /// A message with its own recipient and Message-ID, so parallel tests find their own requests.
    static func message(html: String? = "<p>Hallo <b>Zoë</b></p>") -> MailMessage {
        let unique = UUID().uuidString.lowercased()
        return MailMessage(
            from: MailAddress("noreply@easel.test", name: "Easel Stüdio"),
            to: [MailAddress("zoe+\(unique)@example.com", name: "Zoë Ünal")],
            replyTo: MailAddress("help@easel.test", name: "Easel, Help"),
            subject: "Grüße 🎨",
            text: "Hallo Zoë,\nyour images are ready.",
            html: html,
            messageID: "<\(unique)@easel.test>",
            date: Date(timeIntervalSince1970: 1_234_567_890)
        )
    }

    /// Runs `body` with a transport (and a fresh HTTP client, shut down after).
    func withTransport(
        apiKey: String? = nil,
        baseURL: String? = nil,
        timeout: Duration = .seconds(10),
        _ body: (ResendTransport) async throws -> Void
    ) async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let transport = ResendTransport(
            configuration: ResendConfiguration(apiKey: apiKey ?? self.peer.apiKey, baseURL: baseURL ?? self.peer.baseURL + "/", timeout: timeout),
            httpClient: client
        )
        do {
            try await body(transport)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func requests(for message: MailMessage) async throws -> [ResendRequest] {
        try await self.peer.requests().filter { $0.json?.headers?["Message-ID"] == message.messageID }
    }

    @Test("a send is one POST /emails with the bearer key, an idempotency key and the documented JSON body")
    func success() async throws {
        let message = Self.message()

        try await self.withTransport { transport in
            try await transport.send(message)
        }

        let requests = try await self.requests(for: message)
        #expect(requests.count == 1)
        let request = try #require(requests.first)
        #expect(request.method == "POST")
        #expect(request.path == "/emails")
        #expect(request.status == 200)
        #expect(request.headers["authorization"] == "Bearer \(self.peer.apiKey)")
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.headers["idempotency-key"] == ResendTransport.idempotencyKey(for: message.messageID))
        #expect(
            request.json
                == ResendEmailBody(
                    from: "Easel Stüdio <noreply@easel.test>",
                    to: ["Zoë Ünal <\(message.to[0].email)>"],
                    subject: "Grüße 🎨",
                    text: message.text,
                    html: message.html,
                    replyTo: "\"Easel, Help\" <help@easel.test>",
                    headers: ["Message-ID": message.messageID]
                )
        )
    }

    @Test("a message without HTML sends no html field")
    func textOnly() async throws {
        let message = Self.message(html: nil)

        try await self.withTransport { transport in
            try await transport.send(message)
        }

        let request = try #require(try await self.requests(for: message).first)
        #expect(request.json?.html == nil)
        #expect(request.json?.text == message.text)
    }

    @Test("a retried send carries the same Idempotency-Key and Resend sends it once")
    func retryIsIdempotent() async throws {
        let message = Self.message()

        try await self.withTransport { transport in
            try await transport.send(message)
            try await transport.send(message)
        }

        let keys = try await self.requests(for: message).map { $0.headers["idempotency-key"] }
        #expect(keys.count == 2)
        #expect(Set(keys).count == 1)
        #expect(keys.first??.isEmpty == false)
        let emails = try await self.peer.emails().filter { $0.json.headers?["Message-ID"] == message.messageID }
        #expect(emails.count == 1)
    }

    @Test("different messages get different idempotency keys")
    func keysDifferPerMessage() {
        #expect(ResendTransport.idempotencyKey(for: "<a@easel.test>") != ResendTransport.idempotencyKey(for: "<b@easel.test>"))
        #expect(ResendTransport.idempotencyKey(for: "<a@easel.test>") == ResendTransport.idempotencyKey(for: "<a@easel.test>"))
    }

    @Test("429 and 5xx answers are temporary failures, and the retry after them delivers once", arguments: [429, 500, 503])
    func temporaryFailures(status: Int) async throws {
        let message = Self.message()
        try await self.peer.failNextRequests(to: message.to[0].email, status: status)

        try await self.withTransport { transport in
            let error = await #expect(throws: MailDeliveryError.self) {
                try await transport.send(message)
            }
            #expect(error?.isPermanent == false)
            #expect(error?.description.contains("\(status)") == true, "\(error?.description ?? "")")

            try await transport.send(message)
        }

        let requests = try await self.requests(for: message)
        #expect(requests.map(\.status) == [status, 200])
        #expect(Set(requests.map { $0.headers["idempotency-key"] }).count == 1)
    }

    @Test("422 is a permanent failure carrying Resend's message")
    func validationError() async throws {
        let message = Self.message()
        try await self.peer.failNextRequests(to: message.to[0].email, status: 422)

        try await self.withTransport { transport in
            let error = await #expect(throws: MailDeliveryError.self) {
                try await transport.send(message)
            }
            #expect(error?.isPermanent == true)
            #expect(error?.description.contains("validation_error") == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("cannot receive mail") == true)
        }
    }

    @Test("a key Resend refuses is a temporary failure naming EASEL_RESEND_API_KEY, and the key is not shown")
    func badKey() async throws {
        let message = Self.message()

        try await self.withTransport(apiKey: "re_wrong_key") { transport in
            let error = await #expect(throws: MailDeliveryError.self) {
                try await transport.send(message)
            }
            #expect(error?.isPermanent == false)
            #expect(error?.description.contains("EASEL_RESEND_API_KEY") == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("re_wrong_key") == false)
        }
        #expect(try await self.requests(for: message).map(\.status) == [403])
    }

    @Test("an answer slower than the timeout is a temporary failure, without hanging")
    func slowAnswer() async throws {
        let message = Self.message()
        try await self.peer.failNextRequests(to: message.to[0].email, status: 500, delay: .seconds(30))

        try await self.withTransport(timeout: .seconds(1)) { transport in
            let error = await #expect(throws: MailDeliveryError.self) {
                try await transport.send(message)
            }
            #expect(error?.isPermanent == false)
            #expect(error?.description.contains("did not answer within") == true, "\(error?.description ?? "")")
        }
    }

    @Test("an API that cannot be reached is a temporary failure naming the address")
    func unreachable() async throws {
        // AsyncHTTPClient retries a refused connection until the deadline, so keep it short.
        try await self.withTransport(baseURL: "http://127.0.0.1:1", timeout: .seconds(2)) { transport in
            let error = await #expect(throws: MailDeliveryError.self) {
                try await transport.send(Self.message())
            }
            #expect(error?.isPermanent == false)
            #expect(error?.description.contains("http://127.0.0.1:1/emails") == true, "\(error?.description ?? "")")
        }
    }
}
