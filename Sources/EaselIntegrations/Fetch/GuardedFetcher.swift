import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Fetches outside URLs (image providers' result URLs, avatars at sign-in) without letting them
/// reach inside: see SECURITY.md, "Fetching URLs (mirroring) and uploads".
///
/// For each hop it resolves the host, refuses the fetch when any of its addresses is forbidden
/// (`AddressPolicy`) unless the host is allowed by name, and then connects to one of exactly the
/// addresses it checked, so a second lookup cannot answer differently (DNS rebinding). That is
/// why it is written on SwiftNIO rather than AsyncHTTPClient, which resolves names itself.
/// Redirects (301, 302, 303, 307, 308) are checked the same way, an https URL never redirects
/// to http, and one deadline and one byte cap cover the whole fetch. Nothing is retried here.
public struct GuardedFetcher: URLFetcher {
    public let policy: FetchPolicy
    private let eventLoopGroup: any EventLoopGroup
    private let sslContext: Result<NIOSSLContext, FetchError>
    private let logger: Logger

    static let redirectStatuses: Set<UInt> = [301, 302, 303, 307, 308]
    /// For one connection attempt to one address, within the fetch's own deadline.
    static let connectTimeout = TimeAmount.seconds(10)

    public init(
        policy: FetchPolicy = FetchPolicy(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        tlsConfiguration: TLSConfiguration = .makeClientConfiguration(),
        logger: Logger = Logger(label: "easel.fetch")
    ) {
        var policy = policy
        policy.allowedHosts = Set(policy.allowedHosts.map(FetchPolicy.normalizedHost))
        self.policy = policy
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        do {
            self.sslContext = .success(try NIOSSLContext(configuration: tlsConfiguration))
        } catch {
            self.sslContext = .failure(FetchError(.protocolError, "the TLS configuration is unusable: \(error)"))
        }
    }

    public func fetch(_ url: URL) async throws(FetchError) -> FetchedResource {
        let deadline = NIODeadline.now() + TimeAmount(self.policy.timeout)
        var target = try FetchTarget(url)
        var redirects = 0
        while true {
            let response = try await self.exchange(target, deadline: deadline)
            let status = response.head.status.code
            if Self.redirectStatuses.contains(status) {
                target = try self.redirectTarget(from: target, response: response.head, redirects: redirects)
                redirects += 1
                continue
            }
            guard (200..<300).contains(status), let body = response.body else {
                throw FetchError(.httpStatus(Int(status)), "\(target.origin) answered \(response.head.status)")
            }
            return FetchedResource(
                data: Data(buffer: body, byteTransferStrategy: .noCopy),
                contentType: response.head.headers.first(name: "content-type"),
                finalURL: target.url,
                status: Int(status)
            )
        }
    }

    private func redirectTarget(from current: FetchTarget, response: HTTPResponseHead, redirects: Int) throws(FetchError) -> FetchTarget {
        let status = response.status.code
        guard let location = response.headers.first(name: "location"), !location.isEmpty else {
            throw FetchError(.httpStatus(Int(status)), "\(current.origin) answered \(response.status) without a Location")
        }
        guard redirects < self.policy.maximumRedirects else {
            throw FetchError(.tooManyRedirects, "\(current.origin) redirected once more after \(redirects) redirects")
        }
        guard let next = URL(string: location, relativeTo: current.url)?.absoluteURL else {
            throw FetchError(.badURL, "\(current.origin) redirected to something that is not a URL")
        }
        let target: FetchTarget
        do {
            target = try FetchTarget(next)
        } catch {
            throw FetchError(error.kind, "\(current.origin) redirected to a URL that is not fetched: \(error.message)")
        }
        if current.isHTTPS, !target.isHTTPS {
            throw FetchError(.badURL, "\(current.origin) redirected from https down to \(target.origin)")
        }
        self.logger.debug("following a redirect", metadata: ["from": .string(current.origin), "to": .string(target.origin), "status": .stringConvertible(status)])
        return target
    }

    // MARK: - One hop

    /// Resolves and checks the target, connects to the first of the checked addresses that
    /// accepts, sends the request and returns the answer.
    private func exchange(_ target: FetchTarget, deadline: NIODeadline) async throws(FetchError) -> FetchResponse {
        if Task.isCancelled {
            throw FetchError(.timeout, "the fetch from \(target.origin) was cancelled")
        }
        let addresses = try await self.checkedAddresses(of: target, deadline: deadline)
        let sslContext: NIOSSLContext? = target.isHTTPS ? try self.sslContext.get() : nil

        var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.requestTarget)
        request.headers.add(name: "Host", value: target.hostHeader)
        request.headers.add(name: "User-Agent", value: "easel")
        request.headers.add(name: "Accept", value: "*/*")
        request.headers.add(name: "Connection", value: "close")

        var lastError: FetchError?
        for address in addresses {
            let loop = self.eventLoopGroup.next()
            let outcome = loop.makePromise(of: FetchResponse.self)
            let channel: any Channel
            do {
                channel = try await self.connect(
                    to: address, on: loop, target: target, request: request, sslContext: sslContext, deadline: deadline, outcome: outcome
                )
            } catch {
                // Also settles the promise when the pipeline never came to be.
                outcome.fail(error)
                guard error.kind == .connectionFailed else { throw error }
                self.logger.debug("could not connect", metadata: ["origin": .string(target.origin), "address": .string(address.ipAddress ?? "?")])
                lastError = error
                continue
            }
            do {
                return try await withTaskCancellationHandler {
                    try await outcome.futureResult.get()
                } onCancel: {
                    outcome.fail(FetchError(.timeout, "the fetch from \(target.origin) was cancelled"))
                    channel.close(promise: nil)
                }
            } catch {
                channel.close(promise: nil)
                throw FetchResponseHandler.fetchError(error, origin: target.origin)
            }
        }
        throw lastError ?? FetchError(.connectionFailed, "\(target.origin) has no address to connect to")
    }

    /// The addresses a connection may go to: the literal, or every address the name resolves to,
    /// each of them checked unless the host is allowed.
    private func checkedAddresses(of target: FetchTarget, deadline: NIODeadline) async throws(FetchError) -> [SocketAddress] {
        let allowed = self.policy.allowedHosts.contains(target.host)
        let addresses: [SocketAddress]
        if let literal = target.literal {
            addresses = [literal]
        } else {
            addresses = try await self.resolve(target, deadline: deadline)
        }
        guard !allowed else { return addresses }
        for address in addresses {
            if let reason = AddressPolicy.reason(address) {
                let shown = address.ipAddress ?? "\(address)"
                self.logger.notice(
                    "refused to fetch from a forbidden address",
                    metadata: ["origin": .string(target.origin), "address": .string(shown), "reason": .string(reason)]
                )
                let how = target.literal == nil ? "resolves to" : "is"
                throw FetchError(.refusedAddress, "refused \(target.origin): the host \(target.host) \(how) \(shown), which is \(reason)")
            }
        }
        return addresses
    }

    /// getaddrinfo on NIO's thread pool, raced against the deadline.
    private func resolve(_ target: FetchTarget, deadline: NIODeadline) async throws(FetchError) -> [SocketAddress] {
        guard NIODeadline.now() < deadline else {
            throw FetchError(.timeout, "no time was left to resolve \(target.host)")
        }
        let loop = self.eventLoopGroup.next()
        let promise = loop.makePromise(of: [SocketAddress].self)
        let host = target.host
        let port = target.port
        let timer = loop.scheduleTask(deadline: deadline) {
            promise.fail(FetchError(.timeout, "resolving \(host) took too long"))
        }
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () throws(FetchError) -> [SocketAddress] in
            try HostResolver.addresses(of: host, port: port)
        }.cascade(to: promise)
        defer { timer.cancel() }
        do {
            return try await promise.futureResult.get()
        } catch let error as FetchError {
            throw error
        } catch {
            throw FetchError(.resolutionFailed, "could not resolve \(host): \(error)")
        }
    }

    /// A connection to exactly `address`, with TLS for https and a handler that sends `request`
    /// and settles `outcome`.
    private func connect(
        to address: SocketAddress,
        on loop: any EventLoop,
        target: FetchTarget,
        request: HTTPRequestHead,
        sslContext: NIOSSLContext?,
        deadline: NIODeadline,
        outcome: EventLoopPromise<FetchResponse>
    ) async throws(FetchError) -> any Channel {
        let remaining = deadline - NIODeadline.now()
        guard remaining > .zero else {
            throw FetchError(.timeout, "no time was left to connect to \(target.origin)")
        }
        let origin = target.origin
        let serverName = target.tlsServerName
        let maximumBytes = self.policy.maximumBytes
        let bootstrap = ClientBootstrap(group: loop)
            // An address that swallows the SYN must not use up the whole fetch: the next one gets a turn.
            .connectTimeout(min(remaining, Self.connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    try pipeline.addHTTPClientHandlers()
                    try pipeline.addHandler(
                        FetchResponseHandler(request: request, origin: origin, maximumBytes: maximumBytes, deadline: deadline, outcome: outcome)
                    )
                }
            }
        self.logger.debug("connecting", metadata: ["origin": .string(origin), "address": .string(address.ipAddress ?? "?")])
        do {
            return try await bootstrap.connect(to: address).get()
        } catch {
            if NIODeadline.now() >= deadline {
                throw FetchError(.timeout, "connecting to \(origin) took too long")
            }
            throw FetchError(.connectionFailed, "could not connect to \(origin) at \(address.ipAddress ?? "?"): \(error)")
        }
    }
}
