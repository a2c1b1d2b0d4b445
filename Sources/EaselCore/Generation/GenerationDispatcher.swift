import Crypto
import EaselBlobs
import EaselImages
import EaselIntegrations
import EaselStore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The provider tasks are run with.
public enum GenerationBackend: Sendable {
    case demo(DemoImageProvider)
    /// One long call answers with the images (OpenAI).
    case synchronous(any SynchronousImageProvider)
    /// Submit once, then poll or hear a callback (Evolink).
    case asynchronous(any AsynchronousImageProvider)
}

/// Runs queued tasks with bounded concurrency, woken at submit and by its own timer.
///
/// Every state lives in the database, so a restart resumes everything: a task with a provider
/// id is polled, one without is sent, a reaper fails and refunds what is stuck. No database
/// transaction is held across a provider call: each transition is one short write.
public final class GenerationDispatcher: Service, Sendable {
    public struct Dependencies: Sendable {
        public var settings: GenerationSettings
        public var database: AppDatabase
        public var blobs: any BlobStore
        public var images: ImageLibrary
        public var events: TaskEvents
        public var backend: GenerationBackend
        /// Mirrors result URLs through the SSRF guard.
        public var fetcher: any URLFetcher
        /// Signs per-task callback URLs; nil without callbacks.
        public var callbackSigner: SignedValue?

        public init(
            settings: GenerationSettings, database: AppDatabase, blobs: any BlobStore, images: ImageLibrary, events: TaskEvents,
            backend: GenerationBackend, fetcher: any URLFetcher, callbackSigner: SignedValue?
        ) {
            self.settings = settings
            self.database = database
            self.blobs = blobs
            self.images = images
            self.events = events
            self.backend = backend
            self.fetcher = fetcher
            self.callbackSigner = callbackSigner
        }
    }

    private let dependencies: Dependencies
    private let logger: Logger
    private let inFlight = Mutex<Set<Int64>>([])
    private let signal = WakeSignal()
    private var settings: GenerationSettings { self.dependencies.settings }
    private var database: AppDatabase { self.dependencies.database }
    /// How often to look for due tasks and stuck ones without being woken.
    static let idleInterval: Duration = .seconds(1)
    /// Asynchronous providers: poll every 3 s for the first 20 s, then every 8 s (PROVIDERS.md).
    static let pollIntervals: (early: TimeInterval, late: TimeInterval, switchAfter: TimeInterval) = (3, 8, 20)

    public init(_ dependencies: Dependencies, logger: Logger) {
        self.dependencies = dependencies
        self.logger = logger
    }

    /// Something is due: look now.
    public func wake() {
        self.signal.signal()
    }

    public var inFlightCount: Int { self.inFlight.withLock { $0.count } }

    /// Service entry point: works until graceful shutdown, then lets running work finish.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            var lastReap = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                if ContinuousClock.now - lastReap > .seconds(30) {
                    await self.reapStuckTasks()
                    lastReap = .now
                }
                for task in await self.claimDueTasks() {
                    let id = task.id!
                    group.addTask {
                        await self.process(task)
                        self.inFlight.withLock { _ = $0.remove(id) }
                        self.wake()
                    }
                }
                await cancelWhenGracefulShutdown {
                    await self.signal.wait(timeout: Self.idleInterval)
                }
            }
            self.logger.info("dispatcher stopping; waiting for \(self.inFlightCount) task(s) in progress")
        }
    }

    /// Works until nothing is due (for tests and `easel jobs`): each due task gets one step.
    public func drain(now: @escaping @Sendable () -> Date = Date.init) async {
        while true {
            let tasks = await self.claimDueTasks(now: now())
            if tasks.isEmpty { return }
            await withDiscardingTaskGroup { group in
                for task in tasks {
                    let id = task.id!
                    group.addTask {
                        await self.process(task, now: now)
                        self.inFlight.withLock { _ = $0.remove(id) }
                    }
                }
            }
        }
    }

    /// Due tasks up to the free worker slots, marked running in the database and in flight here.
    private func claimDueTasks(now: Date = Date()) async -> [GenerationTask] {
        let busy = self.inFlight.withLock { $0 }
        let free = self.settings.workers - busy.count
        guard free > 0 else { return [] }
        do {
            let due = try await self.database.claimDueGenerationTasks(now: now, excluding: busy, limit: free)
            return self.inFlight.withLock { inFlight in
                due.filter { task in inFlight.insert(task.id!).inserted }
            }
        } catch {
            self.logger.error("could not read due tasks: \(error)")
            return []
        }
    }

    /// Fails and refunds running tasks older than the task timeout that no worker here holds.
    func reapStuckTasks(now: Date = Date()) async {
        do {
            let limit = now.addingTimeInterval(-self.settings.taskTimeout.seconds)
            for task in try await self.database.stuckGenerationTasks(startedBefore: limit) {
                let held = self.inFlight.withLock { $0.contains(task.id!) }
                if held { continue }
                await self.fail(task, kind: "timeout", message: FailureReason.timedOut, now: now)
            }
        } catch {
            self.logger.error("reaper could not read tasks: \(error)")
        }
    }

    // MARK: One step of one task

    /// One step of a task already claimed (marked running) by `claimDueTasks`.
    func process(_ task: GenerationTask, now: @escaping @Sendable () -> Date = Date.init) async {
        let taskID = task.id!
        self.dependencies.events.publish(taskID)
        do {
            switch self.dependencies.backend {
            case .demo(let demo):
                let request = try await self.providerRequest(for: task, referencesAsURLs: false)
                let images = try await demo.generate(request) { progress in
                    self.dependencies.events.publish(taskID, progress: progress)
                    try? await self.database.recordGenerationProgress(taskID: taskID, progress: progress, now: now())
                }
                try await self.finish(task, with: images.map { .data($0.data) }, now: now)
            case .synchronous(let provider):
                let request = try await self.providerRequest(for: task, referencesAsURLs: false)
                try? await self.database.recordGenerationProgress(taskID: taskID, progress: 5, now: now())
                let images = try await provider.generate(request)
                try await self.finish(task, with: images.map { .data($0.data) }, now: now)
            case .asynchronous(let provider):
                try await self.step(task, provider: provider, now: now)
            }
        } catch let error as ProviderError {
            await self.handle(error, task: task, now: now())
        } catch let error as MirrorError {
            switch error {
            case .retry(let message):
                await self.handle(ProviderError(.unavailable, message), task: task, now: now())
            case .fail(let kind, let message):
                await self.fail(task, kind: kind, message: message, now: now())
            }
        } catch {
            self.logger.error("task \(taskID): \(error)")
            await self.handle(ProviderError(.unavailable, "\(error)"), task: task, now: now())
        }
        self.dependencies.events.publish(taskID)
    }

    /// Asynchronous providers: submit once (storing the id before anything else), then poll.
    private func step(_ task: GenerationTask, provider: any AsynchronousImageProvider, now: @escaping @Sendable () -> Date) async throws {
        let status: ProviderTaskStatus
        if let providerTaskID = task.providerTaskID {
            status = try await provider.status(of: providerTaskID)
        } else {
            let request = try await self.providerRequest(for: task, referencesAsURLs: true)
            let callbackURL = self.callbackURL(for: task, now: now())
            let submitted: Swift.Result<ProviderTaskStatus, ProviderError>
            do {
                submitted = .success(try await provider.submit(request, callbackURL: callbackURL))
            } catch {
                submitted = .failure(error)
            }
            switch submitted {
            case .success(let answer):
                status = answer
            case .failure(let error) where error.kind == .timeout || error.kind == .malformedResponse:
                // The provider may have made the task without our learning its id: submitting
                // again could run (and bill) it twice, so this task ends here, refunded.
                throw ProviderError(.failed, "the provider did not confirm the task (\(error.kind.rawValue)): \(error.message)", code: "unconfirmed_submit")
            case .failure(let error):
                throw error
            }
            let stored = try await self.database.recordProviderTaskID(
                taskID: task.id!, providerTaskID: status.id, nextPollAt: now().addingTimeInterval(Self.pollIntervals.early), now: now()
            )
            guard stored else {
                self.logger.warning("task \(task.id!) finished or was submitted elsewhere while submitting; provider task \(status.id) left alone")
                return
            }
            self.logger.info("task \(task.id!) submitted as provider task \(status.id)")
        }
        switch status.state {
        case .pending, .processing:
            let age = now().timeIntervalSince(task.startedAt ?? task.createdAt)
            let interval = age < Self.pollIntervals.switchAfter ? Self.pollIntervals.early : Self.pollIntervals.late
            self.dependencies.events.publish(task.id!, progress: status.progress)
            try await self.database.recordGenerationProgress(
                taskID: task.id!, progress: min(status.progress, 95), nextAttemptAt: now().addingTimeInterval(interval), now: now()
            )
        case .completed:
            guard !status.resultURLs.isEmpty else { throw ProviderError(.malformedResponse, "a completed task without results") }
            try await self.finish(task, with: status.resultURLs.map { .url($0) }, now: now)
        case .failed:
            throw status.error ?? ProviderError(.failed, "the provider reported a failure without a reason")
        }
    }

    private func callbackURL(for task: GenerationTask, now: Date) -> String? {
        guard let base = self.settings.callbackBaseURL, let signer = self.dependencies.callbackSigner else { return nil }
        let token = signer.sign(String(task.id!), expiresAt: now.addingTimeInterval(86_400 * 2))
        return base.appending(path: "api/v1/callbacks/evolink").appending(path: token).absoluteString
    }

    /// The task id a callback URL's token names, when the signature holds.
    public static func taskID(fromCallbackToken token: String, signer: SignedValue, now: Date = Date()) -> Int64? {
        signer.verify(token, now: now).flatMap { Int64($0) }
    }

    private func providerRequest(for task: GenerationTask, referencesAsURLs: Bool) async throws -> ProviderGenerationRequest {
        var references: [ProviderReferenceImage] = []
        if task.referenceCount > 0 {
            for (index, upload) in try await self.database.taskReferences(taskID: task.id!).enumerated() {
                let format = ImageFormat(rawValue: upload.format) ?? .png
                let key = try BlobKey(upload.blobKey)
                let filename = "reference-\(index + 1).\(format.fileExtension)"
                if referencesAsURLs {
                    let url = try await self.dependencies.blobs.expiringURL(for: key, expiresIn: self.settings.referenceURLLifetime)
                    references.append(ProviderReferenceImage(filename: filename, contentType: format.contentType, url: url.absoluteString))
                } else {
                    let data = try await self.dependencies.blobs.get(key, range: nil).collect()
                    references.append(ProviderReferenceImage(filename: filename, contentType: format.contentType, data: data))
                }
            }
        }
        return ProviderGenerationRequest(
            model: task.model, prompt: task.prompt, size: task.size, quality: task.quality, count: task.count,
            references: references, endUser: "u\(task.userID)"
        )
    }

    // MARK: Finishing

    private enum Result {
        case data(Data)
        case url(String)
    }

    /// Why mirroring a result failed: worth another poll later, or final.
    enum MirrorError: Error {
        case retry(String)
        case fail(kind: String, message: String)
    }

    /// Stores every result (mirroring URLs through the guard) with its thumbnail, then records
    /// the images and the charge in one transaction. Keys are fixed per task and result, so a
    /// retried finish overwrites instead of leaving strays.
    private func finish(_ task: GenerationTask, with results: [Result], now: @escaping @Sendable () -> Date) async throws {
        let taskID = task.id!
        self.dependencies.events.publish(taskID, progress: 96)
        var finished: [FinishedImage] = []
        var dimensions: [(width: Int, height: Int)] = []
        for (index, result) in results.prefix(task.count).enumerated() {
            let data: Data
            switch result {
            case .data(let bytes):
                data = bytes
            case .url(let address):
                data = try await self.mirror(address)
            }
            let images = self.dependencies.images
            let prepared: (info: ImageInfo, thumbnail: Data)
            do {
                prepared = try await BlockingWork.run {
                    let info = try images.inspect(data)
                    let thumbnail = try images.thumbnail(data, maxEdge: 512).data
                    return (info, thumbnail)
                }
            } catch {
                throw ProviderError(.malformedResponse, "result \(index + 1) is not a usable image: \(error)")
            }
            let base = Self.blobPrefix(for: task) + "\(index)"
            let key = try BlobKey("\(base).\(prepared.info.format.fileExtension)")
            let thumbKey = try BlobKey("\(base)-thumb.webp")
            try await self.dependencies.blobs.put(key, data: ByteBuffer(bytes: data), contentType: prepared.info.format.contentType)
            try await self.dependencies.blobs.put(thumbKey, data: ByteBuffer(bytes: prepared.thumbnail), contentType: "image/webp")
            finished.append(
                FinishedImage(
                    blobKey: key.rawValue, thumbKey: thumbKey.rawValue, format: prepared.info.format.rawValue, width: prepared.info.width,
                    height: prepared.info.height, bytes: data.count, sha256: GenerationService.hex(SHA256.hash(data: data))
                )
            )
            dimensions.append((prepared.info.width, prepared.info.height))
        }
        guard !finished.isEmpty else { throw ProviderError(.malformedResponse, "the provider answered without images") }
        let charge = self.settings.prices.charge(model: task.model, quality: task.quality, dimensions: dimensions, referenceCount: task.referenceCount)
        let recorded = try await self.database.completeGenerationTask(taskID: taskID, images: finished, charge: charge, now: now())
        if recorded {
            self.logger.info("task \(taskID) succeeded with \(finished.count) image(s), charged \(min(charge, task.creditsReserved))")
        } else {
            // Canceled or reaped while we worked: its credits are back, so its files go too.
            await self.removeBlobs(of: task)
        }
    }

    /// Fetches a result URL through the SSRF guard, with a few quick retries for flaky answers.
    private func mirror(_ address: String) async throws -> Data {
        guard let url = URL(string: address) else { throw MirrorError.fail(kind: "result_unavailable", message: FailureReason.resultUnavailable) }
        var lastError: FetchError?
        for attempt in 0..<3 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(500 * attempt)) }
            do {
                return try await self.dependencies.fetcher.fetch(url).data
            } catch {
                lastError = error
                if !error.isRetryable { break }
            }
        }
        self.logger.warning("mirroring \(url.host ?? "?") failed: \(lastError.map { "\($0)" } ?? "?")")
        if let lastError, lastError.isRetryable {
            throw MirrorError.retry("result download failed: \(lastError)")
        }
        throw MirrorError.fail(kind: "result_unavailable", message: FailureReason.resultUnavailable)
    }

    static func blobPrefix(for task: GenerationTask) -> String {
        "images/u\(task.userID)/t\(task.id!)/"
    }

    private func removeBlobs(of task: GenerationTask) async {
        do {
            for blob in try await self.dependencies.blobs.list(prefix: Self.blobPrefix(for: task)) {
                try await self.dependencies.blobs.delete(blob.key)
            }
        } catch {
            self.logger.warning("could not remove the files of task \(task.id!): \(error)")
        }
    }

    // MARK: Failures

    /// Retries what may pass later (with backoff, honouring Retry-After) until the attempts run
    /// out; fails and refunds the rest.
    private func handle(_ error: ProviderError, task: GenerationTask, now: Date) async {
        let taskID = task.id!
        if error.isRetryable && task.attempts + 1 < self.settings.maximumAttempts {
            let backoff = Self.backoff(attempt: task.attempts + 1)
            let wait = max(error.retryAfter?.seconds ?? 0, backoff)
            self.logger.notice("task \(taskID): \(error); retrying in \(Int(wait)) s")
            do {
                try await self.database.scheduleGenerationRetry(taskID: taskID, at: now.addingTimeInterval(wait), reason: FailureReason.retrying(error), now: now)
            } catch {
                self.logger.error("could not schedule a retry of task \(taskID): \(error)")
            }
            return
        }
        self.logger.notice("task \(taskID) failed: \(error)")
        // A submit the provider never confirmed keeps its own code: the task may exist (and be
        // billed) upstream, which an operator may want to look for.
        let code = error.code == "unconfirmed_submit" ? "unconfirmed_submit" : error.kind.rawValue
        await self.fail(task, kind: code, message: FailureReason.message(for: error), now: now)
    }

    private func fail(_ task: GenerationTask, kind: String, message: String, now: Date) async {
        do {
            if try await self.database.failGenerationTask(taskID: task.id!, code: kind, message: message, now: now) != nil {
                await self.removeBlobs(of: task)
                self.dependencies.events.publish(task.id!)
            }
        } catch {
            self.logger.error("could not record the failure of task \(task.id!): \(error)")
        }
    }

    /// 2, 4, 8 … seconds up to a minute, with a little jitter so retries do not march in step.
    static func backoff(attempt: Int) -> TimeInterval {
        let base = min(60, 2 * pow(2, Double(max(attempt - 1, 0))))
        return base * Double.random(in: 0.8...1.2)
    }
}

/// What a person reads when a task fails: what happened, that nothing was charged, what to do.
public enum FailureReason {
    public static let timedOut = "The image took too long and was stopped. Nothing was charged; try again."
    public static let resultUnavailable = "The provider made the image but it could not be downloaded before it expired. Nothing was charged; try again."

    static func message(for error: ProviderError) -> String {
        switch error.kind {
        case .moderation:
            "The provider's safety system refused this prompt or image. Nothing was charged; try rewording it."
        case .providerQuota:
            "This site's image provider account has run out of quota. Nothing was charged; please tell the site's admin."
        case .rateLimited:
            "The image provider is too busy right now. Nothing was charged; try again in a few minutes."
        case .invalidRequest:
            "The provider refused these options (\(error.message)). Nothing was charged; change them and try again."
        case .unauthorized:
            "This site's key for the image provider was refused. Nothing was charged; please tell the site's admin."
        case .unavailable, .timeout, .malformedResponse:
            "The image provider is not answering properly right now. Nothing was charged; try again later."
        case .failed:
            "The provider could not make this image\(error.code.map { " (\($0))" } ?? ""). Nothing was charged; try again or change the prompt."
        }
    }

    static func retrying(_ error: ProviderError) -> String {
        "Retrying: \(error.kind.rawValue)."
    }
}

/// Wakes one waiter, or the next one to wait.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at a signal or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self.signal() }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.signal()
        }
        timer.cancel()
    }
}
