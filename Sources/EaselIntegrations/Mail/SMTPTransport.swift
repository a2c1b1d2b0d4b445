import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Where and how to reach an SMTP server. EaselApp fills it from the EASEL_SMTP_* settings.
public struct SMTPConfiguration: Sendable, CustomStringConvertible {
    public enum Security: String, Sendable, CaseIterable {
        /// Plain TCP switched to TLS with STARTTLS before anything else (usually port 587). A
        /// server that does not offer STARTTLS gets nothing: no credentials, no mail.
        case startTLS = "starttls"
        /// TLS from the first byte (usually port 465).
        case tls
        /// No encryption at all: only sensible for a relay on this machine; credentials are
        /// sent only to a loopback address.
        case none
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var username: String?
    public var password: String?
    /// The name the certificate must carry and the TLS SNI name; `host` when nil (an IP
    /// address host is then checked against the certificate's IP addresses, without SNI).
    public var tlsServerName: String?
    /// A PEM file of extra certificate authorities trusted besides the system's, for servers
    /// with a private CA.
    public var caCertificateFile: String?
    /// The name this client gives in EHLO.
    public var clientName: String
    public var connectTimeout: Duration
    /// How long one command may wait for its reply.
    public var commandTimeout: Duration
    /// How long one whole delivery may take, connection to QUIT.
    public var totalTimeout: Duration

    public init(
        host: String,
        port: Int? = nil,
        security: Security = .startTLS,
        username: String? = nil,
        password: String? = nil,
        tlsServerName: String? = nil,
        caCertificateFile: String? = nil,
        clientName: String = "localhost",
        connectTimeout: Duration = .seconds(10),
        commandTimeout: Duration = .seconds(60),
        totalTimeout: Duration = .seconds(180)
    ) {
        self.host = host
        self.port = port ?? Self.defaultPort(for: security)
        self.security = security
        self.username = username
        self.password = password
        self.tlsServerName = tlsServerName
        self.caCertificateFile = caCertificateFile
        self.clientName = clientName
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.totalTimeout = totalTimeout
    }

    /// 587 for STARTTLS, 465 for implicit TLS, 25 for none.
    public static func defaultPort(for security: Security) -> Int {
        switch security {
        case .startTLS: 587
        case .tls: 465
        case .none: 25
        }
    }

    /// True when both a user name and a password are set: AUTH is then required.
    public var hasCredentials: Bool {
        !(self.username ?? "").isEmpty && !(self.password ?? "").isEmpty
    }

    /// Safe to log: the password is never shown.
    public var description: String {
        let user = self.username.map { " user=\($0)" } ?? ""
        let password = (self.password ?? "").isEmpty ? "" : " password=<set>"
        return "smtp \(self.host):\(self.port) security=\(self.security.rawValue)\(user)\(password)"
    }
}

/// Sends mail through an SMTP server, one connection per message: EHLO, STARTTLS (or TLS from
/// the start), AUTH PLAIN or LOGIN, MAIL FROM, RCPT TO for each recipient, DATA, QUIT.
///
/// A message goes to all its recipients or to none: if the server refuses one, the session is
/// reset before DATA, so a retry never delivers twice to the others.
public struct SMTPTransport: MailTransport {
    public var name: String { "smtp" }
    public let configuration: SMTPConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    public init(
        configuration: SMTPConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "easel.mail.smtp")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    public func send(_ message: MailMessage) async throws(MailDeliveryError) {
        let envelope = try Envelope(message)
        try self.checkCredentialsAreSafe()
        let tls = try self.makeTLSUpgrade()
        let deadline = NIODeadline.now() + TimeAmount(self.configuration.totalTimeout)

        let connection: SMTPConnection
        do {
            let connectTimeout = min(TimeAmount(self.configuration.connectTimeout), deadline - .now())
            connection = try await SMTPConnection.open(
                host: self.configuration.host,
                port: self.configuration.port,
                tls: self.configuration.security == .tls ? tls : nil,
                connectTimeout: connectTimeout,
                group: self.eventLoopGroup
            )
        } catch {
            throw self.connectFailure(error)
        }
        defer { connection.close() }

        let session = SMTPSession(connection: connection, configuration: self.configuration, deadline: deadline, logger: self.logger)
        // Cancelling the sending task closes the connection, which ends the current wait at once.
        let result: Result<Void, MailDeliveryError> = await withTaskCancellationHandler {
            do throws(MailDeliveryError) {
                try await session.deliver(envelope, tls: tls)
                return .success(())
            } catch {
                return .failure(error)
            }
        } onCancel: {
            connection.close()
        }
        if case .failure = result, Task.isCancelled {
            throw MailDeliveryError(
                permanent: false,
                "sending through the SMTP server at \(self.configuration.host):\(self.configuration.port) was cancelled."
            )
        }
        try result.get()
    }

    /// Credentials in clear text are only acceptable to this machine.
    private func checkCredentialsAreSafe() throws(MailDeliveryError) {
        guard self.configuration.security == .none, self.configuration.hasCredentials, !Self.isLoopback(self.configuration.host) else { return }
        throw MailDeliveryError(
            permanent: false,
            "EASEL_SMTP_SECURITY is none, so the password would cross the network unencrypted to \(self.configuration.host); "
                + "nothing was sent. Use EASEL_SMTP_SECURITY=starttls (port 587) or tls (port 465)."
        )
    }

    private func makeTLSUpgrade() throws(MailDeliveryError) -> SMTPClientHandler.TLSUpgrade? {
        guard self.configuration.security != .none else { return nil }
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        tlsConfiguration.minimumTLSVersion = .tlsv12
        if let file = self.configuration.caCertificateFile, !file.isEmpty {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw MailDeliveryError(permanent: false, "EASEL_SMTP_CA_FILE names \(file), which does not exist or cannot be read.")
            }
            tlsConfiguration.additionalTrustRoots = [.file(file)]
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tlsConfiguration)
        } catch {
            let file = self.configuration.caCertificateFile.map { " (EASEL_SMTP_CA_FILE=\($0) must hold PEM certificates)" } ?? ""
            throw MailDeliveryError(permanent: false, "could not set up TLS for the SMTP server\(file): \(error)")
        }
        return SMTPClientHandler.TLSUpgrade(context: context, serverHostname: self.serverHostname)
    }

    /// SNI and the certificate check use a name; an IP address cannot go in SNI, and NIOSSL
    /// then checks the certificate against the address connected to.
    private var serverHostname: String? {
        let name = self.configuration.tlsServerName ?? self.configuration.host
        return Self.isIPAddress(name) ? nil : name
    }

    private func connectFailure(_ error: any Error) -> MailDeliveryError {
        let server = "\(self.configuration.host):\(self.configuration.port)"
        let reason: String
        if case ChannelError.connectTimeout = error {
            reason = "no answer within \(self.configuration.connectTimeout)"
        } else if let error = error as? NIOConnectionError {
            reason = error.description
        } else {
            reason = String(describing: error)
        }
        return MailDeliveryError(
            permanent: false,
            "could not connect to the SMTP server at \(server) (\(reason)). Check EASEL_SMTP_HOST and EASEL_SMTP_PORT, "
                + "and that the server is up and reachable from this machine."
        )
    }

    static func isIPAddress(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return (try? SocketAddress(ipAddress: bare, port: 0)) != nil
    }

    static func isLoopback(_ host: String) -> Bool {
        let lowered = host.lowercased()
        return lowered == "localhost" || lowered.hasPrefix("127.") || lowered == "::1" || lowered == "[::1]"
    }
}

/// The envelope of one message: its addresses checked before any connection is made.
struct Envelope {
    var sender: String
    var recipients: [String]
    /// True when an address is not ASCII: the server must then offer SMTPUTF8.
    var needsSMTPUTF8: Bool
    /// The message as DATA sends it: dot-stuffed, ending in CRLF.CRLF.
    var data: [UInt8]
    var messageID: String

    init(_ message: MailMessage) throws(MailDeliveryError) {
        let addresses = [message.from.email] + message.to.map(\.email)
        for address in addresses where !Self.isValid(address) {
            throw MailDeliveryError(permanent: true, "\"\(MIMEHeader.sanitize(address))\" is not a mail address that can be sent to.")
        }
        guard !message.to.isEmpty else {
            throw MailDeliveryError(permanent: true, "the message has no recipient.")
        }
        self.sender = message.from.email
        self.recipients = message.to.map(\.email)
        self.needsSMTPUTF8 = !addresses.allSatisfy { $0.unicodeScalars.allSatisfy(\.isASCII) }
        self.data = Self.dotStuffed(MIMEMessage(message).bytes())
        self.messageID = MIMEHeader.messageID(message.messageID)
    }

    /// Something "local@domain", with nothing that could end or extend an SMTP command line.
    static func isValid(_ address: String) -> Bool {
        guard let at = address.lastIndex(of: "@"), at != address.startIndex, address.index(after: at) != address.endIndex else {
            return false
        }
        return address.utf8.count <= 320
            && !address.unicodeScalars.contains {
                $0.properties.generalCategory == .control || $0 == " " || $0 == "<" || $0 == ">" || $0 == "\u{2028}" || $0 == "\u{2029}"
            }
    }

    /// RFC 5321 section 4.5.2: a line starting with "." gets one more, and "CRLF.CRLF" ends the data.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        for byte in message {
            if atLineStart, byte == UInt8(ascii: ".") {
                output.append(UInt8(ascii: "."))
            }
            output.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
        }
        if !output.isEmpty, !atLineStart {
            output.append(contentsOf: Array("\r\n".utf8))
        }
        output.append(contentsOf: Array(".\r\n".utf8))
        return output
    }
}

/// The extensions a server listed in its EHLO reply.
struct SMTPCapabilities {
    private var keywords: [String: [String]] = [:]

    init(ehlo reply: SMTPReply?) {
        // The first line greets; each further line is "KEYWORD param param" (old servers: "AUTH=LOGIN").
        for line in reply?.lines.dropFirst() ?? [] {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "=" }).map(String.init)
            guard let keyword = words.first?.uppercased() else { continue }
            self.keywords[keyword, default: []].append(contentsOf: words.dropFirst().map { $0.uppercased() })
        }
    }

    func supports(_ keyword: String) -> Bool {
        self.keywords[keyword] != nil
    }

    var authMechanisms: [String] {
        self.keywords["AUTH"] ?? []
    }

    var sizeLimit: Int? {
        self.keywords["SIZE"]?.first.flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
    }
}

/// The steps of a session, named in error messages and logs.
enum SMTPStep: String {
    case greeting = "the greeting"
    case ehlo = "EHLO"
    case startTLS = "STARTTLS"
    case auth = "AUTH"
    case mailFrom = "MAIL FROM"
    case rcptTo = "RCPT TO"
    case data = "DATA"
    case message = "the end of the message data"
    case reset = "RSET"
    case quit = "QUIT"
}

/// One delivery over one connection.
struct SMTPSession {
    let connection: SMTPConnection
    let configuration: SMTPConfiguration
    let deadline: NIODeadline
    let logger: Logger

    private var server: String { "\(self.configuration.host):\(self.configuration.port)" }

    func deliver(_ envelope: Envelope, tls: SMTPClientHandler.TLSUpgrade?) async throws(MailDeliveryError) {
        try await self.expect(nil, .greeting, codes: [220])
        var capabilities = try await self.hello()

        if self.configuration.security == .startTLS {
            guard capabilities.supports("STARTTLS"), let tls else {
                throw MailDeliveryError(
                    permanent: false,
                    "the SMTP server at \(self.server) does not offer STARTTLS, which EASEL_SMTP_SECURITY=starttls requires, so nothing was sent "
                        + "(neither credentials nor the message). Use EASEL_SMTP_SECURITY=tls if the server expects TLS from the first byte "
                        + "(usually port 465)."
                )
            }
            try await self.expect("STARTTLS", .startTLS, codes: [220], upgrade: tls)
            // RFC 3207: everything learnt before TLS is forgotten and asked again.
            capabilities = try await self.hello()
        }

        if self.configuration.hasCredentials {
            try await self.authenticate(capabilities)
        }

        if envelope.needsSMTPUTF8, !capabilities.supports("SMTPUTF8") {
            throw MailDeliveryError(
                permanent: true,
                "an address of message \(envelope.messageID) is not ASCII, and the SMTP server at \(self.server) "
                    + "does not accept such addresses (no SMTPUTF8)."
            )
        }
        var mailFrom = "MAIL FROM:<\(envelope.sender)>"
        if capabilities.sizeLimit != nil { mailFrom += " SIZE=\(envelope.data.count)" }
        if envelope.needsSMTPUTF8 { mailFrom += " SMTPUTF8" }
        try await self.expect(mailFrom, .mailFrom, codes: [250])

        var refusals: [(recipient: String, reply: SMTPReply)] = []
        for recipient in envelope.recipients {
            let reply = try await self.exchange("RCPT TO:<\(recipient)>", .rcptTo)
            if reply.code != 250, reply.code != 251 {
                refusals.append((recipient, reply))
            }
        }
        if !refusals.isEmpty {
            // All or none: the recipients that were accepted must not get it now and again on retry.
            _ = try? await self.exchange("RSET", .reset)
            await self.quit()
            throw self.recipientsRefused(refusals, messageID: envelope.messageID)
        }

        try await self.expect("DATA", .data, codes: [354])
        let accepted = try await self.expect(bytes: envelope.data, .message, codes: [250])
        self.logger.info(
            "mail accepted by SMTP server",
            metadata: [
                "server": .string(self.server), "message_id": .string(envelope.messageID),
                "recipients": .stringConvertible(envelope.recipients.count), "reply": .string(accepted.description),
            ]
        )
        // The message is delivered: nothing after this point may turn into an error.
        await self.quit()
    }

    /// EHLO, or HELO for a server that does not know EHLO (it then has no extensions).
    private func hello() async throws(MailDeliveryError) -> SMTPCapabilities {
        let name = self.configuration.clientName.filter {
            !$0.isWhitespace && $0.isASCII && !$0.unicodeScalars.contains { $0.properties.generalCategory == .control }
        }
        let clientName = name.isEmpty ? "localhost" : name
        let reply = try await self.exchange("EHLO \(clientName)", .ehlo)
        if reply.code == 250 {
            return SMTPCapabilities(ehlo: reply)
        }
        if reply.code == 500 || reply.code == 502 {
            try await self.expect("HELO \(clientName)", .ehlo, codes: [250])
            return SMTPCapabilities(ehlo: nil)
        }
        throw self.refused(reply, .ehlo)
    }

    /// AUTH PLAIN when offered (one round trip), else AUTH LOGIN.
    private func authenticate(_ capabilities: SMTPCapabilities) async throws(MailDeliveryError) {
        let username = self.configuration.username ?? ""
        let password = self.configuration.password ?? ""
        let mechanisms = capabilities.authMechanisms
        if mechanisms.contains("PLAIN") {
            let credentials = Data(([0] + Array(username.utf8) + [0] + Array(password.utf8))).base64EncodedString()
            var reply = try await self.exchange("AUTH PLAIN \(credentials)", .auth, logAs: "AUTH PLAIN <credentials>")
            if reply.code == 334 {
                // A server that wants the credentials after an empty challenge.
                reply = try await self.exchange(credentials, .auth, logAs: "<credentials>")
            }
            guard reply.code == 235 else { throw self.authenticationFailed(reply, username: username) }
        } else if mechanisms.contains("LOGIN") {
            let first = try await self.exchange("AUTH LOGIN", .auth)
            guard first.code == 334 else { throw self.authenticationFailed(first, username: username) }
            let second = try await self.exchange(Data(username.utf8).base64EncodedString(), .auth, logAs: "<username>")
            guard second.code == 334 else { throw self.authenticationFailed(second, username: username) }
            let last = try await self.exchange(Data(password.utf8).base64EncodedString(), .auth, logAs: "<password>")
            guard last.code == 235 else { throw self.authenticationFailed(last, username: username) }
        } else {
            let offered = mechanisms.isEmpty ? "does not offer AUTH" : "offers AUTH \(mechanisms.joined(separator: " ")) only"
            throw MailDeliveryError(
                permanent: false,
                "the SMTP server at \(self.server) \(offered); Easel logs in with PLAIN or LOGIN. "
                    + "Unset EASEL_SMTP_USERNAME and EASEL_SMTP_PASSWORD if this server needs no login."
            )
        }
    }

    /// QUIT, politely and briefly; its answer does not matter.
    private func quit() async {
        let timeout = min(TimeAmount.seconds(5), self.deadline - .now())
        guard timeout > .zero else { return }
        _ = try? await self.connection.exchange(ByteBuffer(string: "QUIT\r\n"), timeout: timeout)
    }

    @discardableResult
    private func expect(
        _ command: String?,
        _ step: SMTPStep,
        codes: Set<Int>,
        upgrade: SMTPClientHandler.TLSUpgrade? = nil
    ) async throws(MailDeliveryError) -> SMTPReply {
        let reply = try await self.exchange(command, step, upgrade: upgrade)
        guard codes.contains(reply.code) else { throw self.refused(reply, step) }
        return reply
    }

    @discardableResult
    private func expect(bytes: [UInt8], _ step: SMTPStep, codes: Set<Int>) async throws(MailDeliveryError) -> SMTPReply {
        let reply = try await self.send(ByteBuffer(bytes: bytes), step, logAs: "<\(bytes.count) bytes of message data>")
        guard codes.contains(reply.code) else { throw self.refused(reply, step) }
        return reply
    }

    /// One command line (nil: only wait, for the greeting) and its reply. `logAs` replaces the
    /// line in logs, so credentials never reach them.
    private func exchange(
        _ command: String?,
        _ step: SMTPStep,
        logAs: String? = nil,
        upgrade: SMTPClientHandler.TLSUpgrade? = nil
    ) async throws(MailDeliveryError) -> SMTPReply {
        try await self.send(command.map { ByteBuffer(string: $0 + "\r\n") }, step, logAs: logAs ?? command, upgrade: upgrade)
    }

    private func send(
        _ bytes: ByteBuffer?,
        _ step: SMTPStep,
        logAs: String?,
        upgrade: SMTPClientHandler.TLSUpgrade? = nil
    ) async throws(MailDeliveryError) -> SMTPReply {
        let remaining = self.deadline - .now()
        let commandTimeout = TimeAmount(self.configuration.commandTimeout)
        guard remaining > .zero else { throw self.outOfTime(step) }
        do {
            let reply = try await self.connection.exchange(bytes, timeout: min(commandTimeout, remaining), upgrade: upgrade)
            self.logger.debug(
                "smtp",
                metadata: ["server": .string(self.server), "sent": .string(logAs ?? "(nothing)"), "reply": .string(reply.description)]
            )
            return reply
        } catch SMTPConnectionError.timedOut {
            throw remaining < commandTimeout ? self.outOfTime(step) : self.noAnswer(step)
        } catch {
            throw self.connectionFailed(error, step)
        }
    }

    // MARK: Errors a person can act on

    /// A reply that is not what the step needs.
    private func refused(_ reply: SMTPReply, _ step: SMTPStep) -> MailDeliveryError {
        switch step {
        case .mailFrom, .rcptTo, .data, .message:
            if reply.code == 530 {
                return MailDeliveryError(
                    permanent: false,
                    "the SMTP server at \(self.server) requires a login (\(reply)). Set EASEL_SMTP_USERNAME and EASEL_SMTP_PASSWORD."
                )
            }
            return MailDeliveryError(
                permanent: reply.isPermanentFailure,
                "the SMTP server at \(self.server) refused \(step.rawValue): \(reply)"
            )
        default:
            return MailDeliveryError(permanent: false, "the SMTP server at \(self.server) answered \(step.rawValue) with \(reply)")
        }
    }

    private func recipientsRefused(_ refusals: [(recipient: String, reply: SMTPReply)], messageID: String) -> MailDeliveryError {
        let list = refusals.map { "\($0.recipient): \($0.reply)" }.joined(separator: "; ")
        // A permanent refusal of any recipient means a retry can never reach them all.
        let permanent = refusals.contains { $0.reply.isPermanentFailure && $0.reply.code != 530 }
        return MailDeliveryError(
            permanent: permanent,
            "the SMTP server at \(self.server) refused a recipient of \(messageID), so the message was sent to nobody: \(list)"
        )
    }

    private func authenticationFailed(_ reply: SMTPReply, username: String) -> MailDeliveryError {
        MailDeliveryError(
            permanent: false,
            "the SMTP server at \(self.server) did not accept the login of user \"\(username)\" (\(reply)). "
                + "Check EASEL_SMTP_USERNAME and EASEL_SMTP_PASSWORD."
        )
    }

    private func noAnswer(_ step: SMTPStep) -> MailDeliveryError {
        MailDeliveryError(
            permanent: false,
            "the SMTP server at \(self.server) did not answer \(step.rawValue) within \(self.configuration.commandTimeout); gave up. "
                + "If it is busy this will pass; if not, check EASEL_SMTP_PORT and EASEL_SMTP_SECURITY "
                + "(a TLS port spoken to in plain text stays silent)."
        )
    }

    private func outOfTime(_ step: SMTPStep) -> MailDeliveryError {
        MailDeliveryError(
            permanent: false,
            "sending through the SMTP server at \(self.server) took longer than the limit of \(self.configuration.totalTimeout) "
                + "(at \(step.rawValue)); gave up."
        )
    }

    private func connectionFailed(_ error: any Error, _ step: SMTPStep) -> MailDeliveryError {
        let hint = "Check EASEL_SMTP_HOST, EASEL_SMTP_PORT and EASEL_SMTP_SECURITY"
        let tlsName = self.configuration.tlsServerName ?? self.configuration.host
        switch error {
        case NIOSSLError.handshakeFailed(let reason):
            if String(describing: reason).contains("CERTIFICATE_VERIFY_FAILED") {
                return MailDeliveryError(
                    permanent: false,
                    "TLS with the SMTP server at \(self.server) failed: its certificate is not trusted for \"\(tlsName)\" "
                        + "(not signed by a trusted authority, expired, or made out for another name). If the server uses a private "
                        + "certificate authority, set EASEL_SMTP_CA_FILE to its PEM certificate; if the name differs from EASEL_SMTP_HOST, "
                        + "set EASEL_SMTP_TLS_SERVER_NAME."
                )
            }
            return MailDeliveryError(
                permanent: false,
                "the TLS handshake with the SMTP server at \(self.server) failed during \(step.rawValue): \(reason). "
                    + "\(hint) (tls for port 465, starttls for 587)."
            )
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return MailDeliveryError(
                permanent: false,
                "TLS with the SMTP server at \(self.server) failed: its certificate is not trusted for \"\(tlsName)\" (it is made out for "
                    + "another name). Set EASEL_SMTP_HOST, or EASEL_SMTP_TLS_SERVER_NAME, to a name the certificate carries; EASEL_SMTP_CA_FILE "
                    + "does not help here. (\(error))"
            )
        case let error as NIOSSLExtraError:
            return MailDeliveryError(
                permanent: false,
                "TLS with the SMTP server at \(self.server) failed during \(step.rawValue): \(error). \(hint)."
            )
        case let error as NIOSSLError:
            return MailDeliveryError(
                permanent: false,
                "TLS with the SMTP server at \(self.server) failed during \(step.rawValue): \(error). \(hint)."
            )
        case let error as BoringSSLError:
            return MailDeliveryError(
                permanent: false,
                "TLS with the SMTP server at \(self.server) failed during \(step.rawValue): \(error). \(hint)."
            )
        case SMTPConnectionError.closed:
            return MailDeliveryError(
                permanent: false,
                "the SMTP server at \(self.server) closed the connection during \(step.rawValue). \(hint) (tls for port 465, starttls for 587)."
            )
        case SMTPConnectionError.dataAfterStartTLS:
            return MailDeliveryError(
                permanent: false,
                "the SMTP server at \(self.server) (or something between us) sent data after agreeing to STARTTLS, before encryption began; "
                    + "the session was ended so nothing unencrypted is trusted."
            )
        case SMTPConnectionError.malformedReply(let detail):
            return MailDeliveryError(
                permanent: false,
                "the server at \(self.server) does not speak SMTP as expected during \(step.rawValue): \(detail). \(hint)."
            )
        default:
            return MailDeliveryError(permanent: false, "the connection to the SMTP server at \(self.server) failed during \(step.rawValue): \(error)")
        }
    }
}
