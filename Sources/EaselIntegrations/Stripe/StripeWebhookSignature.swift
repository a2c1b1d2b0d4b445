import Crypto
import Foundation

/// Why a webhook's `Stripe-Signature` was refused. The kind decides nothing but the log line:
/// every kind is answered 400, and the event is not applied.
public struct StripeSignatureError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        case missingHeader
        case malformedHeader
        case noMatchingSignature
        case timestampTooOld
        case timestampInFuture
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message }
}

/// Stripe's webhook signatures (scheme `v1`): `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
/// each `v1` an HMAC-SHA256 of `t + "." + raw body` under an endpoint secret. While a secret is
/// being rolled, Stripe signs with the old and the new one and sends one `v1` for each.
public enum StripeWebhookSignature {
    /// A header longer than this is not Stripe's (it sends a timestamp and a few signatures).
    static let maximumHeaderLength = 4_096
    /// More signatures than this are not a secret roll but an attempt to make us hash a lot.
    static let maximumSignatures = 8

    /// Checks `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `t + "." + raw body` with
    /// HMAC-SHA256 of each secret, constant-time, against every v1 (other schemes ignored);
    /// refuses timestamps more than `tolerance` seconds old OR in the future.
    ///
    /// The signature is checked before the timestamp, so a timestamp error always means an
    /// authentic but replayed (or clock-skewed) delivery. Empty secrets are ignored: an HMAC under
    /// an empty key proves nothing.
    public static func verify(
        payload: [UInt8], header: String?, secrets: [String], now: Date = Date(), tolerance: TimeInterval = 300
    ) throws(StripeSignatureError) {
        guard let header, !header.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw StripeSignatureError(.missingHeader, "the request has no Stripe-Signature header")
        }
        guard header.utf8.count <= Self.maximumHeaderLength else {
            throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header is longer than \(Self.maximumHeaderLength) bytes")
        }
        let (timestamp, signatures) = try Self.parse(header)

        let keys = secrets.filter { !$0.isEmpty }
        guard !keys.isEmpty else {
            throw StripeSignatureError(.noMatchingSignature, "no Stripe webhook secret is configured, so no signature can match")
        }
        let signedPayload = Array("\(timestamp).".utf8) + payload
        var matched: UInt8 = 0
        for key in keys {
            let expected = Array(HMAC<SHA256>.authenticationCode(for: signedPayload, using: SymmetricKey(data: Array(key.utf8))))
            for signature in signatures {
                matched |= Self.constantTimeEqual(expected, signature)
            }
        }
        guard matched == 1 else {
            throw StripeSignatureError(
                .noMatchingSignature,
                "none of the \(signatures.count) v1 signature(s) in Stripe-Signature matches the body under the configured webhook secret(s)"
            )
        }

        let age = now.timeIntervalSince1970 - Double(timestamp)
        if age > tolerance {
            throw StripeSignatureError(
                .timestampTooOld, "the Stripe-Signature timestamp is \(Int(age)) s old; at most \(Int(tolerance)) s are accepted")
        }
        if -age > tolerance {
            throw StripeSignatureError(
                .timestampInFuture, "the Stripe-Signature timestamp is \(Int(-age)) s in the future; at most \(Int(tolerance)) s are accepted"
            )
        }
    }

    /// For tests and tools: the header Stripe would send.
    public static func header(payload: [UInt8], secret: String, timestamp: Date) -> String {
        self.header(payload: payload, secrets: [secret], timestamp: timestamp)
    }

    /// The header Stripe sends while a secret is being rolled: one `v1` per secret, in order.
    public static func header(payload: [UInt8], secrets: [String], timestamp: Date) -> String {
        let seconds = Int64(timestamp.timeIntervalSince1970.rounded(.down))
        let signedPayload = Array("\(seconds).".utf8) + payload
        let signatures = secrets.map { secret in
            let code = HMAC<SHA256>.authenticationCode(for: signedPayload, using: SymmetricKey(data: Array(secret.utf8)))
            return "v1=" + Self.hex(Array(code))
        }
        return (["t=\(seconds)"] + signatures).joined(separator: ",")
    }

    // MARK: Parsing

    /// The timestamp and the decoded `v1` signatures. Items are `key=value` separated by commas;
    /// schemes other than `v1` (such as Stripe's `v0` test scheme) are ignored, and so is a `v1`
    /// that is not 64 hex digits (it cannot match a SHA-256 code).
    static func parse(_ header: String) throws(StripeSignatureError) -> (timestamp: Int64, signatures: [[UInt8]]) {
        var timestamp: Int64?
        var signatures: [[UInt8]] = []
        var sawV1 = false
        for item in header.split(separator: ",", omittingEmptySubsequences: true) {
            guard let equals = item.firstIndex(of: "=") else {
                throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header has an item without '=': \(Self.quoted(item))")
            }
            let key = item[..<equals].trimmingCharacters(in: .whitespaces)
            let value = item[item.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "t":
                guard timestamp == nil else {
                    throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header has more than one timestamp")
                }
                guard !value.isEmpty, value.utf8.count <= 12, value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let seconds = Int64(value)
                else {
                    throw StripeSignatureError(.malformedHeader, "the Stripe-Signature timestamp is not a Unix time: \(Self.quoted(value))")
                }
                timestamp = seconds
            case "v1":
                sawV1 = true
                if let bytes = Self.bytes(hex: value), bytes.count == SHA256.byteCount {
                    signatures.append(bytes)
                }
            default:
                continue
            }
        }
        guard let timestamp else {
            throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header has no timestamp (t=…)")
        }
        guard sawV1 else {
            throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header has no v1 signature")
        }
        guard signatures.count <= Self.maximumSignatures else {
            throw StripeSignatureError(.malformedHeader, "the Stripe-Signature header has more than \(Self.maximumSignatures) v1 signatures")
        }
        return (timestamp, signatures)
    }

    /// 1 when equal, else 0, looking at every byte whatever it finds (lengths are public: both
    /// are SHA-256 codes here).
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> UInt8 {
        guard a.count == b.count else { return 0 }
        var difference: UInt8 = 0
        for index in a.indices {
            difference |= a[index] ^ b[index]
        }
        // 1 exactly when difference == 0, without a branch on the secret-dependent value.
        return UInt8(truncatingIfNeeded: (UInt16(difference) &- 1) >> 8) & 1
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func bytes(hex: String) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func quoted(_ text: some StringProtocol) -> String {
        "\"" + String(text.prefix(40)) + (text.count > 40 ? "…" : "") + "\""
    }
}
