import AsyncHTTPClient
import EaselTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import EaselBlobs

/// The S3 peer (moto, checking every signature) of the suite marked `.s3Peer`, started before it and stopped after.
enum S3PeerScope {
    @TaskLocal static var peer: S3Peer?
}

extension Trait where Self == PeerScope<S3Peer> {
    static var s3Peer: Self { Self(S3PeerScope.$peer, start: { try await S3Peer.start() }, stop: { await $0.stop() }) }
}

@Suite("S3BlobStore against a real S3 server", .s3Peer)
struct S3BlobStoreTests {
    @Test("keeps the BlobStore contract", arguments: BlobStoreContract.Behaviour.allCases)
    func contract(_ behaviour: BlobStoreContract.Behaviour) async throws {
        try await self.withFreshBucket { store, httpClient in
            let options = BlobStoreContract.Options(
                // Over two 5 MiB parts, and a failing stream that dies after the first part went up.
                largeObjectSize: 11 * 1024 * 1024 + 3,
                failingStreamBytes: 6 * 1024 * 1024
            ) { url, _, expected in
                // Plain HTTP, no credentials: the peer checks the URL's signature and expiry.
                let response = try await httpClient.execute(HTTPClientRequest(url: url.absoluteString), timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
                #expect(response.status == .ok, "\(String(buffer: body))")
                #expect(Data(body.readableBytesView) == expected)
            }
            try await BlobStoreContract.check(behaviour, on: store, options: options)
        }
    }

    @Test("keeps the BlobStore contract through the encrypting store (ranges over parts, sizes, streaming)", arguments: BlobStoreContract.Behaviour.allCases)
    func encryptedContract(_ behaviour: BlobStoreContract.Behaviour) async throws {
        try await self.withFreshBucket { store, _ in
            let signer = BlobURLSigner(baseURL: URL(string: "https://img.example.org")!, secret: Data(repeating: 5, count: 32))
            let sealed = EncryptedBlobStore(inner: store, keyring: MemoryKeyring(), urlSigner: signer, personalFolders: ["images"])
            let options = BlobStoreContract.Options(largeObjectSize: 11 * 1024 * 1024 + 3, failingStreamBytes: 6 * 1024 * 1024, keyPrefix: "images/u7") { url, key, _ in
                // Encrypted objects are served by Easel's own signed route, never by the bucket.
                #expect(url.host == "img.example.org")
                #expect(url.path == "/blobs/" + key.rawValue)
            }
            try await BlobStoreContract.check(behaviour, on: sealed, options: options)
            #expect(sealed.redirectsDownloads(of: try BlobKey("images/u7/a.png")) == false)
        }
    }

    @Test("a large upload goes up in parts and leaves no unfinished upload behind")
    func largeUploadUsesMultipart() async throws {
        try await self.withFreshBucket { store, _ in
            let key = try BlobKey("large/eleven.bin")
            let bytes = BlobStoreContract.pattern(count: 11 * 1024 * 1024, seed: 1)

            let info = try await store.put(key, body: BlobStoreContract.stream([bytes]), contentType: "application/octet-stream")

            // S3 marks the ETag of an object made from N parts with "-N": 5 + 5 + 1 MiB.
            #expect(info.etag?.hasSuffix("-3") == true, "etag \(info.etag ?? "none")")
            #expect(try await store.getData(key) == bytes)
            #expect(try await store.incompleteMultipartUploads(prefix: "large/").isEmpty)
        }
    }

    @Test("a stream that fails after a part went up aborts its multipart upload")
    func failingStreamAbortsMultipartUpload() async throws {
        try await self.withFreshBucket { store, _ in
            let key = try BlobKey("aborted/upload.bin")

            await #expect(throws: ContractStreamError.self) {
                try await store.put(key, body: BlobStoreContract.failingStream(bytesBeforeError: 6 * 1024 * 1024), contentType: nil)
            }

            #expect(try await store.incompleteMultipartUploads(prefix: "aborted/").isEmpty)
            #expect(try await store.head(key) == nil)
        }
    }

    @Test("a wrong secret or an unknown access key is accessDenied naming the settings, never a crash")
    func wrongCredentialsAreAccessDenied() async throws {
        try await self.withFreshBucket { goodStore, httpClient in
            let key = try BlobKey("secret/file.txt")
            try await goodStore.put(key, data: Data("hello".utf8), contentType: nil)

            var wrongSecret = goodStore.configuration
            wrongSecret.secretAccessKey = "not-the-secret-\(UUID())"
            var unknownKey = goodStore.configuration
            unknownKey.accessKeyID = "AKIAEASELUNKNOWNKEY0"

            for configuration in [wrongSecret, unknownKey] {
                let store = try S3BlobStore(configuration: configuration, httpClient: httpClient, logger: Logger(label: "easel.tests.s3"))
                let failures: [BlobError?] = [
                    await #expect(throws: BlobError.self) { try await store.put(key, data: Data("x".utf8), contentType: nil) },
                    await #expect(throws: BlobError.self) { try await store.getData(key) },
                    await #expect(throws: BlobError.self) { try await store.list(prefix: "") },
                    await #expect(throws: BlobError.self) { try await store.checkReady() },
                    await #expect(throws: BlobError.self) { try await store.head(key) },
                ]
                for failure in failures {
                    guard case .accessDenied(let message)? = failure else {
                        Issue.record("expected accessDenied, got \(String(describing: failure))")
                        continue
                    }
                    #expect(message.contains("EASEL_S3_ACCESS_KEY_ID"), "\(message)")
                    #expect(message.contains("EASEL_S3_SECRET_ACCESS_KEY"), "\(message)")
                    #expect(!message.contains(configuration.secretAccessKey))
                }
            }
            // The object is untouched.
            #expect(try await goodStore.getData(key) == Data("hello".utf8))
        }
    }

    @Test("a bucket that does not exist is missingContainer naming it and EASEL_S3_BUCKET")
    func missingBucketIsMissingContainer() async throws {
        try await self.withFreshBucket { existing, httpClient in
            var configuration = existing.configuration
            configuration.bucket = "easel-missing-\(UUID().uuidString.lowercased().prefix(8))"
            let store = try S3BlobStore(configuration: configuration, httpClient: httpClient, logger: Logger(label: "easel.tests.s3"))
            let key = try BlobKey("any/key.bin")

            let failures: [BlobError?] = [
                await #expect(throws: BlobError.self) { try await store.checkReady() },
                await #expect(throws: BlobError.self) { try await store.put(key, data: Data("x".utf8), contentType: nil) },
                await #expect(throws: BlobError.self) { try await store.list(prefix: "") },
                await #expect(throws: BlobError.self) { try await store.getData(key) },
            ]
            for failure in failures {
                guard case .missingContainer(let message)? = failure else {
                    Issue.record("expected missingContainer, got \(String(describing: failure))")
                    continue
                }
                #expect(message.contains(configuration.bucket), "\(message)")
                #expect(message.contains("EASEL_S3_BUCKET"), "\(message)")
            }
        }
    }

    @Test("checkReady passes on a bucket that exists and the key may use")
    func checkReadyPasses() async throws {
        try await self.withFreshBucket { store, _ in
            try await store.checkReady()
        }
    }

    @Test("creating a bucket we already own succeeds")
    func createBucketIsIdempotent() async throws {
        try await self.withFreshBucket { store, _ in
            try await store.createBucket()
        }
    }

    @Test("a listing longer than a page follows the continuation tokens")
    func listFollowsContinuationTokens() async throws {
        try await self.withFreshBucket(listPageSize: 2) { store, _ in
            let names = ["e", "c", "a", "d", "b"]
            for name in names {
                try await store.put(BlobKey("paged/\(name)"), data: Data(name.utf8), contentType: nil)
            }

            let listed = try await store.list(prefix: "paged/")

            #expect(listed.map(\.key.rawValue) == names.sorted().map { "paged/\($0)" })
        }
    }

    @Test("503 SlowDown and 500 answers are retried until the request goes through")
    func transientFailuresAreRetried() async throws {
        let peer = try #require(S3PeerScope.peer)
        try await self.withFreshBucket(maxAttempts: 4) { store, _ in
            let key = try BlobKey("retried/file.txt")

            try await peer.failNextRequests(bucket: store.configuration.bucket, count: 3, status: 503, code: "SlowDown")
            try await store.put(key, data: Data("persisted".utf8), contentType: nil)

            try await peer.failNextRequests(bucket: store.configuration.bucket, count: 2, status: 500, code: "InternalError")
            #expect(try await store.getData(key) == Data("persisted".utf8))
        }
    }

    @Test("a server that keeps failing gives storeFailed with its status and code after the last attempt")
    func persistentFailureIsStoreFailed() async throws {
        let peer = try #require(S3PeerScope.peer)
        try await self.withFreshBucket(maxAttempts: 3) { store, _ in
            let key = try BlobKey("failing/file.txt")
            try await peer.failNextRequests(bucket: store.configuration.bucket, count: 3, status: 503, code: "SlowDown")

            let failure = await #expect(throws: BlobError.self) {
                try await store.put(key, data: Data("lost".utf8), contentType: nil)
            }

            guard case .storeFailed(let message)? = failure else {
                Issue.record("expected storeFailed, got \(String(describing: failure))")
                return
            }
            #expect(message.contains("503") && message.contains("SlowDown"), "\(message)")
            // Exactly three attempts used the three faults: the next request goes through.
            try await store.put(key, data: Data("kept".utf8), contentType: nil)
            #expect(try await store.getData(key) == Data("kept".utf8))
        }
    }

    @Test("an endpoint nobody listens on is storeFailed saying S3 cannot be reached")
    func unreachableEndpointIsStoreFailed() async throws {
        try await HTTPClient.withHTTPClient { httpClient in
            let configuration = S3Configuration(
                endpoint: URL(string: "http://127.0.0.1:1")!,
                region: "us-east-1",
                bucket: "easel-unreachable",
                accessKeyID: "AKID",
                secretAccessKey: "secret",
                pathStyle: true,
                // AsyncHTTPClient keeps trying to connect until the deadline; keep the test short.
                requestTimeout: .seconds(1),
                maxAttempts: 2,
                retryBaseDelay: .milliseconds(1)
            )
            let store = try S3BlobStore(configuration: configuration, httpClient: httpClient, logger: Logger(label: "easel.tests.s3"))

            let failure = await #expect(throws: BlobError.self) { try await store.checkReady() }

            guard case .storeFailed(let message)? = failure else {
                Issue.record("expected storeFailed, got \(String(describing: failure))")
                return
            }
            #expect(message.contains("could not reach S3 at http://127.0.0.1:1"), "\(message)")
        }
    }

    @Test("a presigned URL that was tampered with, has expired, or was signed with a wrong secret is refused")
    func badPresignedURLsAreRefused() async throws {
        try await self.withFreshBucket { store, httpClient in
            let key = try BlobKey("presigned/file.txt")
            try await store.put(key, data: Data("private".utf8), contentType: nil)
            var wrongSecret = store.configuration
            wrongSecret.secretAccessKey = "not-the-secret"
            let forger = try S3BlobStore(configuration: wrongSecret, httpClient: httpClient, logger: Logger(label: "easel.tests.s3"))

            let good = try store.presignedURL(for: key, expiresIn: .seconds(60), now: Date())
            let tampered = try #require(URL(string: good.absoluteString.replacingOccurrences(of: "X-Amz-Expires=60", with: "X-Amz-Expires=61")))
            let expired = try store.presignedURL(for: key, expiresIn: .seconds(60), now: Date().addingTimeInterval(-3_600))
            let forged = try forger.presignedURL(for: key, expiresIn: .seconds(60), now: Date())

            #expect(try await Self.status(of: good, httpClient) == 200)
            for url in [tampered, expired, forged] {
                #expect(try await Self.status(of: url, httpClient) == 403, "\(url)")
            }
        }
    }

    // MARK: Helpers

    /// A store on a new bucket of the suite's peer, path-style with 5 MiB parts.
    private func withFreshBucket<Result>(
        maxAttempts: Int = 4,
        listPageSize: Int = 1000,
        _ body: (S3BlobStore, HTTPClient) async throws -> Result
    ) async throws -> Result {
        let peer = try #require(S3PeerScope.peer, "the suite's S3 peer is not running")
        return try await HTTPClient.withHTTPClient { httpClient in
            let configuration = S3Configuration(
                endpoint: peer.endpoint,
                region: peer.region,
                bucket: "easel-\(UUID().uuidString.lowercased())",
                accessKeyID: peer.accessKeyID,
                secretAccessKey: peer.secretAccessKey,
                pathStyle: true,
                partSize: S3Configuration.minimumPartSize,
                maxAttempts: maxAttempts,
                retryBaseDelay: .milliseconds(10),
                listPageSize: listPageSize
            )
            let store = try S3BlobStore(configuration: configuration, httpClient: httpClient, logger: Logger(label: "easel.tests.s3"))
            try await store.createBucket()
            return try await body(store, httpClient)
        }
    }

    private static func status(of url: URL, _ httpClient: HTTPClient) async throws -> UInt {
        let response = try await httpClient.execute(HTTPClientRequest(url: url.absoluteString), timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1024 * 1024)
        return response.status.code
    }
}

/// How the store builds URLs and presigned URLs, and checks its configuration; no server needed.
@Suite("S3BlobStore addressing and configuration")
struct S3AddressingTests {
    @Test("path-style puts the bucket in the path and keeps the endpoint's port")
    func pathStyle() async throws {
        try await self.withStore(endpoint: "http://127.0.0.1:9000", pathStyle: true) { store in
            let location = store.location(for: try BlobKey("a b/ሴ+c.png"))
            #expect(location.hostHeader == "127.0.0.1:9000")
            #expect(location.url(encodedQuery: "") == "http://127.0.0.1:9000/photos/a%20b/%E1%88%B4%2Bc.png")
            #expect(store.location(for: nil).url(encodedQuery: "list-type=2") == "http://127.0.0.1:9000/photos?list-type=2")
        }
    }

    @Test("virtual-hosted style puts the bucket in the host name")
    func virtualHosted() async throws {
        try await self.withStore(endpoint: "https://s3.eu-west-1.amazonaws.com", pathStyle: false) { store in
            let location = store.location(for: try BlobKey("a b/c.png"))
            #expect(location.hostHeader == "photos.s3.eu-west-1.amazonaws.com")
            #expect(location.url(encodedQuery: "") == "https://photos.s3.eu-west-1.amazonaws.com/a%20b/c.png")
            #expect(store.location(for: nil).url(encodedQuery: "") == "https://photos.s3.eu-west-1.amazonaws.com/")
        }
    }

    @Test("a custom endpoint keeps its base path, and a default port is left out of Host")
    func customEndpoint() async throws {
        let key = try BlobKey("k.bin")
        try await self.withStore(endpoint: "http://gateway.local:8080/storage/", pathStyle: true) { store in
            #expect(store.location(for: key).url(encodedQuery: "") == "http://gateway.local:8080/storage/photos/k.bin")
        }
        try await self.withStore(endpoint: "https://objects.example.com:443", pathStyle: false) { store in
            #expect(store.location(for: key).hostHeader == "photos.objects.example.com")
        }
    }

    @Test("a presigned URL carries the SigV4 query parameters and lasts 1 second to 7 days")
    func presignedURLBounds() async throws {
        try await self.withStore(endpoint: "https://s3.eu-west-1.amazonaws.com", pathStyle: false) { store in
            let key = try BlobKey("a b.png")
            let now = try Date("2024-05-01T10:00:00Z", strategy: .iso8601)

            for tooLong in [Duration.zero, .milliseconds(999), .seconds(-1), .seconds(604_801)] {
                #expect(throws: BlobError.self, "\(tooLong)") {
                    try store.presignedURL(for: key, expiresIn: tooLong, now: now)
                }
            }
            for seconds in [1, 604_800] {
                let url = try store.presignedURL(for: key, expiresIn: .seconds(seconds), now: now)
                let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
                let items = Dictionary(uniqueKeysWithValues: (components.queryItems ?? []).map { ($0.name, $0.value ?? "") })
                #expect(components.host == "photos.s3.eu-west-1.amazonaws.com")
                #expect(components.percentEncodedPath == "/a%20b.png")
                #expect(items["X-Amz-Expires"] == String(seconds))
                #expect(items["X-Amz-Credential"] == "AKIDEXAMPLE/20240501/eu-west-1/s3/aws4_request")
                #expect(items["X-Amz-Date"] == "20240501T100000Z")
                #expect(items["X-Amz-SignedHeaders"] == "host")
                #expect(items["X-Amz-Signature"]?.count == 64)
                #expect(!url.absoluteString.contains("wJalrXUtnFEMI"))
            }
        }
    }

    @Test("a configuration S3 cannot work with is refused with what to fix")
    func invalidConfigurationsAreRefused() throws {
        let good = Self.configuration(endpoint: "https://s3.amazonaws.com", pathStyle: false)
        try good.validate()

        var smallParts = good
        smallParts.partSize = 1024 * 1024
        var badBucket = good
        badBucket.bucket = "No_Such Bucket"
        var badEndpoint = good
        badEndpoint.endpoint = URL(string: "ftp://s3.amazonaws.com")!
        var noSecret = good
        noSecret.secretAccessKey = ""
        var noAttempts = good
        noAttempts.maxAttempts = 0

        let expectations: [(S3Configuration, String)] = [
            (smallParts, "5 MiB"),
            (badBucket, "EASEL_S3_BUCKET"),
            (badEndpoint, "http"),
            (noSecret, "EASEL_S3_SECRET_ACCESS_KEY"),
            (noAttempts, "attempts"),
        ]
        for (configuration, mentioned) in expectations {
            let error = #expect(throws: BlobError.self) { try configuration.validate() }
            #expect(error.map { "\($0)".contains(mentioned) } == true, "\(String(describing: error)) should mention \(mentioned)")
        }
    }

    @Test("printing a configuration never shows the secret")
    func descriptionHidesSecret() {
        let configuration = Self.configuration(endpoint: "https://s3.amazonaws.com", pathStyle: false)
        #expect(!"\(configuration)".contains(configuration.secretAccessKey))
        #expect("\(configuration)".contains("AKIDEXAMPLE"))
    }

    @Test("Content-Range headers are read, and bad ones are refused rather than trusted")
    func contentRangeParsing() {
        #expect(S3BlobStore.parseContentRange("bytes 0-4/11")?.range == 0...4)
        #expect(S3BlobStore.parseContentRange("bytes 0-4/11")?.size == 11)
        for bad in [nil, "", "bytes */11", "bytes 5-1/11", "bytes a-b/c", "items 0-1/2", "bytes -1-3/5"] {
            #expect(S3BlobStore.parseContentRange(bad) == nil, "\(bad ?? "nil")")
        }
    }

    private static func configuration(endpoint: String, pathStyle: Bool) -> S3Configuration {
        S3Configuration(
            endpoint: URL(string: endpoint)!,
            region: "eu-west-1",
            bucket: "photos",
            accessKeyID: "AKIDEXAMPLE",
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            pathStyle: pathStyle
        )
    }

    private func withStore(endpoint: String, pathStyle: Bool, _ body: (S3BlobStore) async throws -> Void) async throws {
        try await HTTPClient.withHTTPClient { httpClient in
            let store = try S3BlobStore(
                configuration: Self.configuration(endpoint: endpoint, pathStyle: pathStyle),
                httpClient: httpClient,
                logger: Logger(label: "easel.tests.s3")
            )
            try await body(store)
        }
    }
}
