import AsyncHTTPClient
import EaselTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import EaselIntegrations

/// The image provider peer of the suite marked `.imageProviderPeer`, started before it and stopped after.
enum ImageProviderPeerScope {
    @TaskLocal static var peer: ImageProviderPeer?
}

extension Trait where Self == PeerScope<ImageProviderPeer> {
    static var imageProviderPeer: Self {
        Self(ImageProviderPeerScope.$peer, start: { try await ImageProviderPeer.start() }, stop: { await $0.stop() })
    }
}

private let pngSignature = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])

/// A prompt no other test uses: the peer scripts its behaviour per prompt.
private func uniquePrompt(_ label: String) -> String {
    "\(label) — a lighthouse at dusk, oil on canvas #\(UUID().uuidString.lowercased())"
}

/// Runs `body` with a fresh HTTP client, shut down after.
private func withClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    // A short connect timeout: AsyncHTTPClient keeps retrying a refused connection until it ends.
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(timeout: .init(connect: .seconds(1))))
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try await client.shutdown()
        throw error
    }
}

/// Runs `call`, which must throw a `ProviderError`, and returns it.
private func providerError(_ call: () async throws(ProviderError) -> Void) async -> ProviderError? {
    do {
        try await call()
        return nil
    } catch {
        return error
    }
}

// MARK: - OpenAI

@Suite("OpenAIImageProvider against a stand-in of OpenAI's Images API", .imageProviderPeer)
struct OpenAIImageProviderTests {
    var peer: ImageProviderPeer { ImageProviderPeerScope.peer! }

    func withProvider<T>(
        apiKey: String? = nil, baseURL: String? = nil, timeout: Duration = .seconds(30), _ body: (OpenAIImageProvider) async throws -> T
    ) async throws -> T {
        try await withClient { client in
            let configuration = OpenAIConfiguration(apiKey: apiKey ?? self.peer.apiKey, baseURL: baseURL ?? self.peer.openAIBaseURL, timeout: timeout)
            return try await body(OpenAIImageProvider(configuration: configuration, httpClient: client))
        }
    }

    static func generation(_ prompt: String, count: Int = 1, references: [ProviderReferenceImage] = []) -> ProviderGenerationRequest {
        ProviderGenerationRequest(
            model: "gpt-image-2", prompt: prompt, size: "1536x1024", quality: "high", count: count, references: references,
            outputFormat: "png", endUser: "user-7f3a"
        )
    }

    @Test("a generation is one JSON POST to /v1/images/generations and answers the decoded PNGs")
    func generate() async throws {
        let prompt = uniquePrompt("happy")
        let images = try await self.withProvider { try await $0.generate(Self.generation(prompt, count: 2)) }

        #expect(images.count == 2)
        for image in images {
            #expect(image.data.prefix(8) == pngSignature)
            #expect(image.format == "png")
        }
        #expect(images[0].data != images[1].data)

        let requests = try await self.peer.requests(prompt: prompt)
        #expect(requests.count == 1)
        let request = try #require(requests.first)
        #expect(request.method == "POST")
        #expect(request.path == "/openai/v1/images/generations")
        #expect(request.authorized == true)
        #expect(request.status == 200)
        #expect(request.model == "gpt-image-2")
        #expect(request.size == "1536x1024")
        #expect(request.quality == "high")
        #expect(request.n == 2)
        #expect(request.outputFormat == "png")
        #expect(request.user == "user-7f3a")
    }

    @Test("a base URL that already ends in /v1 (with a slash) is not doubled")
    func baseURLWithVersion() async throws {
        let prompt = uniquePrompt("v1 base")
        let images = try await self.withProvider(baseURL: self.peer.openAIBaseURL + "/v1/") { try await $0.generate(Self.generation(prompt)) }
        #expect(images.count == 1)
        let requests = try await self.peer.requests(prompt: prompt)
        #expect(requests.map(\.path) == ["/openai/v1/images/generations"])
    }

    @Test("reference images go as repeated image[] file parts of a multipart POST to /v1/images/edits")
    func edits() async throws {
        let prompt = uniquePrompt("edits")
        let png = try await self.withProvider { try await $0.generate(Self.generation(uniquePrompt("reference"))) }[0].data
        let references = [
            ProviderReferenceImage(filename: "first.png", contentType: "image/png", data: png),
            ProviderReferenceImage(filename: "zweite \"Skizze\".png", contentType: "image/png", data: png + Data([0])),
            ProviderReferenceImage(filename: "third.png", contentType: "image/webp", data: png),
        ]
        let images = try await self.withProvider { try await $0.generate(Self.generation(prompt, count: 1, references: references)) }
        #expect(images.count == 1)
        #expect(images.first?.data.prefix(8) == pngSignature)

        let request = try #require(try await self.peer.requests(prompt: prompt).first)
        #expect(request.path == "/openai/v1/images/edits")
        #expect(request.status == 200)
        #expect(request.images == 3)
        #expect(request.imageContentTypes == ["image/png", "image/png", "image/webp"])
        #expect(request.imageFilenames?.first == "first.png")
        #expect(request.imageFilenames?.count == 3)
        #expect(request.imageFilenames?[1].contains("\"") == false)
        #expect(request.model == "gpt-image-2")
        #expect(request.size == "1536x1024")
        #expect(request.quality == "high")
        #expect(request.n == 1)
    }

    @Test("a reference without bytes is refused before any request")
    func referenceWithoutBytes() async throws {
        let prompt = uniquePrompt("no bytes")
        let references = [ProviderReferenceImage(filename: "a.png", contentType: "image/png", url: "https://example.com/a.png")]
        let error = try await self.withProvider { provider in
            await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(prompt, references: references)) }
        }
        #expect(error?.kind == .invalidRequest)
        #expect(try await self.peer.requests(prompt: prompt).isEmpty)
    }

    struct Fault: Sendable, CustomTestStringConvertible {
        var label: String
        var step: ImageProviderPeerStep
        var kind: ProviderError.Kind
        var retryAfter: ClosedRange<Duration>?
        var code: String?

        var testDescription: String { self.label }
    }

    static let faults: [Fault] = [
        Fault(label: "429 with Retry-After seconds", step: .status(429, retryAfter: 7), kind: .rateLimited, retryAfter: .seconds(7) ... .seconds(7), code: "rate_limit_exceeded"),
        Fault(label: "429 with retry-after-ms", step: .status(429, retryAfter: 2, retryAfterMs: 1500), kind: .rateLimited, retryAfter: .milliseconds(1500) ... .milliseconds(1500)),
        Fault(label: "429 with an HTTP-date Retry-After", step: .status(429, retryAfterDate: 120), kind: .rateLimited, retryAfter: .seconds(100) ... .seconds(121)),
        Fault(label: "429 insufficient_quota", step: .status(429, code: "insufficient_quota"), kind: .providerQuota, code: "insufficient_quota"),
        Fault(label: "500", step: .status(500), kind: .unavailable),
        Fault(label: "502 with a proxy's HTML page", step: .status(502), kind: .unavailable),
        Fault(label: "503 with Retry-After", step: .status(503, retryAfter: 3), kind: .unavailable, retryAfter: .seconds(3) ... .seconds(3)),
        Fault(label: "504", step: .status(504), kind: .unavailable),
        Fault(label: "400 moderation_blocked", step: .status(400, code: "moderation_blocked"), kind: .moderation, code: "moderation_blocked"),
        Fault(label: "400 other", step: .status(400, code: "invalid_value"), kind: .invalidRequest, code: "invalid_value"),
        Fault(label: "403 region", step: .status(403), kind: .unauthorized),
        Fault(label: "200 with HTML", step: .malformed(), kind: .malformedResponse),
        Fault(label: "200 with cut-off JSON", step: .malformed("truncated"), kind: .malformedResponse),
        Fault(label: "200 without images", step: .malformed("empty_data"), kind: .malformedResponse),
        Fault(label: "200 with bad base64", step: .malformed("bad_base64"), kind: .malformedResponse),
    ]

    @Test("each fault of the provider maps to its ProviderError kind", arguments: Self.faults)
    func fault(_ fault: Fault) async throws {
        let prompt = uniquePrompt(fault.label)
        try await self.peer.script(prompt: prompt, openAI: [fault.step])
        let error = try await self.withProvider { provider in
            await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(prompt)) }
        }
        let thrown = try #require(error)
        #expect(thrown.kind == fault.kind, "\(thrown)")
        if let range = fault.retryAfter {
            let retryAfter = try #require(thrown.retryAfter)
            #expect(range.contains(retryAfter), "\(retryAfter)")
        } else {
            #expect(thrown.retryAfter == nil)
        }
        if let code = fault.code {
            #expect(thrown.code == code)
        }
        #expect(try await self.peer.requests(prompt: prompt).count == 1)
    }

    @Test("a wrong key is unauthorized and the key never appears in the configuration's description")
    func wrongKey() async throws {
        let prompt = uniquePrompt("wrong key")
        let error = try await self.withProvider(apiKey: "sk-wrong-secret") { provider in
            #expect(!provider.configuration.description.contains("sk-wrong-secret"))
            return await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(prompt)) }
        }
        #expect(error?.kind == .unauthorized)
        #expect(error?.isRetryable == false)
        let request = try #require(try await self.peer.requests(prompt: prompt).first)
        #expect(request.authorized == false)
        #expect(request.status == 401)
    }

    @Test("an answer slower than the configured timeout is a timeout")
    func timeout() async throws {
        let prompt = uniquePrompt("slow")
        // Far longer than the timeout: when the whole suite runs on two cores, the client's
        // deadline timer can start late, and a short delay would let the answer win the race.
        try await self.peer.script(prompt: prompt, openAI: [.delay(20)])
        let error = try await self.withProvider(timeout: .seconds(1)) { provider in
            await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(prompt)) }
        }
        #expect(error?.kind == .timeout)
        #expect(error?.isRetryable == true)
    }

    @Test("nobody listening is unavailable")
    func unreachable() async throws {
        let port = try FreePort.find()
        let error = try await self.withProvider(baseURL: "http://127.0.0.1:\(port)") { provider in
            await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(uniquePrompt("nobody"))) }
        }
        #expect(error?.kind == .unavailable)
    }

    @Test("after a 503 the next call with the same prompt succeeds (the script moves on)")
    func retryAfterUnavailable() async throws {
        let prompt = uniquePrompt("flaky")
        try await self.peer.script(prompt: prompt, openAI: [.status(503), .ok])
        try await self.withProvider { provider in
            let first = await providerError { () async throws(ProviderError) in _ = try await provider.generate(Self.generation(prompt)) }
            #expect(first?.kind == .unavailable)
            let images = try await provider.generate(Self.generation(prompt, count: 3))
            #expect(images.count == 3)
        }
        #expect(try await self.peer.requests(prompt: prompt).map(\.status) == [503, 200])
    }

    @Test("Retry-After parsing: seconds, HTTP dates in three formats, retry-after-ms first, garbage ignored")
    func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        func parse(_ fields: [(String, String)]) -> Duration? { ProviderHTTP.retryAfter(HTTPHeaders(fields), now: now) }
        #expect(parse([("Retry-After", "12")]) == .seconds(12))
        #expect(parse([("Retry-After", "0.5")]) == .milliseconds(500))
        #expect(parse([("Retry-After", "Sun, 06 Nov 1994 08:50:37 GMT")]) == .seconds(60))
        #expect(parse([("Retry-After", "Sunday, 06-Nov-94 08:50:37 GMT")]) == .seconds(60))
        #expect(parse([("Retry-After", "Sun Nov  6 08:50:37 1994")]) == .seconds(60))
        #expect(parse([("Retry-After", "Sun, 06 Nov 1994 08:00:00 GMT")]) == .seconds(0))
        #expect(parse([("Retry-After", "10"), ("retry-after-ms", "250")]) == .milliseconds(250))
        #expect(parse([("Retry-After", "soon")]) == nil)
        #expect(parse([]) == nil)
    }

    @Test("endpoints: the base's trailing slashes and /v1 are handled")
    func endpoints() {
        #expect(OpenAIConfiguration(apiKey: "k").generationsURL == "https://api.openai.com/v1/images/generations")
        #expect(OpenAIConfiguration(apiKey: "k", baseURL: "https://gw.example/openai/v1").editsURL == "https://gw.example/openai/v1/images/edits")
        #expect(OpenAIConfiguration(apiKey: "k", baseURL: "https://gw.example/").editsURL == "https://gw.example/v1/images/edits")
        #expect(OpenAIConfiguration(apiKey: "k").timeout == .seconds(300))
    }
}

// MARK: - Evolink

@Suite("EvolinkImageProvider against a stand-in of Evolink's task API", .imageProviderPeer)
struct EvolinkImageProviderTests {
    var peer: ImageProviderPeer { ImageProviderPeerScope.peer! }

    func withProvider<T>(apiKey: String? = nil, timeout: Duration = .seconds(30), _ body: (EvolinkImageProvider, HTTPClient) async throws -> T) async throws -> T {
        try await withClient { client in
            let configuration = EvolinkConfiguration(apiKey: apiKey ?? self.peer.apiKey, baseURL: self.peer.evolinkBaseURL, timeout: timeout)
            return try await body(EvolinkImageProvider(configuration: configuration, httpClient: client), client)
        }
    }

    static func generation(_ prompt: String, count: Int = 1, references: [String] = []) -> ProviderGenerationRequest {
        ProviderGenerationRequest(
            model: "gpt-image-2", prompt: prompt, size: "16:9", quality: "medium", count: count,
            references: references.enumerated().map { ProviderReferenceImage(filename: "ref\($0.offset).png", contentType: "image/png", url: $0.element) }
        )
    }

    /// Polls until the task ends (the peer moves on per poll, so no waiting is needed).
    static func pollUntilDone(_ provider: EvolinkImageProvider, _ id: String, limit: Int = 20) async throws -> (states: [ProviderTaskStatus], final: ProviderTaskStatus) {
        var seen: [ProviderTaskStatus] = []
        for _ in 0..<limit {
            let status = try await provider.status(of: id)
            seen.append(status)
            if status.state == .completed || status.state == .failed { return (seen, status) }
        }
        Issue.record("task \(id) did not end within \(limit) polls: \(seen.map(\.state))")
        throw ProviderError(.timeout, "no end")
    }

    static func download(_ url: String, _ client: HTTPClient) async throws -> (status: UInt, body: Data) {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 10 * 1024 * 1024)
        return (response.status.code, Data(body.readableBytesView))
    }

    @Test("submit answers an id and pending; polls go pending, processing, completed with result URLs that serve PNGs")
    func happyPath() async throws {
        let prompt = uniquePrompt("evolink happy")
        let references = ["https://easel.example/r/1?sig=a", "https://easel.example/r/2?sig=b"]
        try await self.withProvider { provider, client in
            let submitted = try await provider.submit(Self.generation(prompt, count: 2, references: references), callbackURL: nil)
            #expect(submitted.id.hasPrefix("task-unified-"))
            #expect(submitted.state == .pending)
            #expect(submitted.progress == 0)

            let (states, final) = try await Self.pollUntilDone(provider, submitted.id)
            #expect(states.map(\.state) == [.pending, .processing, .completed])
            #expect(states.map(\.progress) == states.map(\.progress).sorted())
            #expect(final.progress == 100)
            #expect(final.error == nil)
            #expect(final.resultURLs.count == 2)
            for url in final.resultURLs {
                let (status, body) = try await Self.download(url, client)
                #expect(status == 200)
                #expect(body.prefix(8) == pngSignature)
            }
        }
        let submit = try #require(try await self.peer.requests(prompt: prompt).first)
        #expect(submit.path == "/evolink/v1/images/generations")
        #expect(submit.model == "gpt-image-2")
        #expect(submit.size == "16:9")
        #expect(submit.quality == "medium")
        #expect(submit.n == 2)
        #expect(submit.imageURLs == references)
        #expect(submit.callbackURL == nil)
        let task = try #require(try await self.peer.tasks(prompt: prompt).first)
        #expect(task.submitCount == 1)
        #expect(task.status == "completed")
    }

    struct TaskFailure: Sendable, CustomTestStringConvertible {
        var code: String
        var kind: ProviderError.Kind
        var testDescription: String { self.code }
    }

    static let taskFailures: [TaskFailure] = [
        TaskFailure(code: "content_policy_violation", kind: .moderation),
        TaskFailure(code: "invalid_parameters", kind: .invalidRequest),
        TaskFailure(code: "image_dimension_mismatch", kind: .invalidRequest),
        TaskFailure(code: "quota_exceeded", kind: .providerQuota),
        TaskFailure(code: "service_error", kind: .failed),
        TaskFailure(code: "generation_timeout", kind: .failed),
        TaskFailure(code: "unknown_error", kind: .failed),
    ]

    @Test("a failed task reports its error code sorted into a kind, never retryable", arguments: Self.taskFailures)
    func failedTask(_ failure: TaskFailure) async throws {
        let prompt = uniquePrompt("failed \(failure.code)")
        try await self.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 1, outcome: .failed(failure.code)))
        try await self.withProvider { provider, _ in
            let submitted = try await provider.submit(Self.generation(prompt), callbackURL: nil)
            let (_, final) = try await Self.pollUntilDone(provider, submitted.id)
            #expect(final.state == .failed)
            #expect(final.resultURLs.isEmpty)
            let error = try #require(final.error)
            #expect(error.kind == failure.kind)
            #expect(error.code == failure.code)
            #expect(!error.isRetryable)
        }
    }

    struct SubmitFault: Sendable, CustomTestStringConvertible {
        var label: String
        var step: ImageProviderPeerStep
        var kind: ProviderError.Kind
        var retryAfter: Duration?
        var testDescription: String { self.label }
    }

    static let submitFaults: [SubmitFault] = [
        SubmitFault(label: "429 with Retry-After", step: .status(429, retryAfter: 5), kind: .rateLimited, retryAfter: .seconds(5)),
        SubmitFault(label: "429 without Retry-After waits the documented 60 s", step: .status(429), kind: .rateLimited, retryAfter: .seconds(60)),
        SubmitFault(label: "429 with a string quota code", step: .status(429, code: "insufficient_quota"), kind: .providerQuota),
        SubmitFault(label: "402", step: .status(402), kind: .providerQuota),
        SubmitFault(label: "400", step: .status(400), kind: .invalidRequest),
        SubmitFault(label: "413", step: .status(413), kind: .invalidRequest),
        SubmitFault(label: "403", step: .status(403), kind: .unauthorized),
        SubmitFault(label: "500", step: .status(500), kind: .unavailable),
        SubmitFault(label: "502", step: .status(502), kind: .unavailable),
        SubmitFault(label: "503 without Retry-After waits the documented 30 s", step: .status(503), kind: .unavailable, retryAfter: .seconds(30)),
        SubmitFault(label: "200 with HTML", step: .malformed(), kind: .malformedResponse),
        SubmitFault(label: "200 without an id", step: .malformed("no_id"), kind: .malformedResponse),
    ]

    @Test("each fault of a submit maps to its ProviderError kind", arguments: Self.submitFaults)
    func submitFault(_ fault: SubmitFault) async throws {
        let prompt = uniquePrompt("submit \(fault.label)")
        try await self.peer.script(prompt: prompt, evolink: EvolinkPeerScript(submit: [fault.step]))
        let error = try await self.withProvider { provider, _ in
            await providerError { () async throws(ProviderError) in _ = try await provider.submit(Self.generation(prompt), callbackURL: nil) }
        }
        let thrown = try #require(error)
        #expect(thrown.kind == fault.kind, "\(thrown)")
        #expect(thrown.retryAfter == fault.retryAfter)
    }

    @Test("a wrong key is unauthorized")
    func wrongKey() async throws {
        let error = try await self.withProvider(apiKey: "wrong") { provider, _ in
            await providerError { () async throws(ProviderError) in _ = try await provider.submit(Self.generation(uniquePrompt("key")), callbackURL: nil) }
        }
        #expect(error?.kind == .unauthorized)
    }

    @Test("a status query the provider does not know is a failed task; a 503 poll is retryable and the next poll goes on")
    func pollFaults() async throws {
        let prompt = uniquePrompt("poll faults")
        try await self.peer.script(prompt: prompt, evolink: EvolinkPeerScript(poll: [.status(503, retryAfter: 2), .ok], pollsUntilDone: 0))
        try await self.withProvider { provider, _ in
            let unknown = await providerError { () async throws(ProviderError) in _ = try await provider.status(of: "task-unified-nonexistent") }
            #expect(unknown?.kind == .failed)

            let submitted = try await provider.submit(Self.generation(prompt), callbackURL: nil)
            let unavailable = await providerError { () async throws(ProviderError) in _ = try await provider.status(of: submitted.id) }
            #expect(unavailable?.kind == .unavailable)
            #expect(unavailable?.retryAfter == .seconds(2))
            let final = try await provider.status(of: submitted.id)
            #expect(final.state == .completed)
        }
        #expect(try await self.peer.tasks(prompt: prompt).first?.submitCount == 1)
    }

    @Test("a result URL after its time answers 410 (the images must be mirrored at once)")
    func expiredResult() async throws {
        let prompt = uniquePrompt("expired")
        try await self.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 0, result: .expired))
        try await self.withProvider { provider, client in
            let submitted = try await provider.submit(Self.generation(prompt), callbackURL: nil)
            let final = try await provider.status(of: submitted.id)
            let url = try #require(final.resultURLs.first)
            #expect(try await Self.download(url, client).status == 410)
        }
    }

    @Test("the callback POSTs the task body, which parseTaskBody reads like a poll", arguments: [EvolinkPeerScript.Callback.normal, .beforeFirstPoll, .duplicate])
    func callback(_ mode: EvolinkPeerScript.Callback) async throws {
        let prompt = uniquePrompt("callback \(mode.rawValue)")
        let receiver = try CallbackReceiver.start()
        defer { receiver.stop() }
        let path = "/callbacks/evolink/\(UUID().uuidString.lowercased())"
        // Nobody polls: the task ends by itself (or at submit, for before_first_poll).
        try await self.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 1000, callback: mode, completeAfter: 0.2))
        try await self.withProvider { provider, client in
            let submitted = try await provider.submit(Self.generation(prompt, count: 2), callbackURL: receiver.baseURL + path)
            #expect(submitted.state == .pending)

            let expected = mode == .duplicate ? 2 : 1
            let callbacks = try await receiver.waitForRequests(count: expected, path: path)
            #expect(callbacks.count == expected)
            for callback in callbacks {
                #expect(callback.method == "POST")
                #expect(callback.headers["content-type"] == "application/json")
                let status = try EvolinkImageProvider.parseTaskBody(callback.body)
                #expect(status.id == submitted.id)
                #expect(status.state == .completed)
                #expect(status.resultURLs.count == 2)
                for url in status.resultURLs {
                    #expect(try await Self.download(url, client).body.prefix(8) == pngSignature)
                }
            }
            // Verified by polling, as PROVIDERS.md asks: the same state.
            let polled = try await provider.status(of: submitted.id)
            #expect(polled == (try EvolinkImageProvider.parseTaskBody(callbacks[0].body)))
        }
        let task = try #require(try await self.peer.tasks(prompt: prompt).first)
        #expect(task.submitCount == 1)
        #expect(task.callbacks.allSatisfy { $0.status == 200 })
    }

    @Test("parseTaskBody: numeric or string codes, objects as results, no id, unknown states, completed without results")
    func parseTaskBody() throws {
        func parse(_ json: String) throws(ProviderError) -> ProviderTaskStatus { try EvolinkImageProvider.parseTaskBody(Data(json.utf8)) }

        let failed = try parse(#"{"id":"t1","status":"failed","progress":40,"error":{"code":"content_policy_violation","message":"no"}}"#)
        #expect(failed.state == .failed)
        #expect(failed.error?.kind == .moderation)
        #expect(failed.progress == 40)

        let numeric = try parse(#"{"id":"t2","status":"failed","error":{"code":500,"message":"boom"}}"#)
        #expect(numeric.error?.kind == .failed)
        #expect(numeric.error?.code == "500")

        let objects = try parse(#"{"id":"t3","status":"completed","progress":99.6,"results":[{"url":"https://cdn.example/a.png"}]}"#)
        #expect(objects.resultURLs == ["https://cdn.example/a.png"])
        #expect(objects.progress == 100)

        let empty = try parse(#"{"id":"t4","status":"completed","results":[]}"#)
        #expect(empty.state == .failed)
        #expect(empty.error?.kind == .failed)

        let processing = try parse(#"{"id":"t5","status":"processing","progress":"lots"}"#)
        #expect(processing.state == .processing)
        #expect(processing.progress == 0)

        #expect(throws: ProviderError.self) { try parse(#"{"status":"pending"}"#) }
        #expect(throws: ProviderError.self) { try parse(#"{"id":"t6","status":"exploded"}"#) }
        #expect(throws: ProviderError.self) { try parse("<html>") }
        do {
            _ = try parse(#"{"status":"completed","results":["x"]}"#)
            Issue.record("a body without id must throw")
        } catch {
            #expect(error.kind == .malformedResponse)
        }
    }

    @Test("configuration: defaults, /v1 not doubled, task ids escaped, the key not shown")
    func configuration() {
        let configuration = EvolinkConfiguration(apiKey: "ev-secret")
        #expect(configuration.baseURL == "https://api.evolink.ai")
        #expect(configuration.timeout == .seconds(30))
        #expect(configuration.submitURL == "https://api.evolink.ai/v1/images/generations")
        #expect(configuration.taskURL("task-unified-1/../x") == "https://api.evolink.ai/v1/tasks/task-unified-1%2F..%2Fx")
        #expect(EvolinkConfiguration(apiKey: "k", baseURL: "https://e.example/v1/").submitURL == "https://e.example/v1/images/generations")
        #expect(!configuration.description.contains("ev-secret"))
    }
}
