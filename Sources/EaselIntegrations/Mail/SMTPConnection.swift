import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// One SMTP reply: a three-digit code and its text lines ("250-…" continuation lines and the
/// final "250 …" line together).
struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    var code: Int
    var lines: [String]

    var isPositiveCompletion: Bool { (200..<300).contains(self.code) }
    var isTransientFailure: Bool { (400..<500).contains(self.code) }
    var isPermanentFailure: Bool { (500..<600).contains(self.code) }

    /// "550 5.1.1 no such user" on one line, cut short so a chatty server cannot flood an error message.
    var description: String {
        let text = "\(self.code) " + self.lines.joined(separator: " / ")
        let printable = String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
        return printable.count > 300 ? String(printable.prefix(300)) + "…" : printable
    }
}

/// What went wrong on the wire, below the level of SMTP replies.
enum SMTPConnectionError: Error, Equatable {
    /// No reply within the time given to one exchange.
    case timedOut
    /// The server closed the connection (or it broke) while a reply was awaited.
    case closed
    /// A line that is not an SMTP reply, or too long.
    case malformedReply(String)
    /// Bytes arrived between the STARTTLS go-ahead and the TLS handshake: they were not
    /// encrypted and may have been injected, so the session ends.
    case dataAfterStartTLS
    /// A second command while one still waits for its reply (a bug in the caller).
    case overlappingCommands
}

/// Splits received bytes into replies. Lines end with CRLF (a bare LF is accepted).
struct SMTPReplyParser {
    /// RFC 5321 allows 512 octets per reply line; leave room for lenient servers.
    static let maximumLineLength = 4096
    static let maximumLinesPerReply = 256

    private var pending: [UInt8] = []
    private var lines: [String] = []
    private var code: Int?

    /// True while part of a reply has arrived but not its last line.
    var hasPartialReply: Bool { !self.pending.isEmpty || !self.lines.isEmpty }

    mutating func parse(_ buffer: inout ByteBuffer) throws(SMTPConnectionError) -> [SMTPReply] {
        self.pending.append(contentsOf: buffer.readableBytesView)
        buffer.moveReaderIndex(to: buffer.writerIndex)

        var replies: [SMTPReply] = []
        var start = 0
        while let newline = self.pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var end = newline
            if end > start, self.pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = Array(self.pending[start..<end])
            start = newline + 1
            if let reply = try self.take(line) {
                replies.append(reply)
            }
        }
        self.pending.removeFirst(start)
        guard self.pending.count <= Self.maximumLineLength else {
            throw .malformedReply("a reply line longer than \(Self.maximumLineLength) bytes")
        }
        return replies
    }

    private mutating func take(_ line: [UInt8]) throws(SMTPConnectionError) -> SMTPReply? {
        let digits = line.prefix(3)
        guard digits.count == 3, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let code = Int(String(decoding: digits, as: UTF8.self)), (100..<600).contains(code)
        else {
            throw .malformedReply("\"\(String(decoding: line.prefix(80), as: UTF8.self))\" is not an SMTP reply")
        }
        let separator = line.count > 3 ? line[3] : UInt8(ascii: " ")
        guard separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw .malformedReply("\"\(String(decoding: line.prefix(80), as: UTF8.self))\" is not an SMTP reply")
        }
        if let current = self.code, current != code {
            throw .malformedReply("a multi-line reply mixed the codes \(current) and \(code)")
        }
        self.code = code
        self.lines.append(line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : "")
        guard self.lines.count <= Self.maximumLinesPerReply else {
            throw .malformedReply("a reply of more than \(Self.maximumLinesPerReply) lines")
        }
        guard separator == UInt8(ascii: " ") else { return nil }
        let reply = SMTPReply(code: code, lines: self.lines)
        self.lines = []
        self.code = nil
        return reply
    }
}

/// Pairs each command written to the channel with the next reply read from it, with a time
/// limit per exchange, and switches the channel to TLS right after a STARTTLS go-ahead.
final class SMTPClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Request
    typealias OutboundOut = ByteBuffer

    struct TLSUpgrade: Sendable {
        var context: NIOSSLContext
        var serverHostname: String?
    }

    /// Bytes to send (none: just wait, as for the greeting) and where the reply goes.
    struct Request: Sendable {
        var bytes: ByteBuffer?
        var timeout: TimeAmount
        /// Set for STARTTLS: on a 220 reply, TLS goes in front of everything before the reply is handed over.
        var upgrade: TLSUpgrade?
        var reply: EventLoopPromise<SMTPReply>
    }

    private var parser = SMTPReplyParser()
    private var unclaimed = CircularBuffer<SMTPReply>()
    private var waiting: (request: Request, timer: Scheduled<Void>)?
    private var failure: (any Error)?
    private let firstFailure: SMTPFirstFailure

    init(firstFailure: SMTPFirstFailure) {
        self.firstFailure = firstFailure
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        if let failure = self.failure {
            request.reply.fail(failure)
            promise?.fail(failure)
            return
        }
        guard self.waiting == nil else {
            request.reply.fail(SMTPConnectionError.overlappingCommands)
            promise?.fail(SMTPConnectionError.overlappingCommands)
            return
        }
        if let bytes = request.bytes {
            // Without pipelining, a reply that arrived before the command is one nobody asked for.
            guard self.unclaimed.isEmpty else {
                let error = SMTPConnectionError.malformedReply("the server sent \"\(self.unclaimed.first!)\" before the command")
                request.reply.fail(error)
                promise?.fail(error)
                self.fail(error, context: context)
                return
            }
            context.write(self.wrapOutboundOut(bytes), promise: promise)
        } else {
            promise?.succeed(())
        }
        if let reply = self.unclaimed.popFirst() {
            self.complete(request, with: reply, context: context)
            return
        }
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: request.timeout) {
            self.timedOut(context: context)
        }
        self.waiting = (request, timer)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        do {
            self.unclaimed.append(contentsOf: try self.parser.parse(&buffer))
        } catch {
            self.fail(error, context: context)
            return
        }
        if let waiting = self.waiting, let reply = self.unclaimed.popFirst() {
            self.waiting = nil
            waiting.timer.cancel()
            self.complete(waiting.request, with: reply, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(SMTPConnectionError.closed, context: context)
        context.fireChannelInactive()
    }

    private func complete(_ request: Request, with reply: SMTPReply, context: ChannelHandlerContext) {
        if let upgrade = request.upgrade, reply.code == 220 {
            guard self.unclaimed.isEmpty, !self.parser.hasPartialReply else {
                request.reply.fail(SMTPConnectionError.dataAfterStartTLS)
                self.fail(SMTPConnectionError.dataAfterStartTLS, context: context)
                return
            }
            do {
                let tls = try NIOSSLClientHandler(context: upgrade.context, serverHostname: upgrade.serverHostname)
                try context.pipeline.syncOperations.addHandler(tls, position: .first)
            } catch {
                request.reply.fail(error)
                self.fail(error, context: context)
                return
            }
        }
        request.reply.succeed(reply)
    }

    private func timedOut(context: ChannelHandlerContext) {
        guard let waiting = self.waiting else { return }
        self.waiting = nil
        waiting.request.reply.fail(SMTPConnectionError.timedOut)
        self.fail(SMTPConnectionError.timedOut, context: context)
    }

    /// The first error is the one reported; the connection is useless after it.
    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        if self.failure == nil {
            self.failure = error
            self.firstFailure.record(error)
        }
        if let waiting = self.waiting {
            self.waiting = nil
            waiting.timer.cancel()
            waiting.request.reply.fail(self.failure ?? error)
        }
        context.close(promise: nil)
    }
}

/// The error that broke a connection, kept outside the pipeline: once the channel is closed its
/// handlers are gone, and a later command would only learn "I/O on closed channel".
final class SMTPFirstFailure: Sendable {
    private let error = Mutex<(any Error)?>(nil)

    func record(_ error: any Error) {
        self.error.withLock { stored in
            if stored == nil { stored = error }
        }
    }

    var recorded: (any Error)? {
        self.error.withLock { $0 }
    }
}

/// A TCP (or TLS) connection to an SMTP server, used one exchange at a time.
struct SMTPConnection: Sendable {
    let channel: any Channel
    let firstFailure: SMTPFirstFailure

    /// Connects; with `tls`, TLS starts at once (implicit TLS, port 465 style).
    static func open(
        host: String,
        port: Int,
        tls: SMTPClientHandler.TLSUpgrade?,
        connectTimeout: TimeAmount,
        group: any EventLoopGroup
    ) async throws -> SMTPConnection {
        let firstFailure = SMTPFirstFailure()
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(SMTPClientHandler(firstFailure: firstFailure))
                }
            }
        let channel = try await bootstrap.connect(host: host, port: port).get()
        return SMTPConnection(channel: channel, firstFailure: firstFailure)
    }

    /// Sends `bytes` (if any) and returns the next reply, failing after `timeout`.
    func exchange(_ bytes: ByteBuffer?, timeout: TimeAmount, upgrade: SMTPClientHandler.TLSUpgrade? = nil) async throws -> SMTPReply {
        let reply = self.channel.eventLoop.makePromise(of: SMTPReply.self)
        let written = self.channel.eventLoop.makePromise(of: Void.self)
        // A write that never reaches the handler (closed channel) must still end the wait.
        written.futureResult.whenFailure { error in reply.fail(error) }
        self.channel.writeAndFlush(SMTPClientHandler.Request(bytes: bytes, timeout: timeout, upgrade: upgrade, reply: reply), promise: written)
        do {
            return try await reply.futureResult.get()
        } catch {
            throw self.firstFailure.recorded ?? error
        }
    }

    func close() {
        self.channel.close(promise: nil)
    }
}
