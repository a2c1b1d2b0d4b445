import AsyncHTTPClient
import Crypto
import EaselBlobs
import EaselImages
import EaselIntegrations
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import EaselCore

// End-to-end runs of the dispatcher against the image provider peer (a real HTTP server on
// loopback): every provider fault ends in the right final state, with credits that add up to the
// last one, the ledger entries a task may have, and no image file left behind by a failure.
//
// Time is a clock the tests move by hand: `drain(now:)` gives every due task one step, retries
// and polls are scheduled into the (fake) future, so a test advances the clock and drains again.

/// The image provider peer of this suite, started before it and stopped after.
private enum GenerationFaultMatrixPeer {
    @TaskLocal static var peer: ImageProviderPeer?
}

extension Trait where Self == PeerScope<ImageProviderPeer> {
    fileprivate static var faultMatrixPeer: Self {
        Self(GenerationFaultMatrixPeer.$peer, start: { try await ImageProviderPeer.start() }, stop: { await $0.stop() })
    }
}

/// The time the dispatcher sees: starts at a whole second and moves only when told.
private final class FaultMatrixClock: Sendable {
    private let current: Mutex<Date>

    init() {
        self.current = Mutex(Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))
    }

    func now() -> Date { self.current.withLock { $0 } }

    func advance(_ seconds: TimeInterval) {
        self.current.withLock { $0.addTimeInterval(seconds) }
    }
}

private let pngSignature = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])

/// A prompt no other test uses: the peer scripts its behaviour per prompt.
private func uniquePrompt(_ label: String) -> String {
    "\(label): a fox in the snow, watercolour #\(UUID().uuidString.lowercased())"
}

/// Everything one test needs: a database and blob store in a temporary folder, one person with
/// credits, a generation service and dispatchers on the suite's peer.
private struct FaultRig: Sendable {
    let folder: TemporaryDirectory
    let database: AppDatabase
    let blobs: DiskBlobStore
    let images: ImageLibrary
    let events: TaskEvents
    let settings: GenerationSettings
    let service: GenerationService
    let clock: FaultMatrixClock
    let userID: Int64
    let client: HTTPClient
    let peer: ImageProviderPeer
    let logger: Logger

    var viewer: Viewer { Viewer(userID: self.userID, isAdmin: false) }

    /// 1024x1024 at medium quality with gpt-image-2: 4 credits an image (the peer's 64x64 PNGs
    /// are in the same, small, size class, so a full answer is charged what was reserved).
    static let pricePerImage = 4

    /// Runs `body` with a fresh rig holding `credits`; removes everything after.
    static func with(
        credits: Int = 1000, configure: (inout GenerationSettings) -> Void = { _ in }, _ body: (FaultRig) async throws -> Void
    ) async throws {
        let peer = try #require(GenerationFaultMatrixPeer.peer)
        let folder = try TemporaryDirectory("easel-fault-matrix")
        // A short connect timeout: AsyncHTTPClient keeps retrying a refused connection until it ends.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(timeout: .init(connect: .seconds(2))))
        do {
            var logger = Logger(label: "easel.tests.fault-matrix")
            logger.logLevel = .warning
            let database = try AppDatabase.open(path: folder.url.appending(path: "easel.sqlite").path)
            let blobs = try DiskBlobStore(
                root: folder.url.appending(path: "blobs"),
                urlSigner: BlobURLSigner(baseURL: URL(string: "http://127.0.0.1:9/blobs")!, secret: Array("fault-matrix".utf8))
            )
            var settings = GenerationSettings(
                provider: .openai, maximumActiveTasks: 50, taskTimeout: .seconds(600), maximumAttempts: 4,
                submitPerPerson: .init(capacity: 1000, per: .seconds(60)), submitPerIP: .init(capacity: 1000, per: .seconds(60))
            )
            configure(&settings)
            let images = ImageLibrary()
            let events = TaskEvents()
            let service = GenerationService(settings: settings, database: database, blobs: blobs, images: images, events: events, wake: {}, logger: logger)
            let userID = try await Self.makeUser(database, email: "p-\(UUID().uuidString.prefix(8).lowercased())@example.org")
            if credits > 0 {
                try await database.grantCredits(userID: userID, amount: credits, reason: "test")
            }
            let rig = FaultRig(
                folder: folder, database: database, blobs: blobs, images: images, events: events, settings: settings, service: service,
                clock: FaultMatrixClock(), userID: userID, client: client, peer: peer, logger: logger
            )
            try await body(rig)
        } catch {
            try? await client.shutdown()
            folder.remove()
            throw error
        }
        try await client.shutdown()
        folder.remove()
    }

    static func makeUser(_ database: AppDatabase, email: String) async throws -> Int64 {
        let user = try await database.createAccount(
            NewAccount(email: email, passwordHash: nil, displayName: "Ada", language: nil, termsVersion: "test"),
            verification: NewEmailToken(purpose: .verifyEmail, tokenHash: Data("token \(email)".utf8), expiresAt: Date().addingTimeInterval(3600)),
            mail: MailDraft(kind: "verify_email", toEmail: email, toName: nil, subject: "Confirm", text: "Confirm", html: nil, messageID: "<\(email)>")
        )
        return try #require(user.id)
    }

    // MARK: Providers and dispatchers

    func openAI(timeout: Duration = .seconds(30)) -> GenerationBackend {
        .synchronous(
            OpenAIImageProvider(
                configuration: OpenAIConfiguration(apiKey: self.peer.apiKey, baseURL: self.peer.openAIBaseURL, timeout: timeout), httpClient: self.client
            )
        )
    }

    func evolink(timeout: Duration = .seconds(30)) -> GenerationBackend {
        .asynchronous(
            EvolinkImageProvider(
                configuration: EvolinkConfiguration(apiKey: self.peer.apiKey, baseURL: self.peer.evolinkBaseURL, timeout: timeout), httpClient: self.client
            )
        )
    }

    func dispatcher(_ backend: GenerationBackend, settings: GenerationSettings? = nil, callbackSigner: SignedValue? = nil) -> GenerationDispatcher {
        GenerationDispatcher(
            .init(
                settings: settings ?? self.settings, database: self.database, blobs: self.blobs, images: self.images, events: self.events,
                backend: backend, fetcher: GuardedFetcher(policy: FetchPolicy(timeout: .seconds(20), allowedHosts: ["127.0.0.1", "localhost"])),
                callbackSigner: callbackSigner
            ),
            logger: self.logger
        )
    }

    // MARK: Driving

    func submit(_ prompt: String, n: Int = 1) async throws -> GenerationTask {
        let outcome = try await self.service.submit(GenerationRequest(prompt: prompt, n: n), viewer: self.viewer, clientIP: nil, now: self.clock.now())
        guard case .created(let task) = outcome else { throw TestPeerError("submit found an existing task") }
        #expect(task.status == .queued)
        #expect(task.creditsReserved == Self.pricePerImage * n)
        return task
    }

    /// One drain at the current (fake) time.
    func drain(_ dispatcher: GenerationDispatcher) async {
        let clock = self.clock
        await dispatcher.drain(now: { clock.now() })
    }

    /// Drains, moving the clock `step` seconds between rounds, until the task has finished.
    func runToEnd(_ dispatcher: GenerationDispatcher, taskID: Int64, rounds: Int = 15, step: TimeInterval = 120) async throws -> GenerationTask {
        for _ in 0..<rounds {
            await self.drain(dispatcher)
            let task = try #require(try await self.database.generationTask(id: taskID))
            if task.status.isFinished { return task }
            self.clock.advance(step)
        }
        let task = try #require(try await self.database.generationTask(id: taskID))
        Issue.record("task \(taskID) did not finish in \(rounds) rounds: \(task.status), attempts \(task.attempts), \(task.failureMessage ?? "")")
        return task
    }

    func task(_ id: Int64) async throws -> GenerationTask {
        try #require(try await self.database.generationTask(id: id))
    }

    func balance() async throws -> Int {
        try await self.database.creditBalance(userID: self.userID)
    }

    func blobPrefix(_ taskID: Int64) -> String {
        "images/u\(self.userID)/t\(taskID)/"
    }

    /// Waits (a bounded number of short sleeps) until `condition` holds.
    func eventually(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !(try await condition()) {
            guard ContinuousClock.now < deadline else { throw TestPeerError("gave up waiting: \(what)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    // MARK: The end state

    /// The task's final state, its credits, the person's balance, its ledger entries, the
    /// consistency check, its image rows and their files, and no stray file under its folder.
    func expectSettled(
        _ task: GenerationTask, _ status: GenerationTask.Status, code: String? = nil, reserved: Int, charged: Int, images: Int, balance: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let taskID = try #require(task.id, sourceLocation: sourceLocation)
        #expect(task.status == status, "\(task.failureCode ?? "") \(task.failureMessage ?? "")", sourceLocation: sourceLocation)
        #expect(task.failureCode == code, sourceLocation: sourceLocation)
        #expect(task.creditsReserved == reserved, sourceLocation: sourceLocation)
        #expect(task.creditsCharged == charged, sourceLocation: sourceLocation)
        #expect(task.creditsRefunded == reserved - charged, sourceLocation: sourceLocation)
        #expect(task.finishedAt != nil, sourceLocation: sourceLocation)
        #expect(try await self.balance() == balance, sourceLocation: sourceLocation)

        let entries = try await self.database.ledger(userID: self.userID, limit: 1000).filter { $0.taskID == taskID }
        let reserves = entries.filter { $0.kind == .reserve }
        let refunds = entries.filter { $0.kind == .refund }
        let captures = entries.filter { $0.kind == .capture }
        #expect(reserves.map(\.amount) == [-reserved], sourceLocation: sourceLocation)
        #expect(refunds.map(\.amount) == (reserved - charged > 0 ? [reserved - charged] : []), sourceLocation: sourceLocation)
        #expect(captures.count == (status == .succeeded ? 1 : 0), sourceLocation: sourceLocation)
        #expect(captures.allSatisfy { $0.amount == 0 }, sourceLocation: sourceLocation)
        #expect(entries.count == reserves.count + refunds.count + captures.count, sourceLocation: sourceLocation)
        #expect(entries.reduce(0) { $0 + $1.amount } == -charged, sourceLocation: sourceLocation)

        let problems = try await self.database.verifyCreditBalances()
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)

        let rows = try await self.database.images(taskID: taskID)
        #expect(rows.count == images, sourceLocation: sourceLocation)
        #expect(rows.map(\.resultIndex) == Array(0..<rows.count), sourceLocation: sourceLocation)
        var expectedKeys: Set<String> = []
        for row in rows {
            #expect(row.userID == self.userID, sourceLocation: sourceLocation)
            for key in [row.blobKey, row.thumbKey] {
                #expect(key.hasPrefix(self.blobPrefix(taskID)), "\(key)", sourceLocation: sourceLocation)
                #expect(try await self.blobs.head(BlobKey(key)) != nil, "missing blob \(key)", sourceLocation: sourceLocation)
                expectedKeys.insert(key)
            }
            let data = try await self.blobs.getData(BlobKey(row.blobKey))
            #expect(data.prefix(8) == pngSignature, sourceLocation: sourceLocation)
            #expect(data.count == row.bytes, sourceLocation: sourceLocation)
            #expect(SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() == row.sha256, sourceLocation: sourceLocation)
        }
        // Exactly the files the rows name: none for a failure, no strays for a success.
        let stored = Set(try await self.blobs.list(prefix: self.blobPrefix(taskID)).map(\.key.rawValue))
        #expect(stored == expectedKeys, sourceLocation: sourceLocation)
    }
}

// MARK: - OpenAI (synchronous)

@Suite("Generation fault matrix: the dispatcher against the provider peer, ending with exact credits", .faultMatrixPeer)
struct GenerationFaultMatrixTests {
    static let price = FaultRig.pricePerImage

    @Test("OpenAI: n=2 succeeds with 2 images, charged the price")
    func openAIHappy() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai happy")
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt, n: 2)
            #expect(try await rig.balance() == 100 - 2 * Self.price)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(task.attempts == 0)
            let requests = try await rig.peer.requests(prompt: prompt)
            #expect(requests.map(\.status) == [200])
            #expect(requests.first?.n == 2)
            #expect(requests.first?.user == "u\(rig.userID)")
        }
    }

    @Test("OpenAI: 429 with Retry-After, then ok: the retry waits at least the Retry-After, then succeeds")
    func openAIRateLimited() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai 429")
            try await rig.peer.script(prompt: prompt, openAI: [.status(429, retryAfter: 30), .ok])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt)
            let start = rig.clock.now()

            await rig.drain(dispatcher)
            let waiting = try await rig.task(submitted.id!)
            #expect(waiting.status == .running)
            #expect(waiting.attempts == 1)
            #expect(waiting.nextAttemptAt >= start.addingTimeInterval(30), "\(waiting.nextAttemptAt.timeIntervalSince(start))")
            #expect(waiting.creditsCharged == 0 && waiting.creditsRefunded == 0)
            // Not due before the Retry-After: a drain just short of it sends nothing.
            rig.clock.advance(29)
            await rig.drain(dispatcher)
            #expect(try await rig.peer.requests(prompt: prompt).count == 1)

            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: Self.price, charged: Self.price, images: 1, balance: 100 - Self.price)
            #expect(try await rig.peer.requests(prompt: prompt).map(\.status) == [429, 200])
        }
    }

    @Test("OpenAI: 500, 502, 503, then ok: retried with backoff, succeeds")
    func openAIServerErrorsThenOK() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai 5xx")
            try await rig.peer.script(prompt: prompt, openAI: [.status(500), .status(502), .status(503), .ok])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt, n: 2)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(task.attempts == 3)
            #expect(try await rig.peer.requests(prompt: prompt).map(\.status) == [500, 502, 503, 200])
        }
    }

    @Test("OpenAI: 503 every time fails after maximumAttempts, refunded in full")
    func openAIAlways503() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai all 503")
            try await rig.peer.script(prompt: prompt, openAI: [.status(503)])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt, n: 2)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .failed, code: "unavailable", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(try await rig.peer.requests(prompt: prompt).count == rig.settings.maximumAttempts)
            // Finished means finished: more rounds send nothing more.
            rig.clock.advance(3600)
            await rig.drain(dispatcher)
            #expect(try await rig.peer.requests(prompt: prompt).count == rig.settings.maximumAttempts)
        }
    }

    @Test("OpenAI: no answer within the provider's timeout, then ok: retried, succeeds")
    func openAITimeoutThenOK() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai timeout")
            try await rig.peer.script(prompt: prompt, openAI: [.delay(8), .ok])
            let dispatcher = rig.dispatcher(rig.openAI(timeout: .seconds(3)))
            let submitted = try await rig.submit(prompt)

            await rig.drain(dispatcher)
            let waiting = try await rig.task(submitted.id!)
            #expect(waiting.status == .running)
            #expect(waiting.attempts == 1)
            #expect(waiting.failureMessage == FailureReason.retrying(ProviderError(.timeout, "")))

            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: Self.price, charged: Self.price, images: 1, balance: 100 - Self.price)
            // The slow answer is recorded when the peer finishes sleeping.
            try await rig.eventually("the peer finishes the slow request") { try await rig.peer.requests(prompt: prompt).count == 2 }
        }
    }

    @Test("OpenAI: a 200 with HTML instead of JSON, then ok: retried, succeeds")
    func openAIMalformedThenOK() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai malformed")
            try await rig.peer.script(prompt: prompt, openAI: [.malformed(), .ok])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: Self.price, charged: Self.price, images: 1, balance: 100 - Self.price)
            #expect(task.attempts == 1)
            #expect(try await rig.peer.requests(prompt: prompt).count == 2)
        }
    }

    @Test("OpenAI: moderation_blocked fails at once (moderation), never retried, refunded")
    func openAIModeration() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai moderation")
            try await rig.peer.script(prompt: prompt, openAI: [.status(400, code: "moderation_blocked"), .ok])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt, n: 2)
            await rig.drain(dispatcher)
            let task = try await rig.task(submitted.id!)
            try await rig.expectSettled(task, .failed, code: "moderation", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(task.failureMessage == FailureReason.message(for: ProviderError(.moderation, "")))
            rig.clock.advance(3600)
            await rig.drain(dispatcher)
            #expect(try await rig.peer.requests(prompt: prompt).count == 1)
        }
    }

    @Test("OpenAI: insufficient_quota fails at once (provider_quota), never retried, refunded")
    func openAIQuota() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai quota")
            try await rig.peer.script(prompt: prompt, openAI: [.status(429, code: "insufficient_quota"), .ok])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt)
            await rig.drain(dispatcher)
            let task = try await rig.task(submitted.id!)
            try await rig.expectSettled(task, .failed, code: "provider_quota", reserved: Self.price, charged: 0, images: 0, balance: 100)
            rig.clock.advance(3600)
            await rig.drain(dispatcher)
            #expect(try await rig.peer.requests(prompt: prompt).count == 1)
        }
    }

    @Test("OpenAI: n=4 answered with 2 images succeeds with 2, charged for 2, the rest refunded")
    func openAIFewerImages() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("openai fewer")
            try await rig.peer.script(prompt: prompt, openAI: [ImageProviderPeerStep(ok: true, images: 2)])
            let dispatcher = rig.dispatcher(rig.openAI())
            let submitted = try await rig.submit(prompt, n: 4)
            #expect(try await rig.balance() == 100 - 4 * Self.price)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 4 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(try await rig.peer.requests(prompt: prompt).count == 1)
        }
    }

    // MARK: - Evolink (asynchronous)

    /// The bytes the peer serves for result `index` of its task.
    static func download(_ url: String, _ client: HTTPClient) async throws -> Data {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        #expect(response.status.code == 200)
        return Data(try await response.body.collect(upTo: 10 * 1024 * 1024).readableBytesView)
    }

    @Test("Evolink: pending, processing, completed: succeeds with the peer's PNGs mirrored, submitted once")
    func evolinkHappy() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink happy")
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)

            await rig.drain(dispatcher)
            let waiting = try await rig.task(submitted.id!)
            #expect(waiting.status == .running)
            let providerTaskID = try #require(waiting.providerTaskID)
            #expect(waiting.nextAttemptAt > rig.clock.now())

            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(task.providerTaskID == providerTaskID)

            let peerTasks = try await rig.peer.tasks(prompt: prompt)
            #expect(peerTasks.count == 1)
            #expect(peerTasks.first?.id == providerTaskID)
            #expect(peerTasks.first?.submitCount == 1)
            #expect(peerTasks.first?.polls == 3)
            for row in try await rig.database.images(taskID: submitted.id!) {
                let served = try await Self.download("\(rig.peer.baseURL)/results/\(providerTaskID)/\(row.resultIndex).png", rig.client)
                #expect(try await rig.blobs.getData(BlobKey(row.blobKey)) == served)
            }
            let images = try await rig.database.images(taskID: submitted.id!)
            #expect(images.count == 2 && images[0].sha256 != images[1].sha256)
        }
    }

    @Test("Evolink: a task failed with content_policy_violation fails (moderation), refunded")
    func evolinkModeration() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink moderation")
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 1, outcome: .failed("content_policy_violation")))
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .failed, code: "moderation", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            let peerTasks = try await rig.peer.tasks(prompt: prompt)
            #expect(peerTasks.map(\.submitCount) == [1])
            #expect(peerTasks.first?.polls == 2)
        }
    }

    @Test("Evolink: result URLs that answer 404 or 410 (expired) fail the task (result_unavailable), refunded", arguments: [EvolinkPeerScript.Result.notFound, .expired])
    func evolinkResultUnavailable(_ result: EvolinkPeerScript.Result) async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink result \(result.rawValue)")
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 0, result: result))
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .failed, code: "result_unavailable", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(task.failureMessage == FailureReason.resultUnavailable)
            let peerTasks = try await rig.peer.tasks(prompt: prompt)
            #expect(peerTasks.map(\.submitCount) == [1])
            // A 404 or 410 will not heal: the first result was asked for once, not retried.
            let downloads = try await rig.peer.requests(prompt: prompt).filter { $0.provider == "results" }
            #expect(downloads.map(\.status) == [result == .expired ? 410 : 404])
        }
    }

    @Test("Evolink: 429 with Retry-After on submit, then ok: waits, submits again, succeeds; one task at the provider")
    func evolinkSubmitRateLimited() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink submit 429")
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(submit: [.status(429, retryAfter: 45), .ok]))
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt)
            let start = rig.clock.now()

            await rig.drain(dispatcher)
            let waiting = try await rig.task(submitted.id!)
            #expect(waiting.status == .running)
            #expect(waiting.providerTaskID == nil)
            #expect(waiting.attempts == 1)
            #expect(waiting.nextAttemptAt >= start.addingTimeInterval(45), "\(waiting.nextAttemptAt.timeIntervalSince(start))")
            #expect(try await rig.peer.tasks(prompt: prompt).isEmpty)

            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: Self.price, charged: Self.price, images: 1, balance: 100 - Self.price)
            let submits = try await rig.peer.requests(prompt: prompt).filter { $0.method == "POST" }
            #expect(submits.map(\.status) == [429, 200])
            #expect(try await rig.peer.tasks(prompt: prompt).map(\.submitCount) == [1])
        }
    }

    @Test("Evolink: a 503 on a poll, then ok: polled again (never resubmitted), succeeds")
    func evolinkPoll503() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink poll 503")
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(poll: [.status(503, retryAfter: 5), .ok]))
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)
            let task = try await rig.runToEnd(dispatcher, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(task.attempts == 1)
            let peerTasks = try await rig.peer.tasks(prompt: prompt)
            #expect(peerTasks.map(\.submitCount) == [1])
            let polls = try await rig.peer.requests(prompt: prompt).filter { $0.method == "GET" && $0.provider == "evolink" }
            #expect(polls.map(\.status) == [503, 200, 200, 200])
        }
    }

    /// Does what Easel's callback endpoint does with each callback the receiver got: checks the
    /// token, then makes the task due at once (the callback's body is not trusted).
    private static func actOnCallbacks(_ callbacks: [CallbackReceiver.Received], rig: FaultRig, signer: SignedValue, taskID: Int64) async throws {
        for callback in callbacks {
            #expect(callback.method == "POST")
            let token = try #require(callback.path.split(separator: "/").last.map(String.init)?.removingPercentEncoding)
            #expect(GenerationDispatcher.taskID(fromCallbackToken: token, signer: signer, now: rig.clock.now()) == taskID)
            #expect(try await rig.database.pollGenerationTaskNow(taskID: taskID, now: rig.clock.now()) != nil)
        }
    }

    @Test("Evolink: callbacks (before the first poll, or delivered twice) only nudge a poll; one submit, one capture", arguments: [EvolinkPeerScript.Callback.beforeFirstPoll, .duplicate])
    func evolinkCallbacks(_ mode: EvolinkPeerScript.Callback) async throws {
        let receiver = try CallbackReceiver.start()
        defer { receiver.stop() }
        let signer = SignedValue(secret: "fault-matrix-secret", purpose: "evolink-callback")
        try await FaultRig.with(credits: 100, configure: { $0.callbackBaseURL = URL(string: receiver.baseURL)! }) { rig in
            let prompt = uniquePrompt("evolink callback \(mode.rawValue)")
            // Polls alone never end it: only the peer's own end (at submit, or after 0.2 s) does.
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 1000, callback: mode, completeAfter: mode == .duplicate ? 0.2 : nil))
            let dispatcher = rig.dispatcher(rig.evolink(), callbackSigner: signer)
            let submitted = try await rig.submit(prompt, n: 2)
            let taskID = submitted.id!

            await rig.drain(dispatcher)
            let waiting = try await rig.task(taskID)
            #expect(waiting.status == .running)
            #expect(waiting.providerTaskID != nil)
            #expect(waiting.nextAttemptAt > rig.clock.now())
            let submit = try #require(try await rig.peer.requests(prompt: prompt).first { $0.method == "POST" })
            let callbackURL = try #require(submit.callbackURL)
            #expect(callbackURL.hasPrefix(receiver.baseURL + "/api/v1/callbacks/evolink/"))

            // The callback(s) arrive; each makes the task due now, at the same (fake) time.
            let expected = mode == .duplicate ? 2 : 1
            let callbacks = try await receiver.waitForRequests(count: expected)
            #expect(callbacks.count == expected)
            for callback in callbacks {
                try await Self.actOnCallbacks([callback], rig: rig, signer: signer, taskID: taskID)
                await rig.drain(dispatcher)
            }
            let task = try await rig.task(taskID)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)

            // It ended through exactly one poll, never through the callback's body; one submit.
            let peerTask = try #require(try await rig.peer.tasks(prompt: prompt).first)
            #expect(peerTask.submitCount == 1)
            #expect(peerTask.polls == 1)
            try await rig.eventually("the peer records its callbacks as delivered") {
                try await rig.peer.tasks(prompt: prompt).first?.callbacks.filter { $0.status == 200 }.count == expected
            }

            // More nudges and rounds change nothing.
            try await Self.actOnCallbacks(callbacks, rig: rig, signer: signer, taskID: taskID)
            rig.clock.advance(600)
            await rig.drain(dispatcher)
            try await rig.expectSettled(try await rig.task(taskID), .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(try await rig.peer.tasks(prompt: prompt).first?.polls == 1)
        }
    }

    @Test("Evolink: a restart after the submit resumes by polling with a new dispatcher, never resubmitting")
    func evolinkRestart() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink restart")
            let before = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)
            await rig.drain(before)
            let waiting = try await rig.task(submitted.id!)
            #expect(waiting.status == .running)
            let providerTaskID = try #require(waiting.providerTaskID)

            // As after a crash: a new dispatcher (and provider) on the same database.
            let after = rig.dispatcher(rig.evolink())
            rig.clock.advance(120)
            let task = try await rig.runToEnd(after, taskID: submitted.id!)
            try await rig.expectSettled(task, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(task.providerTaskID == providerTaskID)
            #expect(try await rig.peer.tasks(prompt: prompt).map(\.submitCount) == [1])
            #expect(try await rig.peer.requests(prompt: prompt).filter { $0.method == "POST" }.count == 1)
        }
    }

    @Test("Evolink: a submit that times out fails (unconfirmed_submit), refunded, and is never sent again")
    func evolinkSubmitTimeout() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("evolink submit timeout")
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(submit: [.delay(5), .ok]))
            let dispatcher = rig.dispatcher(rig.evolink(timeout: .seconds(2)))
            let submitted = try await rig.submit(prompt, n: 2)

            await rig.drain(dispatcher)
            let task = try await rig.task(submitted.id!)
            try await rig.expectSettled(task, .failed, code: "unconfirmed_submit", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(task.providerTaskID == nil)

            // The provider did make the task (unknown to us): it counted one submit, and there is
            // never a second one.
            try await rig.eventually("the peer creates the slow task") { try await rig.peer.tasks(prompt: prompt).count == 1 }
            for _ in 0..<3 {
                rig.clock.advance(600)
                await rig.drain(dispatcher)
            }
            #expect(try await rig.peer.tasks(prompt: prompt).map(\.submitCount) == [1])
            #expect(try await rig.peer.requests(prompt: prompt).filter { $0.method == "POST" }.count == 1)
            try await rig.expectSettled(try await rig.task(submitted.id!), .failed, code: "unconfirmed_submit", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
        }
    }

    // MARK: - Submitting, idempotency, cancel, reaper

    @Test("25 parallel submits on a balance of 10 at 4 each: exactly 2 created, the rest insufficient_credits")
    func parallelSubmits() async throws {
        try await FaultRig.with(credits: 10) { rig in
            let service = rig.service
            let viewer = rig.viewer
            let outcomes = await withTaskGroup(of: Result<GenerationTask, GenerationError>.self) { group in
                for index in 0..<25 {
                    group.addTask {
                        do throws(GenerationError) {
                            return .success(try await service.submit(GenerationRequest(prompt: "parallel \(index)"), viewer: viewer, clientIP: nil).task)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                var outcomes: [Result<GenerationTask, GenerationError>] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let created = outcomes.compactMap { try? $0.get() }
            let refused = outcomes.compactMap { outcome -> GenerationError? in
                if case .failure(let error) = outcome { return error }
                return nil
            }
            #expect(created.count == 2)
            #expect(Set(created.map(\.id)).count == 2)
            #expect(refused.count == 23)
            #expect(refused.allSatisfy { $0.kind == .insufficientCredits }, "\(refused.map(\.kind))")
            #expect(try await rig.balance() == 2)
            #expect(try await rig.database.verifyCreditBalances().isEmpty)
            let entries = try await rig.database.ledger(userID: rig.userID, limit: 100)
            #expect(entries.filter { $0.kind == .reserve }.map(\.amount) == [-4, -4])
            #expect(entries.allSatisfy { $0.balanceAfter >= 0 })
            #expect(try await rig.database.generationTasks(userID: rig.userID, limit: 100).count == 2)
        }
    }

    @Test("Idempotency: the same key and body return the first task, charged once; another body is a conflict")
    func idempotency() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("idempotent")
            let request = GenerationRequest(prompt: prompt, n: 2)
            let first = try await rig.service.submit(request, viewer: rig.viewer, clientIP: nil, idempotencyKey: "key-1", now: rig.clock.now())
            guard case .created(let task) = first else {
                Issue.record("the first submit should create: \(first)")
                return
            }
            let again = try await rig.service.submit(request, viewer: rig.viewer, clientIP: nil, idempotencyKey: "key-1", now: rig.clock.now())
            #expect(again == .existing(task))
            #expect(try await rig.balance() == 100 - 2 * Self.price)

            // Run it; a retry after it succeeded (the client timed out, say) gets the paid result.
            let finished = try await rig.runToEnd(rig.dispatcher(rig.openAI()), taskID: task.id!)
            let late = try await rig.service.submit(request, viewer: rig.viewer, clientIP: nil, idempotencyKey: "key-1", now: rig.clock.now())
            guard case .existing(let existing) = late else {
                Issue.record("a retry should find the task: \(late)")
                return
            }
            #expect(existing.id == task.id)
            #expect(existing.status == .succeeded)
            try await rig.expectSettled(finished, .succeeded, reserved: 2 * Self.price, charged: 2 * Self.price, images: 2, balance: 100 - 2 * Self.price)
            #expect(try await rig.peer.requests(prompt: prompt).count == 1)

            do throws(GenerationError) {
                _ = try await rig.service.submit(GenerationRequest(prompt: prompt, n: 1), viewer: rig.viewer, clientIP: nil, idempotencyKey: "key-1", now: rig.clock.now())
                Issue.record("another body under the same key must be refused")
            } catch {
                #expect(error.kind == .idempotencyConflict)
            }
            #expect(try await rig.balance() == 100 - 2 * Self.price)
            #expect(try await rig.database.generationTasks(userID: rig.userID, limit: 100).count == 1)
            #expect(try await rig.database.verifyCreditBalances().isEmpty)
        }
    }

    @Test("Cancel of a queued task refunds exactly once; a second cancel returns nil; the dispatcher never sends it")
    func cancelQueued() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("cancel")
            let submitted = try await rig.submit(prompt, n: 2)
            #expect(try await rig.balance() == 100 - 2 * Self.price)
            let canceled = try #require(try await rig.service.cancel(id: submitted.id!, viewer: rig.viewer, now: rig.clock.now()))
            #expect(canceled.status == .canceled)
            #expect(try await rig.service.cancel(id: submitted.id!, viewer: rig.viewer, now: rig.clock.now()) == nil)
            // Someone else cannot cancel it either (nor see it).
            #expect(try await rig.service.cancel(id: submitted.id!, viewer: Viewer(userID: rig.userID + 1000, isAdmin: false)) == nil)

            let dispatcher = rig.dispatcher(rig.openAI())
            await rig.drain(dispatcher)
            rig.clock.advance(600)
            await rig.drain(dispatcher)
            let task = try await rig.task(submitted.id!)
            try await rig.expectSettled(task, .canceled, code: "canceled", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(try await rig.peer.requests(prompt: prompt).isEmpty)
        }
    }

    @Test("The reaper fails and refunds a running task older than taskTimeout, and only then")
    func reaper() async throws {
        try await FaultRig.with(credits: 100) { rig in
            let prompt = uniquePrompt("reaper")
            // The provider never finishes it.
            try await rig.peer.script(prompt: prompt, evolink: EvolinkPeerScript(pollsUntilDone: 100_000))
            let dispatcher = rig.dispatcher(rig.evolink())
            let submitted = try await rig.submit(prompt, n: 2)
            await rig.drain(dispatcher)
            let running = try await rig.task(submitted.id!)
            #expect(running.status == .running)
            let startedAt = try #require(running.startedAt)

            // Not yet stuck.
            await dispatcher.reapStuckTasks(now: startedAt.addingTimeInterval(rig.settings.taskTimeout.seconds - 1))
            #expect(try await rig.task(submitted.id!).status == .running)

            await dispatcher.reapStuckTasks(now: startedAt.addingTimeInterval(rig.settings.taskTimeout.seconds + 1))
            let task = try await rig.task(submitted.id!)
            try await rig.expectSettled(task, .failed, code: "timeout", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(task.failureMessage == FailureReason.timedOut)

            // Reaping again, or more rounds, change nothing.
            await dispatcher.reapStuckTasks(now: startedAt.addingTimeInterval(rig.settings.taskTimeout.seconds + 7200))
            rig.clock.advance(7200)
            await rig.drain(dispatcher)
            try await rig.expectSettled(try await rig.task(submitted.id!), .failed, code: "timeout", reserved: 2 * Self.price, charged: 0, images: 0, balance: 100)
            #expect(try await rig.peer.tasks(prompt: prompt).map(\.submitCount) == [1])
        }
    }
}
