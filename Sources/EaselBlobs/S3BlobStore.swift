import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where and how to reach an S3-compatible bucket (AWS S3, R2, MinIO, Garage, ...).
public struct S3Configuration: Sendable, Equatable, CustomStringConvertible {
    /// The service's base URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000.
    public var endpoint: URL
    public var region: String
    public var bucket: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// true: http://endpoint/bucket/key (MinIO, most self-hosted servers);
    /// false: http://bucket.endpoint/key (AWS's default, "virtual-hosted").
    public var pathStyle: Bool
    /// Uploads larger than this go up in parts of this size; it is also the most an upload buffers.
    public var partSize: Int
    /// Deadline for each request that moves no object bytes (HEAD, DELETE, listings, upload bookkeeping).
    public var requestTimeout: Duration
    /// Deadline for each request that moves object bytes (PUT, one part, GET including its body).
    public var transferTimeout: Duration
    /// Tries per request, for requests that can be sent again (5xx, SlowDown, connection errors).
    public var maxAttempts: Int
    /// The first retry waits up to this long; each later one up to twice as long as the one before.
    public var retryBaseDelay: Duration
    /// Keys per ListObjectsV2 page (S3 allows at most 1,000).
    public var listPageSize: Int

    /// S3's smallest part (all but the last part of a multipart upload must be at least this big).
    public static let minimumPartSize = 5 * 1024 * 1024
    public static let maximumPartSize = 5 * 1024 * 1024 * 1024
    public static let defaultPartSize = 8 * 1024 * 1024

    public init(
        endpoint: URL,
        region: String,
        bucket: String,
        accessKeyID: String,
        secretAccessKey: String,
        sessionToken: String? = nil,
        pathStyle: Bool = false,
        partSize: Int = S3Configuration.defaultPartSize,
        requestTimeout: Duration = .seconds(30),
        transferTimeout: Duration = .seconds(300),
        maxAttempts: Int = 4,
        retryBaseDelay: Duration = .milliseconds(200),
        listPageSize: Int = 1000
    ) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.pathStyle = pathStyle
        self.partSize = partSize
        self.requestTimeout = requestTimeout
        self.transferTimeout = transferTimeout
        self.maxAttempts = maxAttempts
        self.retryBaseDelay = retryBaseDelay
        self.listPageSize = listPageSize
    }

    /// Never shows the secret or the session token, so logging a configuration is safe.
    public var description: String {
        "S3Configuration(endpoint: \(S3BlobStore.displayEndpoint(self.endpoint)), region: \(self.region), bucket: \(self.bucket), "
            + "accessKeyID: \(self.accessKeyID), secretAccessKey: <redacted>, pathStyle: \(self.pathStyle), partSize: \(self.partSize))"
    }

    /// Throws `BlobError.storeFailed` naming what is wrong.
    public func validate() throws {
        guard let scheme = self.endpoint.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw BlobError.storeFailed("the S3 endpoint \"\(S3BlobStore.displayEndpoint(self.endpoint))\" must be an http:// or https:// URL")
        }
        guard let host = self.endpoint.host, !host.isEmpty else {
            throw BlobError.storeFailed("the S3 endpoint \"\(S3BlobStore.displayEndpoint(self.endpoint))\" has no host name")
        }
        guard !self.region.isEmpty, self.region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw BlobError.storeFailed("the S3 region \"\(self.region)\" is not valid (for example \"us-east-1\"; use \"auto\" for R2)")
        }
        try Self.validateBucketName(self.bucket, pathStyle: self.pathStyle)
        guard !self.accessKeyID.isEmpty else {
            throw BlobError.accessDenied("no S3 access key id is set: set EASEL_S3_ACCESS_KEY_ID")
        }
        guard !self.secretAccessKey.isEmpty else {
            throw BlobError.accessDenied("no S3 secret access key is set: set EASEL_S3_SECRET_ACCESS_KEY")
        }
        guard (Self.minimumPartSize...Self.maximumPartSize).contains(self.partSize) else {
            throw BlobError.storeFailed("the S3 part size must be between 5 MiB and 5 GiB, not \(self.partSize) bytes")
        }
        let sensibleTimeouts: ClosedRange<Duration> = .milliseconds(1)...(.seconds(86_400))
        guard sensibleTimeouts.contains(self.requestTimeout), sensibleTimeouts.contains(self.transferTimeout) else {
            throw BlobError.storeFailed("S3 request timeouts must be longer than zero and at most a day")
        }
        guard (1...10).contains(self.maxAttempts) else {
            throw BlobError.storeFailed("S3 attempts per request must be between 1 and 10, not \(self.maxAttempts)")
        }
        guard self.retryBaseDelay >= .zero else {
            throw BlobError.storeFailed("the S3 retry delay must not be negative")
        }
        guard (1...1000).contains(self.listPageSize) else {
            throw BlobError.storeFailed("the S3 listing page size must be between 1 and 1000, not \(self.listPageSize)")
        }
    }

    static func validateBucketName(_ bucket: String, pathStyle: Bool) throws {
        let allowed: (Character) -> Bool = { character in
            guard character.isASCII else { return false }
            if character.isLowercase || character.isNumber || character == "-" || character == "." { return true }
            // Old buckets reachable only path-style may hold capitals and underscores.
            return pathStyle && (character.isUppercase || character == "_")
        }
        guard (3...63).contains(bucket.count), bucket.allSatisfy(allowed) else {
            throw BlobError.missingContainer(
                "the S3 bucket name \"\(bucket)\" is not valid: use 3 to 63 lowercase letters, digits, dots and hyphens "
                    + "(set EASEL_S3_BUCKET)"
            )
        }
    }
}

/// A `BlobStore` on an S3-compatible bucket, spoken to directly over HTTP with SigV4.
///
/// Uploads of at most one part go up in one PUT; bigger ones as a multipart upload that holds one
/// part in memory and is aborted when anything fails. Requests whose body can be sent again are
/// retried with exponential backoff and jitter.
public struct S3BlobStore: BlobStore {
    public let kind = "s3"
    public let configuration: S3Configuration
    private let httpClient: HTTPClient
    private let logger: Logger
    private let signer: SigV4Signer

    /// Throws `BlobError` when `configuration` cannot work; makes no request.
    public init(configuration: S3Configuration, httpClient: HTTPClient, logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.httpClient = httpClient
        var logger = logger
        logger[metadataKey: "s3.bucket"] = .string(configuration.bucket)
        self.logger = logger
        self.signer = SigV4Signer(
            credentials: .init(
                accessKeyID: configuration.accessKeyID,
                secretAccessKey: configuration.secretAccessKey,
                sessionToken: configuration.sessionToken
            ),
            region: configuration.region,
            service: "s3",
            pathMode: .s3
        )
    }

    // MARK: BlobStore

    @discardableResult
    public func put(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo {
        if data.readableBytes <= self.configuration.partSize {
            return try await self.putObject(key, data: data, contentType: contentType)
        }
        return try await self.put(key, body: .single(data), contentType: contentType)
    }

    @discardableResult
    public func put(_ key: BlobKey, body: BlobByteStream, contentType: String?) async throws -> BlobInfo {
        try Self.validateContentType(contentType)
        let partSize = self.configuration.partSize
        var chunks = body.makeAsyncIterator()
        var pending = ByteBuffer()
        var finished = false
        // Read until more than one part is held or the stream ends: a stream that throws here
        // has sent nothing, and one that fits in a part goes up in a single PUT.
        while !finished && pending.readableBytes <= partSize {
            if let chunk = try await chunks.next() {
                Self.append(chunk, to: &pending)
            } else {
                finished = true
            }
        }
        if finished {
            return try await self.putObject(key, data: pending, contentType: contentType)
        }
        return try await self.multipartUpload(key, buffered: pending, rest: &chunks, contentType: contentType)
    }

    public func get(_ key: BlobKey, range: ClosedRange<Int>?) async throws -> BlobObject {
        if let range, range.lowerBound < 0 {
            guard let info = try await self.head(key) else { throw BlobError.notFound(key) }
            throw BlobError.invalidRange(range, size: info.size)
        }
        var headers: [SigV4Signer.Header] = []
        if let range {
            headers.append(.init("Range", "bytes=\(range.lowerBound)-\(range.upperBound)"))
        }
        let response: HTTPClientResponse
        do {
            response = try await self.send(
                S3Call(operation: "GetObject", method: .GET, key: key, headers: headers, timeout: self.configuration.transferTimeout, range: range)
            )
        } catch BlobError.invalidRange(let range, let size) where size < 0 {
            // S3 did not say how big the object is; ask, so the error can.
            guard let info = try await self.head(key) else { throw BlobError.notFound(key) }
            throw BlobError.invalidRange(range, size: info.size)
        }

        var info = BlobInfo(
            key: key,
            size: 0,
            contentType: response.headers.first(name: "content-type"),
            lastModified: Self.parseHTTPDate(response.headers.first(name: "last-modified")),
            etag: Self.unquote(response.headers.first(name: "etag"))
        )
        if response.status == .partialContent {
            guard let contentRange = Self.parseContentRange(response.headers.first(name: "content-range")) else {
                throw BlobError.storeFailed("S3 answered a ranged read of \"\(key)\" without a usable Content-Range header")
            }
            info.size = contentRange.size
            return BlobObject(info: info, range: contentRange.range, body: Self.stream(response.body))
        }

        guard let length = response.headers.first(name: "content-length").flatMap({ Int($0) }), length >= 0 else {
            throw BlobError.storeFailed("S3 answered a read of \"\(key)\" without a Content-Length header")
        }
        info.size = length
        guard let range else {
            return BlobObject(info: info, range: nil, body: Self.stream(response.body))
        }
        // The server ignored the Range header: cut the range out of the whole object ourselves.
        guard range.lowerBound < length else { throw BlobError.invalidRange(range, size: length) }
        let served = range.lowerBound...min(range.upperBound, length - 1)
        return BlobObject(info: info, range: served, body: Self.stream(response.body, skip: served.lowerBound, limit: served.count))
    }

    public func head(_ key: BlobKey) async throws -> BlobInfo? {
        let response: HTTPClientResponse
        do {
            response = try await self.send(S3Call(operation: "HeadObject", method: .HEAD, key: key, timeout: self.configuration.requestTimeout))
        } catch BlobError.notFound {
            return nil
        }
        try await Self.discard(response)
        return BlobInfo(
            key: key,
            size: response.headers.first(name: "content-length").flatMap { Int($0) } ?? 0,
            contentType: response.headers.first(name: "content-type"),
            lastModified: Self.parseHTTPDate(response.headers.first(name: "last-modified")),
            etag: Self.unquote(response.headers.first(name: "etag"))
        )
    }

    public func delete(_ key: BlobKey) async throws {
        do {
            let response = try await self.send(
                S3Call(operation: "DeleteObject", method: .DELETE, key: key, timeout: self.configuration.requestTimeout)
            )
            try await Self.discard(response)
        } catch BlobError.notFound {
            // S3 answers 204 for a missing key; some compatible servers say 404. Both mean "gone".
        }
    }

    public func list(prefix: String) async throws -> [BlobInfo] {
        var objects: [BlobInfo] = []
        var continuationToken: String?
        repeat {
            var query: [SigV4Signer.QueryItem] = [
                .init("list-type", "2"),
                .init("max-keys", String(self.configuration.listPageSize)),
                .init("prefix", prefix),
            ]
            if let continuationToken {
                query.append(.init("continuation-token", continuationToken))
            }
            let response = try await self.send(
                S3Call(operation: "ListObjectsV2", method: .GET, key: nil, query: query, timeout: self.configuration.requestTimeout)
            )
            let body = try await Self.collect(response, limit: 32 * 1024 * 1024, operation: "ListObjectsV2")
            guard let document = S3XMLElement.parse(body), document.name == "ListBucketResult" else {
                throw BlobError.storeFailed("S3 answered ListObjectsV2 on bucket \"\(self.configuration.bucket)\" with a body that is not a listing")
            }
            for entry in document.children(named: "Contents") {
                guard let rawKey = entry.value("Key") else { continue }
                guard let key = try? BlobKey(rawKey) else {
                    // Written by something other than Easel; it cannot be named by a BlobKey.
                    self.logger.warning("skipping an S3 object whose key is not a valid blob key", metadata: ["s3.key": .string(rawKey)])
                    continue
                }
                objects.append(
                    BlobInfo(
                        key: key,
                        size: entry.value("Size").flatMap { Int($0) } ?? 0,
                        contentType: nil,
                        lastModified: entry.value("LastModified").flatMap(Self.parseISODate),
                        etag: Self.unquote(entry.value("ETag"))
                    )
                )
            }
            let truncated = document.value("IsTruncated")?.lowercased() == "true"
            let nextToken = document.value("NextContinuationToken")
            if truncated && (nextToken ?? "").isEmpty {
                throw BlobError.storeFailed("S3 said the listing of \"\(prefix)\" goes on but gave no continuation token")
            }
            continuationToken = truncated ? nextToken : nil
        } while continuationToken != nil
        return objects.sorted { $0.key < $1.key }
    }

    public func expiringURL(for key: BlobKey, expiresIn: Duration) async throws -> URL {
        try self.presignedURL(for: key, expiresIn: expiresIn, now: Date())
    }

    public func checkReady() async throws {
        let query: [SigV4Signer.QueryItem] = [.init("list-type", "2"), .init("max-keys", "1")]
        let response = try await self.send(
            S3Call(operation: "ListObjectsV2", method: .GET, key: nil, query: query, timeout: self.configuration.requestTimeout)
        )
        try await Self.discard(response)
    }

    // MARK: Beyond the protocol

    /// Creates the configured bucket (for operators and tests); succeeds when we already own it.
    public func createBucket() async throws {
        var body: ByteBuffer?
        // us-east-1 is the default location, and S3 refuses it spelled out.
        if self.configuration.region != "us-east-1" {
            body = ByteBuffer(
                string: #"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>"#
                    + S3XMLElement.escape(self.configuration.region) + "</LocationConstraint></CreateBucketConfiguration>"
            )
        }
        do {
            var call = S3Call(operation: "CreateBucket", method: .PUT, key: nil, body: body, timeout: self.configuration.requestTimeout)
            call.passThroughCodes = ["BucketAlreadyOwnedByYou"]
            let response = try await self.send(call)
            try await Self.discard(response)
        } catch let failure as S3RequestFailure where failure.code == "BucketAlreadyOwnedByYou" {
            return
        }
    }

    /// A presigned GET URL for `key` made at `now`; `expiresIn` is cut to whole seconds and must
    /// be 1 second to 7 days.
    public func presignedURL(for key: BlobKey, expiresIn: Duration, now: Date) throws -> URL {
        let seconds = Int(clamping: expiresIn.components.seconds)
        let location = self.location(for: key)
        let request = SigV4Signer.Request(
            method: "GET",
            path: location.path,
            headers: [.init("host", location.hostHeader)],
            payloadHash: SigV4Signer.unsignedPayload
        )
        let signature: SigV4Signer.QuerySignature
        do {
            signature = try self.signer.presign(request, date: now, expiresIn: seconds)
        } catch {
            throw BlobError.storeFailed(error.description)
        }
        guard let url = URL(string: location.url(encodedQuery: signature.encodedQuery)) else {
            throw BlobError.storeFailed("could not build a presigned URL for \"\(key)\" on \(Self.displayEndpoint(self.configuration.endpoint))")
        }
        return url
    }

    /// Where a request for `key` (or the bucket itself, when nil) goes.
    func location(for key: BlobKey?) -> S3Location {
        let endpoint = self.configuration.endpoint
        let scheme = endpoint.scheme?.lowercased() ?? "https"
        var host = endpoint.host ?? ""
        if host.contains(":") && !host.hasPrefix("[") {
            host = "[\(host)]"
        }
        let defaultPort = scheme == "https" ? 443 : 80
        let portSuffix = endpoint.port.map { $0 == defaultPort ? "" : ":\($0)" } ?? ""
        var basePath = endpoint.path
        while basePath.hasSuffix("/") {
            basePath.removeLast()
        }
        let path: String
        if self.configuration.pathStyle {
            path = basePath + "/" + self.configuration.bucket + (key.map { "/" + $0.rawValue } ?? "")
        } else {
            host = self.configuration.bucket + "." + host
            path = basePath + "/" + (key?.rawValue ?? "")
        }
        return S3Location(scheme: scheme, hostHeader: host + portSuffix, path: path)
    }

    // MARK: Uploads

    private func putObject(_ key: BlobKey, data: ByteBuffer, contentType: String?) async throws -> BlobInfo {
        try Self.validateContentType(contentType)
        var headers: [SigV4Signer.Header] = []
        if let contentType {
            headers.append(.init("Content-Type", contentType))
        }
        let response = try await self.send(
            S3Call(operation: "PutObject", method: .PUT, key: key, headers: headers, body: data, timeout: self.configuration.transferTimeout)
        )
        try await Self.discard(response)
        return BlobInfo(
            key: key,
            size: data.readableBytes,
            contentType: contentType,
            lastModified: nil,
            etag: Self.unquote(response.headers.first(name: "etag"))
        )
    }

    private func multipartUpload(
        _ key: BlobKey,
        buffered: ByteBuffer,
        rest chunks: inout BlobByteStream.AsyncIterator,
        contentType: String?
    ) async throws -> BlobInfo {
        let uploadID = try await self.createMultipartUpload(key, contentType: contentType)
        let partSize = self.configuration.partSize
        var pending = buffered
        var parts: [(number: Int, etag: String)] = []
        var size = 0
        do {
            var finished = false
            while true {
                // Only a part known not to be the last is cut at exactly `partSize`; the rest waits.
                while pending.readableBytes > partSize || (finished && pending.readableBytes > 0) {
                    guard let part = pending.readSlice(length: min(partSize, pending.readableBytes)) else { break }
                    let number = parts.count + 1
                    guard number <= 10_000 else {
                        throw BlobError.storeFailed(
                            "\"\(key)\" needs more than 10,000 parts of \(partSize) bytes; raise the S3 part size"
                        )
                    }
                    let etag = try await self.uploadPart(key, uploadID: uploadID, number: number, data: part)
                    parts.append((number, etag))
                    size += part.readableBytes
                }
                pending.discardReadBytes()
                if finished { break }
                if let chunk = try await chunks.next() {
                    Self.append(chunk, to: &pending)
                } else {
                    finished = true
                }
            }
            let etag = try await self.completeMultipartUpload(key, uploadID: uploadID, parts: parts)
            return BlobInfo(key: key, size: size, contentType: contentType, lastModified: nil, etag: etag)
        } catch {
            await self.abortMultipartUpload(key, uploadID: uploadID)
            throw error
        }
    }

    private func createMultipartUpload(_ key: BlobKey, contentType: String?) async throws -> String {
        var headers: [SigV4Signer.Header] = []
        if let contentType {
            headers.append(.init("Content-Type", contentType))
        }
        let response = try await self.send(
            S3Call(
                operation: "CreateMultipartUpload",
                method: .POST,
                key: key,
                query: [.init("uploads", "")],
                headers: headers,
                timeout: self.configuration.requestTimeout
            )
        )
        let body = try await Self.collect(response, limit: 1024 * 1024, operation: "CreateMultipartUpload")
        guard let uploadID = S3XMLElement.parse(body)?.value("UploadId"), !uploadID.isEmpty else {
            throw BlobError.storeFailed("S3 started a multipart upload of \"\(key)\" but sent no upload id")
        }
        return uploadID
    }

    private func uploadPart(_ key: BlobKey, uploadID: String, number: Int, data: ByteBuffer) async throws -> String {
        let response = try await self.send(
            S3Call(
                operation: "UploadPart",
                method: .PUT,
                key: key,
                query: [.init("partNumber", String(number)), .init("uploadId", uploadID)],
                body: data,
                timeout: self.configuration.transferTimeout
            )
        )
        try await Self.discard(response)
        guard let etag = response.headers.first(name: "etag"), !etag.isEmpty else {
            throw BlobError.storeFailed("S3 took part \(number) of \"\(key)\" but sent no ETag")
        }
        return etag
    }

    private func completeMultipartUpload(_ key: BlobKey, uploadID: String, parts: [(number: Int, etag: String)]) async throws -> String? {
        var xml = #"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#
        for part in parts {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(S3XMLElement.escape(part.etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let response = try await self.send(
            S3Call(
                operation: "CompleteMultipartUpload",
                method: .POST,
                key: key,
                query: [.init("uploadId", uploadID)],
                headers: [.init("Content-Type", "application/xml")],
                body: ByteBuffer(string: xml),
                timeout: self.configuration.requestTimeout
            )
        )
        let body = try await Self.collect(response, limit: 1024 * 1024, operation: "CompleteMultipartUpload")
        let document = S3XMLElement.parse(body)
        // S3 may answer 200 and still report a failure in the body.
        if let document, document.name == "Error" {
            let failure = S3RequestFailure(
                status: response.status,
                code: document.value("Code"),
                message: document.value("Message"),
                requestID: response.headers.first(name: "x-amz-request-id"),
                actualObjectSize: nil
            )
            throw self.blobError(for: failure, call: S3Call(operation: "CompleteMultipartUpload", method: .POST, key: key, timeout: .zero))
        }
        return Self.unquote(document?.value("ETag"))
    }

    /// Best effort: a failure is logged, and the upload's error is what the caller sees.
    private func abortMultipartUpload(_ key: BlobKey, uploadID: String) async {
        // A cancelled task cannot send requests, so the abort runs in a task of its own.
        let abort = Task {
            let response = try await self.send(
                S3Call(
                    operation: "AbortMultipartUpload",
                    method: .DELETE,
                    key: key,
                    query: [.init("uploadId", uploadID)],
                    timeout: self.configuration.requestTimeout
                )
            )
            try await Self.discard(response)
        }
        do {
            try await abort.value
            self.logger.debug("aborted an S3 multipart upload", metadata: ["s3.key": .string(key.rawValue)])
        } catch {
            self.logger.error(
                "could not abort an S3 multipart upload; its parts stay billed until a lifecycle rule removes them",
                metadata: ["s3.key": .string(key.rawValue), "s3.upload_id": .string(uploadID), "error": .string("\(error)")]
            )
        }
    }

    /// Uploads started under `prefix` and neither completed nor aborted (for tests and operators).
    func incompleteMultipartUploads(prefix: String) async throws -> [String] {
        let response = try await self.send(
            S3Call(
                operation: "ListMultipartUploads",
                method: .GET,
                key: nil,
                query: [.init("uploads", ""), .init("prefix", prefix)],
                timeout: self.configuration.requestTimeout
            )
        )
        let body = try await Self.collect(response, limit: 16 * 1024 * 1024, operation: "ListMultipartUploads")
        guard let document = S3XMLElement.parse(body) else {
            throw BlobError.storeFailed("S3 answered ListMultipartUploads with a body that is not XML")
        }
        return document.children(named: "Upload").compactMap { $0.value("Key") }
    }

    // MARK: Sending

    /// Signs and sends `call`, retrying what can be retried. Returns a 2xx response whose body the
    /// caller must read or discard; anything else is thrown as a `BlobError`.
    private func send(_ call: S3Call) async throws -> HTTPClientResponse {
        let location = self.location(for: call.key)
        var attempt = 0
        while true {
            attempt += 1
            let canRetry = attempt < self.configuration.maxAttempts
            var logger = self.logger
            logger[metadataKey: "s3.operation"] = .string(call.operation)
            logger[metadataKey: "s3.attempt"] = .stringConvertible(attempt)
            if let key = call.key {
                logger[metadataKey: "s3.key"] = .string(key.rawValue)
            }

            let request = self.signedRequest(call, location: location)
            let response: HTTPClientResponse
            do {
                response = try await self.httpClient.execute(request, deadline: .now() + Self.timeAmount(call.timeout), logger: logger)
            } catch {
                if canRetry && Self.isRetryable(error) {
                    logger.warning("S3 request failed; trying again", metadata: ["error": .string("\(error)")])
                    try await self.backOff(attempt: attempt)
                    continue
                }
                if error is CancellationError || (error as? HTTPClientError) == .cancelled {
                    throw CancellationError()
                }
                throw BlobError.storeFailed(
                    "could not reach S3 at \(Self.displayEndpoint(self.configuration.endpoint)) for \(call.operation): \(error)"
                )
            }

            if (200..<300).contains(response.status.code) {
                logger.debug("S3 request done", metadata: ["s3.status": .stringConvertible(response.status.code)])
                return response
            }

            let failure = await S3RequestFailure(response)
            logger.debug(
                "S3 request refused",
                metadata: ["s3.status": .stringConvertible(response.status.code), "s3.code": .string(failure.code ?? "none")]
            )
            if canRetry && failure.isRetryable {
                logger.warning(
                    "S3 is busy or failing; trying again",
                    metadata: ["s3.status": .stringConvertible(response.status.code), "s3.code": .string(failure.code ?? "none")]
                )
                try await self.backOff(attempt: attempt)
                continue
            }
            if let code = failure.code, call.passThroughCodes.contains(code) {
                throw failure
            }
            throw self.blobError(for: failure, call: call)
        }
    }

    private func signedRequest(_ call: S3Call, location: S3Location) -> HTTPClientRequest {
        let payloadHash: String
        if let body = call.body {
            payloadHash = body.withUnsafeReadableBytes { SigV4Signer.hexSHA256($0) }
        } else {
            payloadHash = SigV4Signer.emptyPayloadHash
        }
        let signable = SigV4Signer.Request(
            method: call.method.rawValue,
            path: location.path,
            query: call.query,
            headers: [.init("host", location.hostHeader)] + call.headers,
            payloadHash: payloadHash
        )
        let signature = self.signer.signHeaders(signable, date: Date(), addContentSHA256Header: true)
        let encodedQuery = SigV4Signer.canonicalQuery(call.query)

        var request = HTTPClientRequest(url: location.url(encodedQuery: encodedQuery))
        request.method = call.method
        request.headers.add(name: "Host", value: location.hostHeader)
        for header in call.headers + signature.headers {
            request.headers.add(name: header.name, value: header.value)
        }
        if let body = call.body {
            request.body = .bytes(body)
        }
        return request
    }

    /// Exponential backoff with full jitter, so many clients retrying do not retry in step.
    private func backOff(attempt: Int) async throws {
        let ceiling = self.configuration.retryBaseDelay * (1 << min(attempt - 1, 10))
        try await Task.sleep(for: ceiling * Double.random(in: 0...1))
    }

    private static func isRetryable(_ error: any Error) -> Bool {
        if error is CancellationError { return false }
        if let error = error as? HTTPClientError {
            let permanent: [HTTPClientError] = [.cancelled, .invalidURL, .emptyHost, .emptyScheme, .alreadyShutdown, .missingSocketPath]
            return !permanent.contains(error)
        }
        // Connection refused or reset, TLS hiccups, timeouts: all worth another try.
        return true
    }

    // MARK: Errors

    private func blobError(for failure: S3RequestFailure, call: S3Call) -> BlobError {
        let endpoint = Self.displayEndpoint(self.configuration.endpoint)
        let bucket = self.configuration.bucket
        let detail = [failure.code, failure.message].compactMap { $0 }.joined(separator: ": ")
        let said = detail.isEmpty ? "HTTP \(failure.status.code)" : "HTTP \(failure.status.code), \(detail)"
        let requestID = failure.requestID.map { ", request id \($0)" } ?? ""

        switch failure.code {
        case "SignatureDoesNotMatch", "InvalidAccessKeyId":
            return .accessDenied(
                "S3 at \(endpoint) rejected Easel's credentials for bucket \"\(bucket)\" (\(said)). Check EASEL_S3_ACCESS_KEY_ID and "
                    + "EASEL_S3_SECRET_ACCESS_KEY: the secret must belong to that access key id, and this machine's clock must be right."
            )
        case "AccessDenied", "AllAccessDisabled", "AccountProblem":
            return .accessDenied(
                "S3 at \(endpoint) denied \(call.operation) on bucket \"\(bucket)\" (\(said)). Give the key in EASEL_S3_ACCESS_KEY_ID "
                    + "permission to read, write, delete and list objects in this bucket, or check EASEL_S3_SECRET_ACCESS_KEY."
            )
        case "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
            return .accessDenied(
                "S3 at \(endpoint) refused the session token (\(said)). Renew the temporary credentials, or use a long-lived "
                    + "EASEL_S3_ACCESS_KEY_ID and EASEL_S3_SECRET_ACCESS_KEY."
            )
        case "NoSuchBucket":
            return .missingContainer(
                "S3 bucket \"\(bucket)\" does not exist at \(endpoint). Create it, or set EASEL_S3_BUCKET to an existing bucket "
                    + "(and check the endpoint and region)."
            )
        case "NoSuchKey":
            if let key = call.key { return .notFound(key) }
        case "InvalidRange":
            return .invalidRange(call.range ?? 0...0, size: failure.actualObjectSize ?? -1)
        case "RequestTimeTooSkewed":
            return .storeFailed("S3 at \(endpoint) says this machine's clock is wrong (\(said)); set the clock right (use NTP).")
        case nil:
            // HEAD answers carry no body, so only the status tells what went wrong.
            switch failure.status.code {
            case 403:
                return .accessDenied(
                    "S3 at \(endpoint) refused \(call.operation) on bucket \"\(bucket)\" (HTTP 403). Check EASEL_S3_ACCESS_KEY_ID and "
                        + "EASEL_S3_SECRET_ACCESS_KEY, and that the key may use this bucket."
                )
            case 404:
                if let key = call.key { return .notFound(key) }
                return .missingContainer(
                    "S3 bucket \"\(bucket)\" does not exist at \(endpoint). Create it, or set EASEL_S3_BUCKET to an existing bucket."
                )
            case 416:
                return .invalidRange(call.range ?? 0...0, size: failure.actualObjectSize ?? -1)
            default:
                break
            }
        default:
            break
        }
        let subject = call.key.map { " of \"\($0)\"" } ?? " on bucket \"\(bucket)\""
        return .storeFailed("S3 \(call.operation)\(subject) at \(endpoint) failed (\(said)\(requestID))")
    }

    // MARK: Helpers

    /// The endpoint without any user name or password it might carry, for messages and logs.
    static func displayEndpoint(_ url: URL) -> String {
        let scheme = url.scheme ?? "https"
        let host = url.host ?? "?"
        let port = url.port.map { ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(port)\(url.path)"
    }

    private static func validateContentType(_ contentType: String?) throws {
        guard let contentType else { return }
        let valid =
            !contentType.isEmpty && contentType.utf8.count <= 256
            && contentType.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
        guard valid else {
            throw BlobError.storeFailed("the content type \"\(contentType)\" is not a valid header value")
        }
    }

    private static func append(_ chunk: ByteBuffer, to pending: inout ByteBuffer) {
        if pending.readableBytes == 0 {
            // Taking the chunk as it is avoids a copy (and keeps `.single(buffer)` uploads copy-free).
            pending = chunk
        } else {
            var chunk = chunk
            pending.writeBuffer(&chunk)
        }
    }

    private static func collect(_ response: HTTPClientResponse, limit: Int, operation: String) async throws -> Data {
        do {
            let buffer = try await response.body.collect(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw BlobError.storeFailed("S3 answered \(operation) with more than \(limit) bytes")
        }
    }

    private static func discard(_ response: HTTPClientResponse) async throws {
        // Reading the (empty or tiny) body returns the connection to the pool.
        for try await _ in response.body {}
    }

    /// Turns a response body into a `BlobByteStream`, read only as fast as the consumer reads;
    /// `skip` and `limit` cut a byte range out of it.
    private static func stream(_ body: HTTPClientResponse.Body, skip: Int = 0, limit: Int? = nil) -> BlobByteStream {
        let reader = ResponseBodyReader(body: body, skip: skip, limit: limit)
        return BlobByteStream(unfolding: { try await reader.next() })
    }

    static func parseContentRange(_ value: String?) -> (range: ClosedRange<Int>, size: Int)? {
        // "bytes 0-4/11"
        guard let value, value.hasPrefix("bytes ") else { return nil }
        let spec = value.dropFirst("bytes ".count)
        let halves = spec.split(separator: "/", maxSplits: 1)
        guard halves.count == 2, let size = Int(halves[1]) else { return nil }
        let bounds = halves[0].split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]), first >= 0, first <= last else { return nil }
        return (first...last, size)
    }

    static func unquote(_ etag: String?) -> String? {
        guard var etag else { return nil }
        if etag.hasPrefix("W/") { etag.removeFirst(2) }
        if etag.count >= 2 && etag.hasPrefix("\"") && etag.hasSuffix("\"") {
            etag = String(etag.dropFirst().dropLast())
        }
        return etag
    }

    static func parseHTTPDate(_ value: String?) -> Date? {
        guard let value else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: value)
    }

    static func parseISODate(_ value: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: value) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: value)
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(Int64.max) }
        return .nanoseconds(nanos + attoseconds / 1_000_000_000)
    }
}

/// One S3 operation, enough to sign it, send it again, and explain its failure.
struct S3Call: Sendable {
    var operation: String
    var method: HTTPMethod
    var key: BlobKey?
    var query: [SigV4Signer.QueryItem] = []
    /// Headers to send and sign besides Host and those the signer adds.
    var headers: [SigV4Signer.Header] = []
    /// Held in memory, so every retry can send it again.
    var body: ByteBuffer? = nil
    var timeout: Duration
    var range: ClosedRange<Int>? = nil
    /// Error codes the caller handles itself: thrown as `S3RequestFailure`, not as a `BlobError`.
    var passThroughCodes: Set<String> = []
}

/// Where one request goes: the Host header and the decoded path (which the signer encodes).
struct S3Location: Sendable, Equatable {
    var scheme: String
    var hostHeader: String
    var path: String

    /// The request URL; the path is encoded once, exactly as it is signed.
    func url(encodedQuery: String) -> String {
        let base = "\(self.scheme)://\(self.hostHeader)\(SigV4Signer.encodePath(self.path))"
        return encodedQuery.isEmpty ? base : base + "?" + encodedQuery
    }
}

/// What S3 said when it refused a request.
struct S3RequestFailure: Error {
    var status: HTTPResponseStatus
    var code: String?
    var message: String?
    var requestID: String?
    var actualObjectSize: Int?

    init(status: HTTPResponseStatus, code: String?, message: String?, requestID: String?, actualObjectSize: Int?) {
        self.status = status
        self.code = code
        self.message = message
        self.requestID = requestID
        self.actualObjectSize = actualObjectSize
    }

    /// Reads the `<Error><Code>…</Code><Message>…</Message></Error>` body, when there is one.
    init(_ response: HTTPClientResponse) async {
        self.status = response.status
        self.requestID = response.headers.first(name: "x-amz-request-id")
        var document: S3XMLElement?
        if let body = try? await response.body.collect(upTo: 64 * 1024) {
            document = S3XMLElement.parse(Data(body.readableBytesView))
        }
        if let document, document.name == "Error" {
            self.code = document.value("Code")?.trimmingCharacters(in: .whitespacesAndNewlines)
            self.message = document.value("Message")?.trimmingCharacters(in: .whitespacesAndNewlines)
            self.actualObjectSize = document.value("ActualObjectSize").flatMap { Int($0) }
            if let requestID = document.value("RequestId"), self.requestID == nil {
                self.requestID = requestID
            }
        }
        if self.actualObjectSize == nil, let contentRange = response.headers.first(name: "content-range"),
            let total = contentRange.split(separator: "/").last.flatMap({ Int($0) })
        {
            // "bytes */11"
            self.actualObjectSize = total
        }
    }

    var isRetryable: Bool {
        if self.status.code >= 500 { return true }
        return ["SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"].contains(self.code ?? "")
    }
}

/// Reads one response body for one `BlobByteStream`, skipping and cutting bytes as asked.
///
/// `@unchecked Sendable`: the stream's single consumer calls `next()` one call at a time, so the
/// mutable state is never touched concurrently. Dropping it drops the body, which makes
/// AsyncHTTPClient end the request.
private final class ResponseBodyReader: @unchecked Sendable {
    private var iterator: HTTPClientResponse.Body.AsyncIterator
    private var toSkip: Int
    /// nil: everything to the end of the body.
    private var remaining: Int?

    init(body: HTTPClientResponse.Body, skip: Int, limit: Int?) {
        self.iterator = body.makeAsyncIterator()
        self.toSkip = skip
        self.remaining = limit
    }

    func next() async throws -> ByteBuffer? {
        while self.remaining.map({ $0 > 0 }) ?? true {
            guard var chunk = try await self.iterator.next() else { return nil }
            if self.toSkip > 0 {
                let skipped = min(self.toSkip, chunk.readableBytes)
                chunk.moveReaderIndex(forwardBy: skipped)
                self.toSkip -= skipped
            }
            if let remaining = self.remaining {
                if chunk.readableBytes > remaining, let cut = chunk.readSlice(length: remaining) {
                    chunk = cut
                }
                self.remaining = remaining - chunk.readableBytes
            }
            if chunk.readableBytes > 0 {
                return chunk
            }
        }
        return nil
    }
}
