import Crypto
import Foundation

/// Short-lived values signed with a key derived from EASEL_SECRET_KEY, for state a browser
/// carries between two requests (the pending second sign-in step, say).
public struct SignedValue: Sendable {
    private let key: [UInt8]

    /// `purpose` separates keys: a value signed for one use is worthless for another.
    public init(secret: String, purpose: String) {
        self.key = Array(HMAC<SHA256>.authenticationCode(for: Data(purpose.utf8), using: SymmetricKey(data: Data(secret.utf8))))
    }

    /// "value.expires.signature", safe in a cookie.
    public func sign(_ value: String, expiresAt: Date) -> String {
        let payload = "\(Data(value.utf8).base64URLEncoded()).\(Int(expiresAt.timeIntervalSince1970))"
        return payload + "." + self.mac(payload)
    }

    /// The value, when the signature is right and the time has not run out.
    public func verify(_ signed: String, now: Date = Date()) -> String? {
        let parts = signed.split(separator: ".")
        guard parts.count == 3, let expires = Int(parts[1]), expires > Int(now.timeIntervalSince1970) else { return nil }
        let payload = "\(parts[0]).\(parts[1])"
        guard SecureToken.equal(self.mac(payload), String(parts[2])) else { return nil }
        var base64 = String(parts[0]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map { String(decoding: $0, as: UTF8.self) }
    }

    private func mac(_ payload: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: SymmetricKey(data: self.key))).base64URLEncoded()
    }
}
