import Foundation
import Testing

@testable import EaselBlobs

/// AWS's SigV4 test vectors (shared/fixtures/sigv4, from awslabs/aws-c-auth): every case is signed
/// with headers and with query parameters, and the canonical request, string to sign, signature
/// and signed request are compared with the expected files.
@Suite("SigV4 against AWS's test vectors")
struct SigV4FixtureTests {
    /// Cases S3 mode cannot reproduce, with the reason. Every other case is also run in S3 mode.
    static let notApplicableToS3: [String: String] = [
        "get-relative-normalized": "expects /example/.. normalised to /; S3 never normalises paths",
        "get-relative-relative-normalized": "expects /example1/example2/../.. normalised to /; S3 never normalises paths",
        "get-slash-dot-slash-normalized": "expects /./ normalised to /; S3 never normalises paths",
        "get-slash-normalized": "expects // normalised to /; S3 never normalises paths",
        "get-slash-pointless-dot-normalized": "expects /./example normalised to /example; S3 never normalises paths",
        "get-slashes-normalized": "expects //example// normalised to /example/; S3 never normalises paths",
    ]

    @Test("the fixture folder is found and holds the expected cases")
    func fixturesAreFound() throws {
        let names = SigV4Fixture.caseNames()
        // PEERS.md promises at least 37 cases; an empty or missing folder must fail, not pass quietly.
        #expect(names.count >= 37, "found \(names.count) cases in \(SigV4Fixture.directory.path)")
        for name in Self.notApplicableToS3.keys {
            #expect(names.contains(name), "\(name) is listed as not applicable to S3 but is not a fixture case")
        }
    }

    @Test("header signing matches the fixture", arguments: SigV4Fixture.caseNames())
    func headerSigning(caseName: String) throws {
        let fixture = try SigV4Fixture.load(caseName)
        try self.checkHeaderSigning(fixture, pathMode: .standard(normalize: fixture.context.normalize))
    }

    @Test("query (presigned URL) signing matches the fixture", arguments: SigV4Fixture.caseNames())
    func querySigning(caseName: String) throws {
        let fixture = try SigV4Fixture.load(caseName)
        try self.checkQuerySigning(fixture, pathMode: .standard(normalize: fixture.context.normalize))
    }

    @Test("S3 mode matches every case whose path S3 would sign as it is", arguments: SigV4Fixture.caseNames())
    func s3Mode(caseName: String) throws {
        let fixture = try SigV4Fixture.load(caseName)
        if let reason = Self.notApplicableToS3[caseName] {
            // The listed reason must hold: the case normalises, and normalising changes its path.
            #expect(fixture.context.normalize, "\(caseName): \(reason)")
            #expect(SigV4Signer.normalizePath(fixture.request.path) != fixture.request.path, "\(caseName): \(reason)")
            return
        }
        try self.checkHeaderSigning(fixture, pathMode: .s3)
        try self.checkQuerySigning(fixture, pathMode: .s3)
    }

    // MARK: Beyond the vectors

    @Test("timestamps are UTC in basic ISO 8601 form, leap days and dates before 1970 included")
    func timestamps() {
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 1_440_938_160)) == "20150830T123600Z")
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 951_868_799)) == "20000229T235959Z")
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: -1)) == "19691231T235959Z")
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
    }

    @Test("S3 mode encodes the decoded path once and keeps dot segments; standard mode encodes the sent path again")
    func pathModes() {
        let credentials = SigV4Signer.Credentials(accessKeyID: "AKID", secretAccessKey: "secret")
        let s3 = SigV4Signer(credentials: credentials, region: "us-east-1", service: "s3", pathMode: .s3)
        #expect(s3.canonicalPath("/bucket/a b/../c%+.txt") == "/bucket/a%20b/../c%25%2B.txt")
        #expect(s3.canonicalPath("/bucket//ሴ") == "/bucket//%E1%88%B4")

        let standard = SigV4Signer(credentials: credentials, region: "us-east-1", service: "iam", pathMode: .standard(normalize: false))
        #expect(standard.canonicalPath("/a%20b/") == "/a%2520b/")
        let normalizing = SigV4Signer(credentials: credentials, region: "us-east-1", service: "iam", pathMode: .standard(normalize: true))
        #expect(normalizing.canonicalPath("/a/./b/../c//") == "/a/c/")
    }

    @Test("a presigned URL must last between 1 second and 7 days")
    func presignExpiryBounds() throws {
        let signer = SigV4Signer(
            credentials: .init(accessKeyID: "AKID", secretAccessKey: "secret"),
            region: "us-east-1",
            service: "s3",
            pathMode: .s3
        )
        let request = SigV4Signer.Request(
            method: "GET",
            path: "/bucket/key",
            headers: [.init("host", "example.com")],
            payloadHash: SigV4Signer.unsignedPayload
        )
        for seconds in [0, -5, 604_801] {
            #expect(throws: SigV4Error.expiryOutOfRange(seconds)) {
                try signer.presign(request, date: Date(), expiresIn: seconds)
            }
        }
        for seconds in [1, 604_800] {
            let signed = try signer.presign(request, date: Date(), expiresIn: seconds)
            #expect(signed.queryItems.contains(.init("X-Amz-Expires", String(seconds))))
        }
    }

    @Test("credentials never show the secret or the session token when printed")
    func credentialsDescriptionHidesSecrets() {
        let credentials = SigV4Signer.Credentials(accessKeyID: "AKID", secretAccessKey: "very-secret", sessionToken: "token-value")
        #expect(!"\(credentials)".contains("very-secret"))
        #expect(!"\(credentials)".contains("token-value"))
        #expect("\(credentials)".contains("AKID"))
    }

    // MARK: Checks

    private func signer(for fixture: SigV4Fixture, pathMode: SigV4Signer.PathMode) -> SigV4Signer {
        SigV4Signer(
            credentials: .init(
                accessKeyID: fixture.context.credentials.accessKeyID,
                secretAccessKey: fixture.context.credentials.secretAccessKey,
                sessionToken: fixture.context.credentials.token
            ),
            region: fixture.context.region,
            service: fixture.context.service,
            pathMode: pathMode,
            omitSessionTokenFromSignature: fixture.context.omitSessionToken ?? false
        )
    }

    private func checkHeaderSigning(_ fixture: SigV4Fixture, pathMode: SigV4Signer.PathMode) throws {
        let signed = self.signer(for: fixture, pathMode: pathMode).signHeaders(
            fixture.signableRequest,
            date: try fixture.date(),
            addContentSHA256Header: fixture.context.signBody
        )
        #expect(signed.canonicalRequest == (try fixture.expected("header-canonical-request.txt")), "\(fixture.name)")
        #expect(signed.stringToSign == (try fixture.expected("header-string-to-sign.txt")), "\(fixture.name)")
        #expect(signed.signature == (try fixture.expected("header-signature.txt")), "\(fixture.name)")

        // Every header the signer adds, Authorization included, is in the expected signed request.
        let expectedHeaders = try fixture.signedRequestHeaders()
        for header in signed.headers {
            let expected = expectedHeaders.filter { $0.name.lowercased() == header.name.lowercased() }.map(\.value)
            #expect(expected == [header.value], "\(fixture.name): header \(header.name)")
        }
        #expect(signed.headers.contains { $0.name == "Authorization" })
    }

    private func checkQuerySigning(_ fixture: SigV4Fixture, pathMode: SigV4Signer.PathMode) throws {
        let signed = try self.signer(for: fixture, pathMode: pathMode).presign(
            fixture.signableRequest,
            date: try fixture.date(),
            expiresIn: fixture.context.expirationInSeconds
        )
        #expect(signed.canonicalRequest == (try fixture.expected("query-canonical-request.txt")), "\(fixture.name)")
        #expect(signed.stringToSign == (try fixture.expected("query-string-to-sign.txt")), "\(fixture.name)")
        #expect(signed.signature == (try fixture.expected("query-signature.txt")), "\(fixture.name)")

        // The presigned URL carries exactly the expected parameters (order aside).
        let expectedItems = try fixture.signedRequestQueryItems()
        let ordering: (SigV4Signer.QueryItem, SigV4Signer.QueryItem) -> Bool = { ($0.name, $0.value) < ($1.name, $1.value) }
        #expect(signed.queryItems.sorted(by: ordering) == expectedItems.sorted(by: ordering), "\(fixture.name)")
        #expect(SigV4Fixture.decodeQuery(signed.encodedQuery).sorted(by: ordering) == expectedItems.sorted(by: ordering), "\(fixture.name)")
    }
}

/// One folder of shared/fixtures/sigv4.
struct SigV4Fixture {
    struct Context: Decodable {
        struct Credentials: Decodable {
            var accessKeyID: String
            var secretAccessKey: String
            var token: String?

            enum CodingKeys: String, CodingKey {
                case accessKeyID = "access_key_id"
                case secretAccessKey = "secret_access_key"
                case token
            }
        }

        var credentials: Credentials
        var expirationInSeconds: Int
        var normalize: Bool
        var region: String
        var service: String
        var signBody: Bool
        var timestamp: String
        var omitSessionToken: Bool?

        enum CodingKeys: String, CodingKey {
            case credentials
            case expirationInSeconds = "expiration_in_seconds"
            case normalize
            case region
            case service
            case signBody = "sign_body"
            case timestamp
            case omitSessionToken = "omit_session_token"
        }
    }

    struct ParsedRequest {
        var method: String
        /// As written in the request line.
        var path: String
        var query: [SigV4Signer.QueryItem]
        var headers: [SigV4Signer.Header]
        var body: Data
    }

    var name: String
    var folder: URL
    var context: Context
    var request: ParsedRequest

    /// `<repo>/../shared/fixtures/sigv4`: three levels up from this file is the repository root,
    /// and shared/ sits beside it.
    static var directory: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .appending(path: "shared/fixtures/sigv4")
    }

    /// Every case folder (one holding a request.txt), sorted.
    static func caseNames() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Self.directory.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: Self.directory.appending(path: "\($0)/request.txt").path) }.sorted()
    }

    static func load(_ name: String) throws -> SigV4Fixture {
        let folder = Self.directory.appending(path: name)
        let context = try JSONDecoder().decode(Context.self, from: Data(contentsOf: folder.appending(path: "context.json")))
        let request = try Self.parseRequest(Self.read(folder.appending(path: "request.txt")))
        return SigV4Fixture(name: name, folder: folder, context: context, request: request)
    }

    /// What the signer gets: the body's hash only when the context signs the body, as aws-c-auth's
    /// runner does (otherwise the hash of an empty body).
    var signableRequest: SigV4Signer.Request {
        SigV4Signer.Request(
            method: self.request.method,
            path: self.request.path,
            query: self.request.query,
            headers: self.request.headers,
            payloadHash: self.context.signBody ? SigV4Signer.hexSHA256(self.request.body) : SigV4Signer.emptyPayloadHash
        )
    }

    func date() throws -> Date {
        try Date(self.context.timestamp, strategy: .iso8601)
    }

    func expected(_ file: String) throws -> String {
        try Self.read(self.folder.appending(path: file))
    }

    func signedRequestHeaders() throws -> [SigV4Signer.Header] {
        try Self.parseRequest(Self.read(self.folder.appending(path: "header-signed-request.txt"))).headers
    }

    func signedRequestQueryItems() throws -> [SigV4Signer.QueryItem] {
        try Self.parseRequest(Self.read(self.folder.appending(path: "query-signed-request.txt"))).query
    }

    static func read(_ url: URL) throws -> String {
        String(decoding: try Data(contentsOf: url), as: UTF8.self).replacingOccurrences(of: "\r", with: "")
    }

    /// Parses the fixtures' HTTP/1.1 text the way aws-c-auth's runner does: the request line's
    /// target may hold spaces, a line starting with whitespace continues the previous header (its
    /// line break kept), and everything after the blank line is the body.
    static func parseRequest(_ text: String) throws -> ParsedRequest {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.isEmpty else { throw FixtureError("empty request") }
        let requestLine = lines.removeFirst()
        guard let firstSpace = requestLine.firstIndex(of: " "), requestLine.hasSuffix(" HTTP/1.1") else {
            throw FixtureError("bad request line: \(requestLine)")
        }
        let method = String(requestLine[..<firstSpace])
        let target = String(requestLine[requestLine.index(after: firstSpace)...].dropLast(" HTTP/1.1".count))
        let path: String
        var query: [SigV4Signer.QueryItem] = []
        if let questionMark = target.firstIndex(of: "?") {
            path = String(target[..<questionMark])
            query = Self.decodeQuery(String(target[target.index(after: questionMark)...]))
        } else {
            path = target
        }

        var headers: [SigV4Signer.Header] = []
        var bodyLines: [String] = []
        var inBody = false
        for line in lines {
            if inBody {
                bodyLines.append(line)
            } else if line.isEmpty {
                inBody = true
            } else if line.first == " " || line.first == "\t" {
                guard !headers.isEmpty else { throw FixtureError("continuation line before any header") }
                headers[headers.count - 1].value += "\n" + line
            } else {
                guard let colon = line.firstIndex(of: ":") else { throw FixtureError("bad header line: \(line)") }
                headers.append(.init(String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        return ParsedRequest(method: method, path: path, query: query, headers: headers, body: Data(bodyLines.joined(separator: "\n").utf8))
    }

    /// Splits a query on "&" and the first "=", percent-decoding names and values.
    static func decodeQuery(_ query: String) -> [SigV4Signer.QueryItem] {
        query.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : ""
            return .init(name.removingPercentEncoding ?? name, value.removingPercentEncoding ?? value)
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}
