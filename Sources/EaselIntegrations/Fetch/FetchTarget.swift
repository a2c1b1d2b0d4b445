import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One hop of a fetch: a URL checked for what may be fetched, split into what the connection
/// and the request need.
struct FetchTarget: Sendable {
    let url: URL
    /// "http" or "https".
    let scheme: String
    /// Lowercased; IDNA hosts in their ASCII (punycode) form; IPv6 without brackets.
    let host: String
    let port: Int
    /// Set when the host is an IP literal: no lookup, the literal is what gets checked.
    let literal: SocketAddress?
    /// `/path?query` as sent on the request line.
    let requestTarget: String

    var isHTTPS: Bool { self.scheme == "https" }

    /// The Host header: brackets around IPv6, the port only when it is not the scheme's default.
    var hostHeader: String {
        let name = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == (self.isHTTPS ? 443 : 80) ? name : "\(name):\(self.port)"
    }

    /// "https://example.com:8443": what logs and messages show, never the path or query (result
    /// URLs carry signatures there).
    var origin: String { "\(self.scheme)://\(self.hostHeader)" }

    /// The name TLS asks for (SNI) and checks the certificate against; nil for an IP literal,
    /// which NIOSSL then checks against the connected address.
    var tlsServerName: String? {
        guard self.literal == nil else { return nil }
        return self.host.hasSuffix(".") ? String(self.host.dropLast()) : self.host
    }

    init(_ url: URL) throws(FetchError) {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw FetchError(.badURL, "only http and https URLs are fetched, not \(url.scheme.map { "\($0):" } ?? "a URL without a scheme")")
        }
        guard url.user(percentEncoded: true) == nil, url.password(percentEncoded: true) == nil else {
            throw FetchError(.badURL, "a URL with credentials (user@host) is not fetched")
        }
        // `host` is percent-decoded, IDNA-encoded and without brackets.
        guard let rawHost = url.host, !rawHost.isEmpty else {
            throw FetchError(.badURL, "the URL has no host")
        }
        let host = FetchPolicy.normalizedHost(rawHost)
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else {
            throw FetchError(.badURL, "port \(port) is out of range")
        }

        let literal = try? SocketAddress(ipAddress: host, port: port)
        if literal == nil {
            let allowed = host.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
            }
            guard allowed, host.utf8.count <= 253, !host.hasPrefix(".") else {
                throw FetchError(.badURL, "\"\(String(host.prefix(80)))\" is not a usable host name")
            }
        }

        var requestTarget = url.path(percentEncoded: true)
        if requestTarget.isEmpty { requestTarget = "/" }
        if let query = url.query(percentEncoded: true) { requestTarget += "?" + query }
        guard requestTarget.hasPrefix("/"), requestTarget.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw FetchError(.badURL, "the URL's path cannot be sent as it is")
        }

        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.literal = literal
        self.requestTarget = requestTarget
    }
}

/// Name lookups through the system's resolver (getaddrinfo), which blocks: run it off the event loop.
enum HostResolver {
    /// Every IPv4 and IPv6 address of `host`, in the resolver's order, without duplicates.
    static func addresses(of host: String, port: Int) throws(FetchError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        // No AI_ADDRCONFIG: every A and AAAA record is wanted, to be checked.
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, String(port), &hints, &list)
        guard code == 0, let first = list else {
            let reason = code == 0 ? "no addresses" : String(cString: gai_strerror(code))
            throw FetchError(.resolutionFailed, "could not resolve \(host): \(reason)")
        }
        defer { freeaddrinfo(first) }

        var addresses: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let info = node {
            node = info.pointee.ai_next
            guard let raw = info.pointee.ai_addr else { continue }
            let address: SocketAddress
            switch info.pointee.ai_family {
            case AF_INET:
                address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
            case AF_INET6:
                address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
            default:
                continue
            }
            if !addresses.contains(where: { $0.ipAddress == address.ipAddress }) {
                addresses.append(address)
            }
        }
        guard !addresses.isEmpty else {
            throw FetchError(.resolutionFailed, "\(host) has no IPv4 or IPv6 address")
        }
        return addresses
    }
}
