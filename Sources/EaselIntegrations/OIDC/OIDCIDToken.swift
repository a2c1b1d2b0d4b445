import Foundation
import JWTKit

/// Who signed in, as the provider vouches for it in a verified ID token.
public struct OIDCIdentity: Sendable, Equatable {
    /// The configured issuer (Google's short form "accounts.google.com" is reported as the URL),
    /// so (issuer, subject) is a stable key for linking accounts.
    public var issuer: String
    /// The provider's id for the person; link accounts by this, never by email alone.
    public var subject: String
    public var email: String?
    /// Trust `email` only when this is true.
    public var emailVerified: Bool
    public var name: String?
    public var pictureURL: URL?

    public init(issuer: String, subject: String, email: String?, emailVerified: Bool, name: String?, pictureURL: URL?) {
        self.issuer = issuer
        self.subject = subject
        self.email = email
        self.emailVerified = emailVerified
        self.name = name
        self.pictureURL = pictureURL
    }
}

/// The JOSE header of an ID token, read before any key is chosen.
struct IDTokenHeader: Decodable {
    var alg: String?
    var kid: String?

    static func parse(_ token: String) throws(OIDCError) -> IDTokenHeader {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw .malformedIDToken(reason: "it does not have the three parts of a signed JWT")
        }
        guard let json = OIDCBase64URL.decode(parts[0]) else {
            throw .malformedIDToken(reason: "its header is not base64url")
        }
        do {
            return try JSONDecoder().decode(IDTokenHeader.self, from: json)
        } catch {
            throw .malformedIDToken(reason: "its header is not a JSON object with string alg and kid")
        }
    }
}

/// The claims of an ID token Easel reads. jwt-kit checks the signature; the claims are
/// checked by `check(...)` with the client's clock, so tests can move time.
struct IDTokenClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: AudienceClaim
    var azp: String?
    var exp: Date
    var iat: Date
    var nbf: Date?
    var nonce: String?
    var email: String?
    var emailVerified: FlexibleBool?
    var name: String?
    var picture: String?

    enum CodingKeys: String, CodingKey {
        case iss, sub, aud, azp, exp, iat, nbf, nonce, email, name, picture
        case emailVerified = "email_verified"
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {
        // Deliberately empty: see `check(...)`.
    }

    /// OpenID Connect Core §3.1.3.7, in the order that gives the most useful error.
    func check(configuration: OIDCConfiguration, expectedNonce: String, now: Date) throws(OIDCError) {
        let issuers = configuration.acceptedTokenIssuers
        guard issuers.contains(self.iss) else {
            throw .wrongIssuer(expected: issuers.sorted(), actual: self.iss)
        }
        guard self.aud.value.contains(configuration.clientID) else {
            throw .wrongAudience(audience: self.aud.value, authorizedParty: self.azp)
        }
        // With several audiences the presenter must be us; when named at all, it must be us too.
        if self.aud.value.count > 1 || self.azp != nil {
            guard self.azp == configuration.clientID else {
                throw .wrongAudience(audience: self.aud.value, authorizedParty: self.azp)
            }
        }
        let skew = OIDCDuration.seconds(configuration.clockSkew)
        guard now.addingTimeInterval(-skew) < self.exp else {
            throw .expired(at: self.exp)
        }
        guard self.iat <= now.addingTimeInterval(skew) else {
            throw .notYetValid(at: self.iat)
        }
        if let nbf = self.nbf, nbf > now.addingTimeInterval(skew) {
            throw .notYetValid(at: nbf)
        }
        guard let nonce = self.nonce, Self.constantTimeEqual(nonce, expectedNonce) else {
            throw .nonceMismatch
        }
        guard !self.sub.isEmpty else {
            throw .malformedIDToken(reason: "its subject (sub) is empty")
        }
    }

    func identity(issuer: String) -> OIDCIdentity {
        let picture = self.picture.flatMap(URL.init(string:)).flatMap { url in
            ["https", "http"].contains(url.scheme?.lowercased() ?? "") ? url : nil
        }
        return OIDCIdentity(
            issuer: issuer,
            subject: self.sub,
            email: self.email,
            emailVerified: self.emailVerified?.value ?? false,
            name: self.name,
            pictureURL: picture
        )
    }

    private static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// `email_verified` is a boolean in the standard, but some providers send the string "true".
/// Anything that is not clearly true counts as false.
struct FlexibleBool: Codable, Sendable {
    var value: Bool

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let bool = try? container.decode(Bool.self) {
            self.value = bool
        } else if let string = try? container.decode(String.self) {
            self.value = string.lowercased() == "true"
        } else {
            self.value = false
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.value)
    }
}

enum OIDCBase64URL {
    /// Without padding, as JOSE and PKCE want it.
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}

enum OIDCDuration {
    static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
