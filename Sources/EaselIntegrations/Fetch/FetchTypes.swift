import Foundation

/// The limits of one fetch: how much, how long, how many redirects, and which hosts may be
/// reached although their addresses would be refused (loopback in tests, an internal mirror).
public struct FetchPolicy: Sendable, Equatable {
    public static let defaultMaximumBytes = 50 * 1024 * 1024

    /// The largest body accepted; a bigger Content-Length, or a streamed body that grows past it,
    /// ends the fetch with `.tooLarge`.
    public var maximumBytes: Int
    /// For the whole fetch: every name lookup, connection and redirect hop together.
    public var timeout: Duration
    /// Redirects followed before `.tooManyRedirects`; 0 follows none.
    public var maximumRedirects: Int
    /// Exact host names or IP literals (lowercased, IPv6 without brackets) whose addresses are
    /// not checked. Nothing else is matched: allowing "example.com" does not allow its subdomains,
    /// and allowing "127.0.0.1" does not allow "localhost" or "127.1".
    public var allowedHosts: Set<String>

    public init(
        maximumBytes: Int = FetchPolicy.defaultMaximumBytes,
        timeout: Duration = .seconds(60),
        maximumRedirects: Int = 3,
        allowedHosts: Set<String> = []
    ) {
        self.maximumBytes = maximumBytes
        self.timeout = timeout
        self.maximumRedirects = maximumRedirects
        self.allowedHosts = Set(allowedHosts.map(FetchPolicy.normalizedHost))
    }

    /// "LocalHost" → "localhost", "[::1]" → "::1": the form hosts are compared in.
    static func normalizedHost(_ host: String) -> String {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        return host
    }
}

/// A body fetched with a 2xx answer, after any redirects.
public struct FetchedResource: Sendable, Equatable {
    public var data: Data
    /// The Content-Type header as sent (callers still check the bytes).
    public var contentType: String?
    /// The URL the body came from: the request's, or the last redirect's.
    public var finalURL: URL
    public var status: Int

    public init(data: Data, contentType: String?, finalURL: URL, status: Int) {
        self.data = data
        self.contentType = contentType
        self.finalURL = finalURL
        self.status = status
    }
}

/// Why a fetch failed. The kind decides what the caller does next (`isRetryable`); the message
/// says what happened for the log and names the host, never the full URL (result URLs carry
/// signatures in their query).
public struct FetchError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// Not an http(s) URL, credentials in it, an unusable host or port, an unusable
        /// redirect Location, or a redirect from https down to http.
        case badURL
        /// The host is (or resolves to) an address that must not be reached; the message names
        /// the host and the address.
        case refusedAddress
        /// The name did not resolve.
        case resolutionFailed
        /// No connection, or it broke before the answer was complete.
        case connectionFailed
        /// The whole fetch took longer than the policy allows.
        case timeout
        /// Content-Length, or the body received so far, exceeds the policy's byte cap.
        case tooLarge
        /// A final answer outside 2xx (a redirect status without Location included).
        case httpStatus(Int)
        /// More redirects than the policy allows.
        case tooManyRedirects
        /// Not HTTP/1.1 as expected, or a TLS handshake that failed (certificate not accepted).
        case protocolError

        public var description: String {
            switch self {
            case .badURL: "bad_url"
            case .refusedAddress: "refused_address"
            case .resolutionFailed: "resolution_failed"
            case .connectionFailed: "connection_failed"
            case .timeout: "timeout"
            case .tooLarge: "too_large"
            case .httpStatus(let status): "http_status_\(status)"
            case .tooManyRedirects: "too_many_redirects"
            case .protocolError: "protocol_error"
            }
        }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// Whether the same fetch may succeed later: network trouble, name lookups, timeouts,
    /// 5xx, 408 and 429. Refusals, bad URLs, size and redirect limits and other statuses
    /// (404, 403, 410, …) will not change by trying again.
    public var isRetryable: Bool {
        switch self.kind {
        case .timeout, .connectionFailed, .resolutionFailed:
            true
        case .httpStatus(let status):
            status >= 500 || status == 429 || status == 408
        case .badURL, .refusedAddress, .tooLarge, .tooManyRedirects, .protocolError:
            false
        }
    }

    public var description: String { "\(self.kind): \(self.message)" }
}

/// Fetches a URL from the outside world. `GuardedFetcher` is the real one; tests of callers
/// may stand in their own. Retrying is the caller's choice (see `FetchError.isRetryable`).
public protocol URLFetcher: Sendable {
    func fetch(_ url: URL) async throws(FetchError) -> FetchedResource
}
