import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The network part of a client address, which is all analytics and request logs keep:
/// IPv4 to its /24 ("203.0.113.0"), IPv6 to its /48 ("2001:db8:1::"). An IPv4 address mapped
/// into IPv6 ("::ffff:203.0.113.9") is treated as IPv4. Anything unparseable becomes "unknown",
/// so a malformed forwarded header can never put its text in the log.
public enum ClientNetwork {
    public static func truncate(_ address: String) -> String {
        var text = address.trimmingCharacters(in: .whitespaces)
        // "[2001:db8::1]" and a zone id ("fe80::1%eth0") are not part of the address.
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return self.format(v4: withUnsafeBytes(of: v4) { Array($0) })
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return "unknown" }
        var bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return self.format(v4: Array(bytes[12..<16]))
        }
        for index in 6..<16 { bytes[index] = 0 }
        var masked = in6_addr()
        withUnsafeMutableBytes(of: &masked) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &masked, &buffer, socklen_t(buffer.count)) != nil else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func format(v4 bytes: [UInt8]) -> String {
        "\(bytes[0]).\(bytes[1]).\(bytes[2]).0"
    }
}
