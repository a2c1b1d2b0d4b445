import Crypto
import Foundation

/// Random tokens for sessions, links and CSRF, and the hashes stored in their place.
public enum SecureToken {
    /// 256 random bits as base64url, for cookies and links.
    public static func make(bytes: Int = 32) -> String {
        let key = SymmetricKey(size: .init(bitCount: bytes * 8))
        return key.withUnsafeBytes { Data($0) }.base64URLEncoded()
    }

    /// A 6-digit code, uniformly drawn.
    public static func sixDigitCode() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(format: "%06d", Int.random(in: 0..<1_000_000, using: &generator))
    }

    /// SHA-256, what the database keeps instead of the token.
    public static func hash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// Constant-time comparison of two strings.
    public static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension Data {
    public func base64URLEncoded() -> String {
        self.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
