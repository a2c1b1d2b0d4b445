import NIOCore
import NIOHTTP1
import NIOSSL

/// The answer to one request: the head, and for a 2xx the whole body.
struct FetchResponse: Sendable {
    var head: HTTPResponseHead
    var body: ByteBuffer?
}

/// Sends one GET when the connection is up and collects the answer into `outcome`: the head
/// alone for anything but 2xx (a redirect or an error needs no body), the head and body for a
/// 2xx, within the byte cap and before the deadline. It closes the connection when done.
final class FetchResponseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private let origin: String
    private let maximumBytes: Int
    private let deadline: NIODeadline
    private let outcome: EventLoopPromise<FetchResponse>

    private var head: HTTPResponseHead?
    private var body: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var finished = false

    init(request: HTTPRequestHead, origin: String, maximumBytes: Int, deadline: NIODeadline, outcome: EventLoopPromise<FetchResponse>) {
        self.request = request
        self.origin = origin
        self.maximumBytes = maximumBytes
        self.deadline = deadline
        self.outcome = outcome
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: self.deadline) {
            self.finish(.failure(FetchError(.timeout, "\(self.origin) did not answer in time")), context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.finish(.failure(FetchError(.connectionFailed, "the connection to \(self.origin) closed")), context: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        // Before the TLS handshake completes NIOSSL holds these back.
        context.write(self.wrapOutboundOut(.head(self.request)), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.finished else { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            guard (200..<300).contains(head.status.code) else {
                self.finish(.success(FetchResponse(head: head, body: nil)), context: context)
                return
            }
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let declared, declared > self.maximumBytes {
                self.finish(.failure(self.tooLarge("declares \(declared) bytes")), context: context)
                return
            }
            self.body = context.channel.allocator.buffer(capacity: min(declared ?? 16 * 1024, self.maximumBytes, 1 << 20))
        case .body(var part):
            guard var body = self.body else { return }
            self.body = nil  // unique, so the write below does not copy
            guard body.readableBytes + part.readableBytes <= self.maximumBytes else {
                self.finish(.failure(self.tooLarge("sent more than that")), context: context)
                return
            }
            body.writeBuffer(&part)
            self.body = body
        case .end:
            guard let head = self.head else {
                self.finish(.failure(FetchError(.protocolError, "\(self.origin) ended an answer it had not begun")), context: context)
                return
            }
            self.finish(.success(FetchResponse(head: head, body: self.body)), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.finish(.failure(Self.fetchError(error, origin: self.origin)), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let what = self.head == nil ? "before answering" : "before the whole body arrived"
        self.finish(.failure(FetchError(.connectionFailed, "\(self.origin) closed the connection \(what)")), context: context)
        context.fireChannelInactive()
    }

    private func tooLarge(_ detail: String) -> FetchError {
        FetchError(.tooLarge, "the answer from \(self.origin) \(detail); at most \(self.maximumBytes) bytes are accepted")
    }

    /// The first result is the one reported; the connection is closed after it.
    private func finish(_ result: Result<FetchResponse, FetchError>, context: ChannelHandlerContext?) {
        guard !self.finished else { return }
        self.finished = true
        self.timer?.cancel()
        self.body = nil
        switch result {
        case .success(let response): self.outcome.succeed(response)
        case .failure(let error): self.outcome.fail(error)
        }
        context?.close(promise: nil)
    }

    /// Sorts errors from the pipeline: parse errors are the server's fault and permanent, a
    /// body cut short is a broken connection, a TLS handshake that fails (certificate not
    /// trusted, or for another name) will not change on retry, the rest is the network.
    static func fetchError(_ error: any Error, origin: String) -> FetchError {
        switch error {
        case let error as FetchError:
            return error
        case HTTPParserError.invalidEOFState:
            return FetchError(.connectionFailed, "\(origin) closed the connection before the whole body arrived")
        case let error as HTTPParserError:
            return FetchError(.protocolError, "\(origin) did not answer in HTTP/1.1 (\(error))")
        case let error as NIOSSLError:
            switch error {
            case .handshakeFailed:
                return FetchError(.protocolError, "the TLS handshake with \(origin) failed: \(error)")
            default:
                return FetchError(.connectionFailed, "TLS with \(origin) failed: \(error)")
            }
        case let error as NIOSSLExtraError:
            return FetchError(.protocolError, "the TLS handshake with \(origin) failed: \(error)")
        default:
            return FetchError(.connectionFailed, "the connection to \(origin) failed: \(error)")
        }
    }
}
