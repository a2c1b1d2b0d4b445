import EaselCore
import Foundation
import HTTPTypes
import Hummingbird

/// Behind a reverse proxy every request comes from the proxy's address, which would make
/// per-IP sign-in throttling hit everyone at once. When the peer is a trusted proxy
/// (EASEL_TRUSTED_PROXIES), the client is the right-most address in X-Forwarded-For that is
/// not itself a trusted proxy, and a `CF-IPCountry` header gives the approximate country.
/// From anyone else, both headers are ignored: they are trivially forged. When no trusted header
/// gave a country, a MaxMind database (EASEL_GEOIP_DB) looks the client's address up; the full
/// address is only used here, in memory (analytics keep its network part).
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let trusted: TrustedProxies
    /// The header holding the two-letter country (EASEL_COUNTRY_HEADER); nil ignores it.
    var countryHeader: HTTPField.Name? = HTTPField.Name("CF-IPCountry")
    /// The header holding the region (EASEL_REGION_HEADER); nil ignores it.
    var regionHeader: HTTPField.Name?
    /// Country and region by address, for clients no trusted header placed; nil looks nothing up.
    var geoIP: GeoIPDatabase?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !self.trusted.isEmpty, self.trusted.contains(context.clientIP) else { return try await next(request, self.located(context)) }
        var context = context
        let forwarded = request.headers[values: HTTPField.Name("X-Forwarded-For")!]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if let client = forwarded.reversed().first(where: { !self.trusted.contains($0) }) {
            context.clientIP = client
        }
        if let header = self.countryHeader, let country = request.headers[header], country.count == 2,
            country.allSatisfy({ $0.isASCII && $0.isLetter }), country.uppercased() != "XX"
        {
            context.country = country.uppercased()
        }
        // A region name or code ("Bavaria", "BY"): short, printable, and nothing more.
        if let header = self.regionHeader, let region = request.headers[header]?.trimmingCharacters(in: .whitespaces), !region.isEmpty,
            region.count <= 64, region.unicodeScalars.allSatisfy({ !CharacterSet.controlCharacters.contains($0) })
        {
            context.region = region
        }
        return try await next(request, self.located(context))
    }

    /// The context with the database's country and region when no header gave a country.
    private func located(_ context: Context) -> Context {
        guard context.country == nil, let geoIP = self.geoIP else { return context }
        let location = geoIP.location(ip: context.clientIP)
        guard let country = location.country else { return context }
        var context = context
        context.country = country
        context.region = context.region ?? location.region
        return context
    }
}

/// Addresses and IPv4 CIDR ranges ("127.0.0.1", "10.0.0.0/8", "::1").
public struct TrustedProxies: Sendable, Equatable {
    let exact: Set<String>
    let ranges: [(network: UInt32, mask: UInt32)]

    public init(_ entries: [String]) throws {
        var exact: Set<String> = []
        var ranges: [(UInt32, UInt32)] = []
        for entry in entries {
            let parts = entry.split(separator: "/")
            if parts.count == 2, let base = Self.ipv4(String(parts[0])), let bits = Int(parts[1]), (0...32).contains(bits) {
                let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
                ranges.append((base & mask, mask))
            } else if parts.count == 1, Self.ipv4(entry) != nil || entry.contains(":") {
                exact.insert(entry.lowercased())
            } else {
                throw InvalidEntry(entry: entry)
            }
        }
        self.exact = exact
        self.ranges = ranges
    }

    public struct InvalidEntry: Error { public var entry: String }

    var isEmpty: Bool { self.exact.isEmpty && self.ranges.isEmpty }

    public func contains(_ address: String) -> Bool {
        if self.exact.contains(address.lowercased()) { return true }
        guard let value = Self.ipv4(address) else { return false }
        return self.ranges.contains { value & $0.mask == $0.network }
    }

    static func ipv4(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard let byte = UInt8(octet) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }

    public static func == (lhs: TrustedProxies, rhs: TrustedProxies) -> Bool {
        lhs.exact == rhs.exact && lhs.ranges.map(\.network) == rhs.ranges.map(\.network) && lhs.ranges.map(\.mask) == rhs.ranges.map(\.mask)
    }
}
