import Crypto
import Foundation

/// AWS Signature Version 4 (AWS4-HMAC-SHA256): signs a request either with an `Authorization`
/// header or with query parameters (a presigned URL).
///
/// Pure: no I/O and no clock; the caller passes the date. The intermediate canonical request and
/// string to sign are returned so tests can compare them with AWS's test vectors.
public struct SigV4Signer: Sendable {
    /// The secret never appears in `description`, so a logged signer or configuration leaks nothing.
    public struct Credentials: Sendable, Equatable, CustomStringConvertible {
        public var accessKeyID: String
        public var secretAccessKey: String
        public var sessionToken: String?

        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }

        public var description: String {
            let token = self.sessionToken == nil ? "none" : "<redacted>"
            return "Credentials(accessKeyID: \(self.accessKeyID), secretAccessKey: <redacted>, sessionToken: \(token))"
        }
    }

    /// How `Request.path` is read and turned into the canonical URI.
    public enum PathMode: Sendable, Equatable {
        /// S3: `path` is the decoded path ("/bucket/my key.png"). It is URI-encoded exactly once and
        /// never normalised; send `SigV4Signer.encodePath(path)` as the request path.
        case s3
        /// Every other AWS service: `path` is the path as sent in the request line (already encoded
        /// once), and the canonical URI encodes it once more ("double encoding"). With `normalize`,
        /// "." and ".." segments and empty segments are removed first.
        case standard(normalize: Bool)
    }

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// A decoded query parameter; the signer does the percent-encoding.
    public struct QueryItem: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var query: [QueryItem]
        /// Every header to sign, in order; repeated names are joined with "," in this order.
        public var headers: [Header]
        /// Lowercase hex SHA-256 of the body, or `SigV4Signer.unsignedPayload`.
        public var payloadHash: String

        public init(method: String, path: String, query: [QueryItem] = [], headers: [Header], payloadHash: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// The result of header signing: add `headers` to the request as they are.
    public struct HeaderSignature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        /// The value of the `Authorization` header.
        public var authorization: String
        /// Headers the request must also carry: x-amz-date, x-amz-security-token,
        /// x-amz-content-sha256 (when asked for) and authorization.
        public var headers: [Header]
    }

    /// The result of query signing: `encodedQuery` is the whole query string of the presigned URL.
    public struct QuerySignature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        /// Every query parameter of the presigned URL, decoded, ending with X-Amz-Signature.
        public var queryItems: [QueryItem]
        /// `queryItems` percent-encoded and joined with "&", ready to follow the "?".
        public var encodedQuery: String
    }

    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// SHA-256 of an empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// Presigned URLs may last from 1 second to 7 days (AWS's limits).
    public static let presignedExpiryRange: ClosedRange<Int> = 1...604_800

    public var credentials: Credentials
    public var region: String
    public var service: String
    public var pathMode: PathMode
    /// Leave the session token out of what is signed and add it afterwards (some services, such as
    /// IoT, want this); by default the token is signed like any other header or parameter.
    public var omitSessionTokenFromSignature: Bool

    public init(
        credentials: Credentials,
        region: String,
        service: String,
        pathMode: PathMode,
        omitSessionTokenFromSignature: Bool = false
    ) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.pathMode = pathMode
        self.omitSessionTokenFromSignature = omitSessionTokenFromSignature
    }

    // MARK: Header signing

    /// Signs `request` with an `Authorization` header. With `addContentSHA256Header` (S3 requires
    /// it) the payload hash is also sent, and signed, as x-amz-content-sha256.
    public func signHeaders(_ request: Request, date: Date, addContentSHA256Header: Bool = false) -> HeaderSignature {
        let timestamp = Self.timestamp(date)
        let replaced: Set<String> = ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]
        var signedHeaders = request.headers.filter { !replaced.contains($0.name.lowercased()) }
        var addedHeaders: [Header] = []
        var unsignedHeaders: [Header] = []

        addedHeaders.append(Header("X-Amz-Date", timestamp))
        if let token = self.credentials.sessionToken {
            if self.omitSessionTokenFromSignature {
                unsignedHeaders.append(Header("X-Amz-Security-Token", token))
            } else {
                addedHeaders.append(Header("X-Amz-Security-Token", token))
            }
        }
        if addContentSHA256Header {
            addedHeaders.append(Header("x-amz-content-sha256", request.payloadHash))
        }
        signedHeaders += addedHeaders

        let canonical = self.canonicalRequest(
            method: request.method,
            path: request.path,
            encodedQuery: Self.canonicalQuery(request.query),
            headers: signedHeaders,
            payloadHash: request.payloadHash
        )
        let stringToSign = self.stringToSign(timestamp: timestamp, canonicalRequest: canonical.text)
        let signature = self.signature(for: stringToSign, timestamp: timestamp)
        let credential = "\(self.credentials.accessKeyID)/\(self.scope(timestamp))"
        let authorization = "\(Self.algorithm) Credential=\(credential), SignedHeaders=\(canonical.signedHeaders), Signature=\(signature)"

        return HeaderSignature(
            canonicalRequest: canonical.text,
            stringToSign: stringToSign,
            signature: signature,
            authorization: authorization,
            headers: addedHeaders + unsignedHeaders + [Header("Authorization", authorization)]
        )
    }

    // MARK: Query signing

    /// Signs `request` with query parameters, for a URL that works until `expiresIn` seconds after
    /// `date`. Every header in `request.headers` (usually just Host) must be sent with the URL.
    public func presign(_ request: Request, date: Date, expiresIn seconds: Int) throws(SigV4Error) -> QuerySignature {
        guard Self.presignedExpiryRange.contains(seconds) else { throw SigV4Error.expiryOutOfRange(seconds) }
        let timestamp = Self.timestamp(date)
        let authNames: Set<String> = [
            "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
            "X-Amz-Security-Token", "X-Amz-Signature",
        ]
        var query = request.query.filter { !authNames.contains($0.name) }
        query.append(QueryItem("X-Amz-Algorithm", Self.algorithm))
        query.append(QueryItem("X-Amz-Credential", "\(self.credentials.accessKeyID)/\(self.scope(timestamp))"))
        query.append(QueryItem("X-Amz-Date", timestamp))
        query.append(QueryItem("X-Amz-Expires", String(seconds)))
        query.append(QueryItem("X-Amz-SignedHeaders", Self.signedHeaderList(request.headers)))
        var unsignedQuery: [QueryItem] = []
        if let token = self.credentials.sessionToken {
            if self.omitSessionTokenFromSignature {
                unsignedQuery.append(QueryItem("X-Amz-Security-Token", token))
            } else {
                query.append(QueryItem("X-Amz-Security-Token", token))
            }
        }

        let canonical = self.canonicalRequest(
            method: request.method,
            path: request.path,
            encodedQuery: Self.canonicalQuery(query),
            headers: request.headers,
            payloadHash: request.payloadHash
        )
        let stringToSign = self.stringToSign(timestamp: timestamp, canonicalRequest: canonical.text)
        let signature = self.signature(for: stringToSign, timestamp: timestamp)

        let items = Self.sortedQuery(query) + unsignedQuery + [QueryItem("X-Amz-Signature", signature)]
        let encodedQuery = items.map { "\(Self.uriEncode($0.name))=\(Self.uriEncode($0.value))" }.joined(separator: "&")
        return QuerySignature(
            canonicalRequest: canonical.text,
            stringToSign: stringToSign,
            signature: signature,
            queryItems: items,
            encodedQuery: encodedQuery
        )
    }

    // MARK: The steps

    /// The canonical URI for `path` under this signer's `pathMode`.
    public func canonicalPath(_ path: String) -> String {
        switch self.pathMode {
        case .s3:
            return Self.encodePath(path)
        case .standard(let normalize):
            return Self.encodePath(normalize ? Self.normalizePath(path) : path)
        }
    }

    func canonicalRequest(
        method: String,
        path: String,
        encodedQuery: String,
        headers: [Header],
        payloadHash: String
    ) -> (text: String, signedHeaders: String) {
        // Lowercase names, sorted; repeated headers keep their order, joined with ",".
        var valuesByName: [String: [String]] = [:]
        for header in headers {
            valuesByName[header.name.lowercased(), default: []].append(Self.trimAll(header.value))
        }
        let names = valuesByName.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let canonicalHeaders = names.map { "\($0):\(valuesByName[$0, default: []].joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let text = [
            method.uppercased(),
            self.canonicalPath(path),
            encodedQuery,
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")
        return (text, signedHeaders)
    }

    func stringToSign(timestamp: String, canonicalRequest: String) -> String {
        [
            Self.algorithm,
            timestamp,
            self.scope(timestamp),
            Self.hexSHA256(Data(canonicalRequest.utf8)),
        ].joined(separator: "\n")
    }

    /// HMAC chain: "AWS4"+secret → date → region → service → "aws4_request" → string to sign.
    func signature(for stringToSign: String, timestamp: String) -> String {
        let day = String(timestamp.prefix(8))
        var key = SymmetricKey(data: Data("AWS4\(self.credentials.secretAccessKey)".utf8))
        for part in [day, self.region, self.service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key))
        }
        let mac = HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key)
        return Self.hex(mac)
    }

    func scope(_ timestamp: String) -> String {
        "\(timestamp.prefix(8))/\(self.region)/\(self.service)/aws4_request"
    }

    // MARK: Helpers

    /// Lowercase hex SHA-256 of `data`, the form SigV4 wants for payload hashes.
    public static func hexSHA256(_ data: some DataProtocol) -> String {
        Self.hex(SHA256.hash(data: data))
    }

    /// URI-encodes every byte except the unreserved characters A–Z a–z 0–9 - . _ ~ (and "/" when
    /// `keepSlash`), with uppercase hex, as SigV4 requires.
    public static func uriEncode(_ string: String, keepSlash: Bool = false) -> String {
        var encoded = ""
        encoded.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                encoded.append("/")
            default:
                encoded += "%" + Self.hexDigits(byte, uppercase: true)
            }
        }
        return encoded
    }

    /// A path with every segment URI-encoded and the slashes kept.
    public static func encodePath(_ path: String) -> String {
        Self.uriEncode(path, keepSlash: true)
    }

    /// Removes empty, "." and ".." segments, keeping a leading and a trailing slash.
    static func normalizePath(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        var normalized = "/" + segments.joined(separator: "/")
        if path.hasSuffix("/") && !normalized.hasSuffix("/") {
            normalized += "/"
        }
        return normalized
    }

    static func canonicalQuery(_ items: [QueryItem]) -> String {
        Self.sortedQuery(items).map { "\(Self.uriEncode($0.name))=\(Self.uriEncode($0.value))" }.joined(separator: "&")
    }

    /// Sorted by encoded name, then encoded value, comparing bytes (AWS's order).
    static func sortedQuery(_ items: [QueryItem]) -> [QueryItem] {
        items
            .map { (item: $0, name: Array(Self.uriEncode($0.name).utf8), value: Array(Self.uriEncode($0.value).utf8)) }
            .sorted { lhs, rhs in
                lhs.name == rhs.name ? lhs.value.lexicographicallyPrecedes(rhs.value) : lhs.name.lexicographicallyPrecedes(rhs.name)
            }
            .map(\.item)
    }

    static func signedHeaderList(_ headers: [Header]) -> String {
        Set(headers.map { $0.name.lowercased() })
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            .joined(separator: ";")
    }

    /// Trims a header value and turns every run of whitespace (folded lines included) into one space.
    static func trimAll(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    /// "yyyyMMdd'T'HHmmss'Z'" in UTC, computed by hand so no formatter state is shared.
    static func timestamp(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(year, 4) + pad(month, 2) + pad(day, 2) + "T" + pad(secondOfDay / 3_600, 2) + pad(secondOfDay % 3_600 / 60, 2)
            + pad(secondOfDay % 60, 2) + "Z"
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { Self.hexDigits($0, uppercase: false) }.joined()
    }

    private static func hexDigits(_ byte: UInt8, uppercase: Bool) -> String {
        let digits: [Character] = uppercase ? Array("0123456789ABCDEF") : Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}

public enum SigV4Error: Error, Equatable, CustomStringConvertible {
    case expiryOutOfRange(Int)

    public var description: String {
        switch self {
        case .expiryOutOfRange(let seconds):
            "a presigned URL must last between 1 second and 7 days (604800 seconds), not \(seconds) seconds"
        }
    }
}
