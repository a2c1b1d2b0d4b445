import EaselTestSupport
import Foundation
import NIOCore
import Testing

@testable import EaselIntegrations

/// The SMTP peer (aiosmtpd) of the suite marked `.smtpPeer`, started before it and stopped after.
enum SMTPPeerScope {
    @TaskLocal static var peer: SMTPPeer?
}

extension Trait where Self == PeerScope<SMTPPeer> {
    static var smtpPeer: Self { Self(SMTPPeerScope.$peer, start: { try await SMTPPeer.start() }, stop: { await $0.stop() }) }
}

@Suite("SMTPTransport against a real SMTP server", .smtpPeer)
struct SMTPTransportTests {
    var peer: SMTPPeer { SMTPPeerScope.peer! }

    /// A message with a Message-ID of its own, so parallel tests find their own delivery.
    static func message(
        subject: String = "Grüße aus Easel — 你好 🎨",
        text: String = "Hallo Zoë,\nyour 3 images are ready.\n\n— Easel",
        html: String? = "<p>Hallo <b>Zoë</b>,</p>\n<p>your 3 images are <a href=\"https://easel.test/g?a=1&b=2\">ready</a>.</p>",
        to: [MailAddress] = [MailAddress("zoe@example.com", name: "Zoë Ünal")]
    ) -> MailMessage {
        MailMessage(
            from: MailAddress("noreply@easel.test", name: "Easel Stüdio"),
            to: to,
            replyTo: MailAddress("help@easel.test", name: "Easel Help"),
            subject: subject,
            text: text,
            html: html,
            messageID: "<\(UUID().uuidString.lowercased())@easel.test>",
            date: Date(timeIntervalSince1970: 1_234_567_890)
        )
    }

    func transport(
        port: Int,
        security: SMTPConfiguration.Security = .startTLS,
        password: String? = nil,
        withCredentials: Bool = true,
        trustTestCA: Bool = true,
        tlsServerName: String? = "localhost",
        commandTimeout: Duration = .seconds(10)
    ) -> SMTPTransport {
        SMTPTransport(
            configuration: SMTPConfiguration(
                host: self.peer.host,
                port: port,
                security: security,
                username: withCredentials ? self.peer.username : nil,
                password: withCredentials ? (password ?? self.peer.password) : nil,
                tlsServerName: tlsServerName,
                caCertificateFile: trustTestCA ? self.peer.caFile : nil,
                connectTimeout: .seconds(5),
                commandTimeout: commandTimeout,
                totalTimeout: .seconds(30)
            )
        )
    }

    func delivered(_ message: MailMessage) async throws -> DeliveredMail {
        let found = try await self.peer.messages(withID: message.messageID)
        #expect(found.count == 1, "\(found.count) deliveries of \(message.messageID)")
        return try #require(found.first)
    }

    /// What a mail reader sees must be what was sent.
    func expectReadable(_ mail: DeliveredMail, as message: MailMessage) {
        #expect(mail.parsed.subject == message.subject)
        #expect(mail.parsed.from == "Easel Stüdio <noreply@easel.test>")
        #expect(mail.parsed.to == "Zoë Ünal <zoe@example.com>")
        #expect(mail.parsed.replyTo == "Easel Help <help@easel.test>")
        #expect(mail.parsed.messageID == message.messageID)
        #expect(mail.parsed.date == "Fri, 13 Feb 2009 23:31:30 +0000")
        #expect(mail.parsed.contentType == "multipart/alternative")
        #expect(mail.parsed.parts.map(\.contentType) == ["text/plain", "text/html"])
        #expect(mail.parsed.parts.map(\.content) == [message.text, message.html])
        #expect(mail.parsed.parts.allSatisfy { $0.charset == "utf-8" })
        #expect(mail.parsed.defects.isEmpty, "\(mail.parsed.defects)")
        #expect(mail.longestLine <= 78)
    }

    @Test("STARTTLS and AUTH PLAIN deliver a multipart/alternative message a mail reader decodes exactly")
    func startTLSWithPlainAuth() async throws {
        let message = Self.message()

        try await self.transport(port: self.peer.startTLSPort).send(message)

        let mail = try await self.delivered(message)
        #expect(mail.server == "starttls")
        #expect(mail.authMechanism == "PLAIN")
        #expect(mail.authLogin == self.peer.username)
        #expect(mail.mailFrom == "noreply@easel.test")
        #expect(mail.rcptTos == ["zoe@example.com"])
        self.expectReadable(mail, as: message)
    }

    @Test("a server offering only AUTH LOGIN gets AUTH LOGIN")
    func startTLSWithLoginAuth() async throws {
        let message = Self.message()

        try await self.transport(port: self.peer.startTLSLoginOnlyPort).send(message)

        let mail = try await self.delivered(message)
        #expect(mail.server == "starttls_login")
        #expect(mail.authMechanism == "LOGIN")
        #expect(mail.authLogin == self.peer.username)
        self.expectReadable(mail, as: message)
    }

    @Test("implicit TLS (port 465 style) delivers")
    func implicitTLS() async throws {
        let message = Self.message()

        try await self.transport(port: self.peer.implicitTLSPort, security: .tls).send(message)

        let mail = try await self.delivered(message)
        #expect(mail.server == "tls")
        #expect(mail.authMechanism == "PLAIN")
        self.expectReadable(mail, as: message)
    }

    @Test("a wrong password is a temporary failure that names the settings, and nothing is delivered")
    func wrongPassword() async throws {
        let message = Self.message()

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.startTLSPort, password: "not the password").send(message)
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("EASEL_SMTP_USERNAME") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("EASEL_SMTP_PASSWORD") == true)
        #expect(error?.description.contains("535") == true)
        #expect(error?.description.contains("not the password") == false, "the password never appears")
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    @Test("STARTTLS mode refuses a server that does not offer STARTTLS, sending nothing")
    func startTLSRequired() async throws {
        let message = Self.message()

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.plainPort, security: .startTLS).send(message)
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("does not offer STARTTLS") == true, "\(error?.description ?? "")")
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    @Test("a certificate from an authority that is not trusted fails with a TLS message naming EASEL_SMTP_CA_FILE", arguments: [false, true])
    func untrustedCertificate(implicitTLS: Bool) async throws {
        let message = Self.message()
        let transport = self.transport(
            port: implicitTLS ? self.peer.implicitTLSPort : self.peer.startTLSPort,
            security: implicitTLS ? .tls : .startTLS,
            trustTestCA: false
        )

        let error = await #expect(throws: MailDeliveryError.self) {
            try await transport.send(message)
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("certificate is not trusted") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("EASEL_SMTP_CA_FILE") == true)
        #expect(error?.description.contains("\(self.peer.host):") == true)
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    /// The peer's certificate is for "localhost" only; with no name, the IP address is checked.
    @Test("a trusted certificate made out for another name is refused", arguments: ["mail.other.example", nil])
    func wrongServerName(_ name: String?) async throws {
        let message = Self.message()

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.startTLSPort, tlsServerName: name).send(message)
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("certificate is not trusted for \"\(name ?? self.peer.host)\"") == true, "\(error?.description ?? "")")
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    @Test("a recipient refused with 550 is a permanent failure, and the other recipients get nothing either")
    func rejectedRecipient() async throws {
        let message = Self.message(to: [
            MailAddress("zoe@example.com", name: "Zoë Ünal"),
            MailAddress("nobody@\(self.peer.rejectedDomain)"),
        ])

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.startTLSPort).send(message)
        }

        #expect(error?.isPermanent == true)
        #expect(error?.description.contains("nobody@\(self.peer.rejectedDomain): 550") == true, "\(error?.description ?? "")")
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    @Test("lines starting with a dot survive (dot-stuffing), over a plain connection")
    func dotStuffing() async throws {
        let text = ".\n.hidden line\n..two dots\nmiddle . dot\n."
        let message = Self.message(text: text, html: nil)

        try await self.transport(port: self.peer.plainPort, security: .none, withCredentials: false).send(message)

        let mail = try await self.delivered(message)
        #expect(mail.server == "plain")
        #expect(mail.authLogin == nil)
        #expect(mail.parsed.contentType == "text/plain")
        #expect(mail.parsed.parts.map(\.content) == [text])
    }

    @Test("a line break in the subject does not add a header")
    func headerInjection() async throws {
        let message = Self.message(subject: "Hello\r\nBcc: victim@example.com\r\n\r\nforged body")

        try await self.transport(port: self.peer.startTLSPort).send(message)

        let mail = try await self.delivered(message)
        #expect(!mail.parsed.headerNames.contains { $0.lowercased() == "bcc" }, "\(mail.parsed.headerNames)")
        #expect(mail.parsed.subject == "Hello  Bcc: victim@example.com    forged body")
        #expect(mail.rcptTos == ["zoe@example.com"])
        #expect(mail.parsed.parts.map(\.content) == [message.text, message.html])
    }

    @Test("very long lines and non-ASCII text arrive intact, on lines of at most 78 characters")
    func longLines() async throws {
        let text = String(repeating: "Ünïcödé and a very long line without breaks; ", count: 100) + "\nend "
        let message = Self.message(text: text, html: "<p>" + String(repeating: "€", count: 3_000) + "</p>")

        try await self.transport(port: self.peer.startTLSPort).send(message)

        let mail = try await self.delivered(message)
        #expect(mail.parsed.parts.map(\.content) == [message.text, message.html])
        #expect(mail.longestLine <= 78)
    }

    @Test("nothing listening is a temporary failure that names host and port, without hanging")
    func nothingListening() async throws {
        let port = self.peer.unusedPort

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: port).send(Self.message())
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("\(self.peer.host):\(port)") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("EASEL_SMTP_HOST") == true)
    }

    @Test("a server that accepts and never answers times out as a temporary failure")
    func silentServer() async throws {

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.silentPort, commandTimeout: .seconds(1)).send(Self.message())
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("did not answer the greeting") == true, "\(error?.description ?? "")")
    }

    @Test("the overall limit ends a delivery even when each command would still have time")
    func overallDeadline() async throws {
        let transport = SMTPTransport(
            configuration: SMTPConfiguration(
                host: self.peer.host,
                port: self.peer.silentPort,
                commandTimeout: .seconds(30),
                totalTimeout: .seconds(1)
            )
        )

        let error = await #expect(throws: MailDeliveryError.self) {
            try await transport.send(Self.message())
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("took longer than the limit") == true, "\(error?.description ?? "")")
    }

    @Test("cancelling the sending task ends the delivery at once")
    func cancellation() async throws {
        let transport = self.transport(port: self.peer.silentPort, commandTimeout: .seconds(30))
        let sending = Task {
            try await transport.send(Self.message())
        }
        try await Task.sleep(for: .milliseconds(300))

        sending.cancel()
        let result = await sending.result

        #expect(throws: MailDeliveryError.self) { try result.get() }
        if case .failure(let error as MailDeliveryError) = result {
            #expect(error.description.contains("cancelled"), "\(error)")
        }
    }

    @Test("implicit TLS spoken to a plain-text port fails as a temporary TLS error")
    func tlsToPlainPort() async throws {
        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.plainPort, security: .tls, withCredentials: false, commandTimeout: .seconds(3)).send(
                Self.message()
            )
        }

        #expect(error?.isPermanent == false)
        #expect(error?.description.contains("\(self.peer.host):\(self.peer.plainPort)") == true, "\(error?.description ?? "")")
    }

    @Test("an address that could smuggle an SMTP command is refused before connecting")
    func commandInjectionInAddress() async throws {
        let message = Self.message(to: [MailAddress("zoe@example.com>\r\nRCPT TO:<evil@example.com")])

        let error = await #expect(throws: MailDeliveryError.self) {
            try await self.transport(port: self.peer.startTLSPort).send(message)
        }

        #expect(error?.isPermanent == true)
        #expect(try await self.peer.messages(withID: message.messageID).isEmpty)
    }

    @Test("credentials are never sent in clear text to a host that is not this machine")
    func noClearTextCredentials() async throws {
        let transport = SMTPTransport(
            configuration: SMTPConfiguration(host: "mail.example.invalid", port: 25, security: .none, username: "u", password: "p")
        )

        let error = await #expect(throws: MailDeliveryError.self) {
            try await transport.send(Self.message())
        }

        #expect(error?.description.contains("EASEL_SMTP_SECURITY") == true, "\(error?.description ?? "")")
    }
}

@Suite("SMTP pieces")
struct SMTPPiecesTests {
    @Test("multi-line replies are joined, split across reads or not")
    func replyParser() throws {
        var parser = SMTPReplyParser()
        var first = ByteBuffer(string: "250-easel.test greets you\r\n250-AUTH PLAIN LOGIN\r\n250 STA")
        var second = ByteBuffer(string: "RTTLS\r\n220 ready\n")

        let none = try parser.parse(&first)
        #expect(none.isEmpty)
        #expect(parser.hasPartialReply)
        let replies = try parser.parse(&second)

        #expect(
            replies == [
                SMTPReply(code: 250, lines: ["easel.test greets you", "AUTH PLAIN LOGIN", "STARTTLS"]), SMTPReply(code: 220, lines: ["ready"]),
            ]
        )
        #expect(!parser.hasPartialReply)
        #expect(SMTPCapabilities(ehlo: replies[0]).authMechanisms == ["PLAIN", "LOGIN"])
        #expect(SMTPCapabilities(ehlo: replies[0]).supports("STARTTLS"))
    }

    @Test("a line that is not a reply is an error", arguments: ["hello\r\n", "25\r\n", "250*x\r\n", "250-a\r\n251 b\r\n"])
    func malformedReply(_ input: String) {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: input)

        #expect(throws: SMTPConnectionError.self) {
            _ = try parser.parse(&buffer)
        }
    }

    @Test("dot-stuffing doubles leading dots and ends with CRLF.CRLF")
    func dotStuffing() {
        let stuffed = Envelope.dotStuffed(Array(".a\r\nb.\r\n..c\r\n".utf8))

        #expect(String(decoding: stuffed, as: UTF8.self) == "..a\r\nb.\r\n...c\r\n.\r\n")
    }
}
