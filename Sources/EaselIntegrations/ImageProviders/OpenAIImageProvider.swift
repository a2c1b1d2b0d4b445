import AsyncHTTPClient
import Foundation
import Logging
import MultipartKit
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where and how to reach OpenAI's Images API, or any gateway that speaks it.
public struct OpenAIConfiguration: Sendable, CustomStringConvertible {
    public static let defaultBaseURL = "https://api.openai.com"

    public var apiKey: String
    /// Scheme, host and optional path prefix; "/v1/images/…" is appended (a base that already
    /// ends in "/v1" gets only "/images/…").
    public var baseURL: String
    /// For the whole call, connection to the last byte of the answer. gpt-image-2 at high quality
    /// takes over two minutes, so keep it well above that.
    public var timeout: Duration

    public init(apiKey: String, baseURL: String = OpenAIConfiguration.defaultBaseURL, timeout: Duration = .seconds(300)) {
        self.apiKey = apiKey
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// Safe to log: the key is never shown.
    public var description: String {
        "openai \(self.baseURL) timeout=\(self.timeout) api_key=\(self.apiKey.isEmpty ? "<unset>" : "<set>")"
    }

    var generationsURL: String { ProviderHTTP.endpoint(base: self.baseURL, path: "/images/generations") }
    var editsURL: String { ProviderHTTP.endpoint(base: self.baseURL, path: "/images/edits") }
}

/// Generates images with OpenAI's Images API (GPT image models), in one long call:
/// `POST /v1/images/generations` (JSON) without reference images, `POST /v1/images/edits`
/// (multipart, one `image[]` part per reference) with them. GPT image models always answer
/// base64 (`data[].b64_json`), which is decoded here.
public struct OpenAIImageProvider: SynchronousImageProvider {
    public let configuration: OpenAIConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Up to ten base64 images of up to 3840×2160 each; anything bigger is not an answer.
    static let maximumAnswerBytes = 200 * 1024 * 1024

    public init(configuration: OpenAIConfiguration, httpClient: HTTPClient, logger: Logger = Logger(label: "easel.providers.openai")) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public func generate(_ generation: ProviderGenerationRequest) async throws(ProviderError) -> [ProviderImage] {
        let url: String
        var request: HTTPClientRequest
        if generation.references.isEmpty {
            url = self.configuration.generationsURL
            request = HTTPClientRequest(url: url)
            request.headers.add(name: "Content-Type", value: "application/json")
            do {
                request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(GenerationBody(generation))))
            } catch {
                throw ProviderError(.invalidRequest, "could not encode the generation request for OpenAI: \(error)")
            }
        } else {
            url = self.configuration.editsURL
            request = HTTPClientRequest(url: url)
            let (boundary, body) = try Self.multipartBody(generation)
            request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
            request.body = .bytes(body)
        }
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(self.configuration.apiKey)")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "easel")

        let metadata: Logger.Metadata = [
            "model": .string(generation.model), "size": .string(generation.size), "quality": .string(generation.quality),
            "n": .stringConvertible(generation.count), "references": .stringConvertible(generation.references.count),
        ]
        let started = ContinuousClock.now
        let answer: ProviderHTTP.Answer
        do {
            answer = try await ProviderHTTP.execute(
                request, client: self.httpClient, timeout: self.configuration.timeout,
                maximumBytes: Self.maximumAnswerBytes, provider: "OpenAI", logger: self.logger
            )
        } catch {
            self.logger.info("OpenAI image call failed", metadata: metadata.merging(["error": .string(error.description)]) { $1 })
            throw error
        }

        do throws(ProviderError) {
            guard (200..<300).contains(answer.status.code) else {
                throw Self.failure(status: answer.status, headers: answer.headers, body: answer.body)
            }
            let images = try Self.images(from: answer.body, requestedFormat: generation.outputFormat)
            self.logger.info(
                "OpenAI images received",
                metadata: metadata.merging([
                    "images": .stringConvertible(images.count),
                    "seconds": .string(String(format: "%.1f", ProviderHTTP.seconds(ContinuousClock.now - started))),
                ]) { $1 }
            )
            return images
        } catch {
            self.logger.info(
                "OpenAI image call failed",
                metadata: metadata.merging(["status": .stringConvertible(answer.status.code), "error": .string(error.description)]) { $1 }
            )
            throw error
        }
    }

    // MARK: Requests

    /// The JSON body of `POST /v1/images/generations`.
    struct GenerationBody: Encodable {
        var model: String
        var prompt: String
        var n: Int
        var size: String
        var quality: String
        var outputFormat: String?
        var user: String?

        init(_ generation: ProviderGenerationRequest) {
            self.model = generation.model
            self.prompt = generation.prompt
            self.n = generation.count
            self.size = generation.size
            self.quality = generation.quality
            self.outputFormat = generation.outputFormat
            self.user = generation.endUser
        }

        enum CodingKeys: String, CodingKey {
            case model, prompt, n, size, quality, user
            case outputFormat = "output_format"
        }
    }

    /// The multipart body of `POST /v1/images/edits`: the text fields, then one `image[]` file
    /// part per reference, in order (the first is the one a mask would apply to).
    static func multipartBody(_ generation: ProviderGenerationRequest) throws(ProviderError) -> (boundary: String, body: ByteBuffer) {
        var fields: [(String, String)] = [
            ("model", generation.model), ("prompt", generation.prompt), ("n", String(generation.count)),
            ("size", generation.size), ("quality", generation.quality),
        ]
        if let format = generation.outputFormat { fields.append(("output_format", format)) }
        if let user = generation.endUser { fields.append(("user", user)) }

        var files: [(filename: String, contentType: String, data: Data)] = []
        for (index, reference) in generation.references.enumerated() {
            guard let data = reference.data, !data.isEmpty else {
                throw ProviderError(
                    .invalidRequest,
                    "reference image \(index + 1) (\(reference.filename)) has no bytes; OpenAI takes reference images as files, not URLs"
                )
            }
            files.append((Self.safeFilename(reference.filename, index: index), Self.safeHeaderValue(reference.contentType), data))
        }

        // A random boundary that appears nowhere in the content (checked, however unlikely).
        var boundary = ""
        repeat {
            boundary = "easel-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        } while fields.contains(where: { $0.1.contains(boundary) }) || files.contains(where: { $0.data.range(of: Data(boundary.utf8)) != nil })

        var parts: [MultipartPart] = []
        for (name, value) in fields {
            parts.append(MultipartPart(headers: ["Content-Disposition": "form-data; name=\"\(name)\""], body: value))
        }
        for file in files {
            parts.append(
                MultipartPart(
                    headers: [
                        "Content-Disposition": "form-data; name=\"image[]\"; filename=\"\(file.filename)\"",
                        "Content-Type": file.contentType,
                    ],
                    body: file.data
                )
            )
        }
        var body = ByteBufferAllocator().buffer(capacity: files.reduce(4096) { $0 + $1.data.count + 256 })
        do {
            try MultipartSerializer().serialize(parts: parts, boundary: boundary, into: &body)
        } catch {
            throw ProviderError(.invalidRequest, "could not encode the reference images for OpenAI: \(error)")
        }
        return (boundary, body)
    }

    /// A filename that cannot break out of its quoted header parameter: printable ASCII without
    /// quotes or backslashes.
    static func safeFilename(_ filename: String, index: Int) -> String {
        let cleaned = String(
            String.UnicodeScalarView(
                filename.unicodeScalars.map { scalar in
                    (scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\") ? scalar : "_"
                }
            )
        )
        return cleaned.trimmingCharacters(in: .whitespaces).isEmpty ? "reference-\(index + 1)" : cleaned
    }

    private static func safeHeaderValue(_ value: String) -> String {
        let cleaned = value.filter { $0 != "\r" && $0 != "\n" }
        return cleaned.isEmpty ? "application/octet-stream" : cleaned
    }

    // MARK: Answers

    struct ImagesResponse: Decodable {
        struct Item: Decodable {
            var b64JSON: String?
            var url: String?

            enum CodingKeys: String, CodingKey {
                case b64JSON = "b64_json"
                case url
            }
        }

        var data: [Item]?
        var outputFormat: String?

        enum CodingKeys: String, CodingKey {
            case data
            case outputFormat = "output_format"
        }
    }

    /// The images of a 2xx answer; anything unexpected is `malformedResponse`.
    static func images(from body: ByteBuffer, requestedFormat: String?) throws(ProviderError) -> [ProviderImage] {
        let response: ImagesResponse
        do {
            response = try JSONDecoder().decode(ImagesResponse.self, from: Data(buffer: body))
        } catch {
            throw ProviderError(.malformedResponse, "OpenAI answered with something that is not an images response: \(ProviderHTTP.snippet(body))")
        }
        guard let items = response.data, !items.isEmpty else {
            throw ProviderError(.malformedResponse, "OpenAI answered without any image")
        }
        let format = response.outputFormat ?? requestedFormat
        var images: [ProviderImage] = []
        for (index, item) in items.enumerated() {
            guard let encoded = item.b64JSON else {
                throw ProviderError(
                    .malformedResponse,
                    item.url != nil
                        ? "OpenAI answered image \(index + 1) with a URL instead of base64; GPT image models always answer base64"
                        : "OpenAI answered image \(index + 1) without b64_json"
                )
            }
            guard let data = Data(base64Encoded: encoded), !data.isEmpty else {
                throw ProviderError(.malformedResponse, "OpenAI's image \(index + 1) is not valid base64")
            }
            images.append(ProviderImage(data: data, format: format))
        }
        return images
    }

    /// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
    struct ErrorBody: Decodable {
        var message: String?
        var type: String?
        var code: String?

        enum Outer: String, CodingKey { case error }
        enum CodingKeys: String, CodingKey { case message, type, code }

        init(from decoder: any Decoder) throws {
            let outer = try decoder.container(keyedBy: Outer.self)
            let error = try outer.nestedContainer(keyedBy: CodingKeys.self, forKey: .error)
            self.message = try? error.decodeIfPresent(String.self, forKey: .message)
            self.type = try? error.decodeIfPresent(String.self, forKey: .type)
            self.code = (try? error.decodeIfPresent(ProviderHTTP.FlexibleCode.self, forKey: .code))?.value
        }
    }

    /// Sorts a non-2xx answer into a `ProviderError` (PROVIDERS.md: 400 invalid request or
    /// moderation, 401/403 key or region, 429 rate limit or quota, 5xx retry).
    static func failure(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer) -> ProviderError {
        let error = try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: body))
        let code = error?.code
        let type = error?.type
        let detail = error?.message ?? ProviderHTTP.snippet(body)
        let said = "OpenAI answered \(status.code)\(code.map { " \($0)" } ?? ""): \(detail)"
        let retryAfter = ProviderHTTP.retryAfter(headers)
        switch status.code {
        case 400:
            let moderated =
                code == "moderation_blocked" || code == "content_policy_violation"
                || [type, error?.message].contains { $0?.lowercased().contains("safety system") == true }
            if moderated {
                return ProviderError(.moderation, said, code: code ?? "moderation_blocked")
            }
            if code == "billing_hard_limit_reached" {
                return ProviderError(.providerQuota, said, code: code)
            }
            return ProviderError(.invalidRequest, said, code: code)
        case 401, 403:
            return ProviderError(.unauthorized, said + " (check the OpenAI API key, and that its region is served)", code: code)
        case 408:
            return ProviderError(.timeout, said, retryAfter: retryAfter, code: code)
        case 429:
            if code == "insufficient_quota" || type == "insufficient_quota" || code == "billing_hard_limit_reached" {
                return ProviderError(.providerQuota, said + " (the operator's OpenAI account is out of credit)", code: code ?? type)
            }
            return ProviderError(.rateLimited, said, retryAfter: retryAfter, code: code)
        case 400..<500:
            return ProviderError(.invalidRequest, said, code: code)
        default:
            return ProviderError(.unavailable, said, retryAfter: retryAfter, code: code)
        }
    }
}

// MARK: - Shared by the image providers

/// HTTP plumbing shared by `OpenAIImageProvider` and `EvolinkImageProvider`.
enum ProviderHTTP {
    struct Answer {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// `{base}/v1{path}`, without doubling a "/v1" the base already ends in.
    static func endpoint(base: String, path: String) -> String {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        return base.hasSuffix("/v1") ? base + path : base + "/v1" + path
    }

    /// Runs one request and collects its answer; transport failures become `timeout` (no answer
    /// in time) or `unavailable` (no connection), an oversized answer `malformedResponse`.
    static func execute(
        _ request: HTTPClientRequest, client: HTTPClient, timeout: Duration, maximumBytes: Int, provider: String, logger: Logger
    ) async throws(ProviderError) -> Answer {
        do {
            let deadline = NIODeadline.now() + TimeAmount(timeout)
            let response = try await client.execute(request, deadline: deadline, logger: logger)
            let body = try await response.body.collect(upTo: maximumBytes)
            return Answer(status: response.status, headers: response.headers, body: body)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .writeTimeout {
            throw ProviderError(.timeout, "\(provider) (\(request.url)) did not answer within \(timeout)")
        } catch is NIOTooManyBytesError {
            throw ProviderError(.malformedResponse, "\(provider) answered with more than \(maximumBytes / (1024 * 1024)) MB")
        } catch let error as HTTPClientError where error == .cancelled {
            throw ProviderError(.unavailable, "the call to \(provider) was cancelled")
        } catch is CancellationError {
            throw ProviderError(.unavailable, "the call to \(provider) was cancelled")
        } catch {
            throw ProviderError(.unavailable, "could not reach \(provider) at \(request.url) (\(error)); check the network and the provider's base URL")
        }
    }

    /// How long the provider asks to wait: `retry-after-ms` (OpenAI's, more precise) or
    /// `Retry-After` in seconds or as an HTTP date.
    static func retryAfter(_ headers: HTTPHeaders, now: Date = Date()) -> Duration? {
        if let milliseconds = headers.first(name: "retry-after-ms").flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }),
            milliseconds.isFinite, milliseconds >= 0
        {
            return .milliseconds(Int64(milliseconds.rounded(.up)))
        }
        guard let value = headers.first(name: "Retry-After")?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Double(value), seconds.isFinite, seconds >= 0 {
            return .milliseconds(Int64((seconds * 1000).rounded(.up)))
        }
        if let date = self.httpDate(value) {
            return .seconds(max(0, Int64(date.timeIntervalSince(now).rounded(.up))))
        }
        return nil
    }

    /// IMF-fixdate, RFC 850 and asctime, as RFC 9110 asks a recipient to accept.
    static func httpDate(_ value: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: value) { return date }
        }
        return nil
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The start of a body, for messages: bodies of failures are often HTML from a proxy.
    static func snippet(_ body: ByteBuffer) -> String {
        let text = String(decoding: body.readableBytesView.prefix(300), as: UTF8.self)
            .replacingOccurrences(of: "\n", with: " ")
            .trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? "(empty body)" : text
    }

    /// An error code given as a string or a number (providers' docs disagree).
    struct FlexibleCode: Decodable {
        var value: String?

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self.value = nil
            } else if let string = try? container.decode(String.self) {
                self.value = string
            } else if let number = try? container.decode(Int.self) {
                self.value = String(number)
            } else {
                self.value = nil
            }
        }
    }
}
