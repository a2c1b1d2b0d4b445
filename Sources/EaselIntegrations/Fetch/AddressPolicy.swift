import NIOCore

/// Which IP addresses a fetch of an outside URL must never connect to: everything that is not
/// a globally reachable unicast address (loopback, private, link-local and so cloud metadata at
/// 169.254.169.254, CGNAT, multicast, unspecified, broadcast, reserved, documentation and
/// benchmarking ranges, unique-local and site-local IPv6). An IPv6 address that carries an IPv4
/// one (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the
/// IPv4 address; Teredo and the rest of `2001::/23` are refused outright.
///
/// Pure functions of the address: names are resolved, and allowed hosts skipped, by the caller.
public enum AddressPolicy {
    public static func isForbidden(_ address: SocketAddress) -> Bool {
        self.reason(address) != nil
    }

    /// For an IP literal ("10.0.0.1", "::1", "[::1]"); anything that does not parse as one is
    /// forbidden.
    public static func isForbidden(_ ipAddress: String) -> Bool {
        self.reason(ipAddress) != nil
    }

    /// Why `address` is forbidden ("loopback", "private", …), or nil when it may be reached.
    public static func reason(_ address: SocketAddress) -> String? {
        switch address {
        // The address bytes sit at the same offsets in sockaddr_in (4) and sockaddr_in6 (8) on
        // Linux and Darwin; reading them raw avoids the C structs' members, which Swift only
        // sees through NIO's internal C module here.
        case .v4(let v4):
            let bytes = withUnsafeBytes(of: v4.address) { Array($0[4..<8]) }
            return self.reason(ipv4: bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address) { Array($0[8..<24]) }
            return self.reason(ipv6: bytes)
        case .unixDomainSocket:
            return "not an IP address"
        }
    }

    public static func reason(_ ipAddress: String) -> String? {
        var literal = ipAddress
        if literal.hasPrefix("["), literal.hasSuffix("]") {
            literal = String(literal.dropFirst().dropLast())
        }
        guard let address = try? SocketAddress(ipAddress: literal, port: 0) else {
            return "not an IP address"
        }
        return self.reason(address)
    }

    /// Special-purpose IPv4 blocks that are not globally reachable (IANA's registry), as
    /// (network, prefix length, reason); first match wins.
    private static let ipv4Blocks: [(network: UInt32, prefix: Int, reason: String)] = [
        (0xFFFF_FFFF, 32, "broadcast"),
        (0x0000_0000, 32, "unspecified"),
        (0x0000_0000, 8, "\"this network\" (0.0.0.0/8)"),
        (0x0A00_0000, 8, "private (10.0.0.0/8)"),
        (0x6440_0000, 10, "shared address space (CGNAT, 100.64.0.0/10)"),
        (0x7F00_0000, 8, "loopback"),
        (0xA9FE_0000, 16, "link-local (169.254.0.0/16, cloud metadata)"),
        (0xAC10_0000, 12, "private (172.16.0.0/12)"),
        (0xC000_0000, 24, "IETF protocol assignments (192.0.0.0/24)"),
        (0xC000_0200, 24, "documentation (192.0.2.0/24)"),
        (0xC058_6300, 24, "6to4 relay anycast (192.88.99.0/24)"),
        (0xC0A8_0000, 16, "private (192.168.0.0/16)"),
        (0xC612_0000, 15, "benchmarking (198.18.0.0/15)"),
        (0xC633_6400, 24, "documentation (198.51.100.0/24)"),
        (0xCB00_7100, 24, "documentation (203.0.113.0/24)"),
        (0xE000_0000, 4, "multicast"),
        (0xF000_0000, 4, "reserved (240.0.0.0/4)"),
    ]

    /// `address` in host byte order.
    static func reason(ipv4 address: UInt32) -> String? {
        for block in self.ipv4Blocks {
            let mask: UInt32 = block.prefix == 0 ? 0 : ~UInt32(0) << (32 - block.prefix)
            if address & mask == block.network {
                return block.reason
            }
        }
        return nil
    }

    /// `bytes`: the 16 bytes of an IPv6 address in network order.
    static func reason(ipv6 bytes: [UInt8]) -> String? {
        precondition(bytes.count == 16)
        func embeddedIPv4(at offset: Int) -> UInt32 {
            bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        func starts(with prefix: [UInt8], bits: Int) -> Bool {
            var remaining = bits
            for (index, byte) in prefix.enumerated() where remaining > 0 {
                let mask: UInt8 = remaining >= 8 ? 0xFF : ~UInt8(0) << (8 - remaining)
                if bytes[index] & mask != byte & mask { return false }
                remaining -= 8
            }
            return true
        }
        func judgedAsIPv4(_ what: String, at offset: Int) -> String? {
            let v4 = embeddedIPv4(at: offset)
            return self.reason(ipv4: v4).map { "\(what) of an IPv4 address that is \($0)" }
        }

        if bytes.allSatisfy({ $0 == 0 }) { return "unspecified" }
        if bytes[0..<15].allSatisfy({ $0 == 0 }), bytes[15] == 1 { return "loopback" }
        // ::ffff:a.b.c.d
        if starts(with: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], bits: 96) {
            return judgedAsIPv4("IPv4-mapped", at: 12)
        }
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix.
        if starts(with: [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0], bits: 96) {
            return judgedAsIPv4("NAT64", at: 12)
        }
        // 2002:aabb:ccdd::/48 carries a.b.c.d.
        if starts(with: [0x20, 0x02], bits: 16) {
            return judgedAsIPv4("6to4", at: 2)
        }
        if starts(with: [0x20, 0x01, 0x00, 0x00], bits: 32) { return "Teredo (2001::/32)" }
        if starts(with: [0x20, 0x01, 0x0D, 0xB8], bits: 32) { return "documentation (2001:db8::/32)" }
        if starts(with: [0x20, 0x01, 0x00], bits: 23) { return "IETF protocol assignments (2001::/23)" }
        if starts(with: [0x3F, 0xFF], bits: 20) { return "documentation (3fff::/20)" }
        if starts(with: [0x20], bits: 3) { return nil }  // 2000::/3, global unicast

        if starts(with: [0xFF], bits: 8) { return "multicast" }
        if starts(with: [0xFE, 0x80], bits: 10) { return "link-local (fe80::/10)" }
        if starts(with: [0xFE, 0xC0], bits: 10) { return "site-local (fec0::/10)" }
        if starts(with: [0xFC], bits: 7) { return "unique local (fc00::/7)" }
        if starts(with: [0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01], bits: 48) { return "local-use NAT64 (64:ff9b:1::/48)" }
        if starts(with: [0x01, 0x00, 0, 0, 0, 0, 0, 0], bits: 64) { return "discard-only (100::/64)" }
        if starts(with: [0x00], bits: 8) { return "reserved (::/8, IPv4-compatible)" }
        return "not global unicast (outside 2000::/3)"
    }
}
