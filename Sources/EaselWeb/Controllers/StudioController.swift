import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// The signed-in studio pages: Create, Activity, Gallery and Credits. Each renders its first
/// page on the server (so it works before the script loads); static/app.js then talks to the
/// JSON API under /api/v1 for uploads, prices, live progress and further pages.
struct StudioController {
    let generation: GenerationService
    let database: AppDatabase
    let views: ViewRenderer

    /// Rows per server-rendered page (the API's default page size too).
    static let pageSize = 30
    /// Prompts longer than this are cut in lists (the whole prompt is in the title attribute).
    static let promptPreviewLength = 160

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group(context: SignedInContext.self)
        group.get("create", use: self.create)
        // Without JavaScript the form posts here; the script uses the API instead.
        group.post("create", use: self.submit)
        group.get("activity", use: self.activity)
        group.post("activity/:id/cancel", use: self.cancel)
        group.get("gallery", use: self.gallery)
        group.get("credits", use: self.credits)
    }

    // MARK: View models

    struct CreatePage: Sendable {
        var layout: LayoutData
        var text: StudioText
        var prompt: String
        var models: [Choice]
        var sizes: [Choice]
        var qualities: [Choice]
        var counts: [Choice]
        var maxReferences: Int
        var maxPromptLength: Int
        var uploadLimitMB: Int
        var referencesHint: String
        var demo: Bool
        var provider: String
        /// Image ids from `?ref=`, for the script to attach as references.
        var refs: String
        var price: String
        var balance: Int
        var affordable: Bool
        var unaffordable: String
        var error: String?
        /// For the form without JavaScript: a second click on the same page is the same request.
        var idempotencyKey: String
    }

    struct TaskRow: Sendable {
        var id: Int64
        /// Whose task, in admins' view of everyone's.
        var owner: String?
        var status: String
        var statusLabel: String
        var statusClass: String
        var active: Bool
        var prompt: String
        var fullPrompt: String
        var model: String
        var size: String
        var quality: String
        var countLabel: String
        var credits: String
        var duration: String?
        var failure: String?
        var created: String
        var createdISO: String
        var runAgainURL: String
        var thumbs: [Thumb]
    }

    struct Thumb: Sendable {
        var id: Int64
        var thumbURL: String
    }

    struct Feed<Row: Sendable>: Sendable {
        var heading: String?
        /// The API address the script pages through (`before=` is added).
        var api: String
        var rows: [Row]
        /// The API's next_before, or empty on the last page.
        var next: String
        /// The same next page as a link, for browsers without the script.
        var moreURL: String?
        var empty: String
        /// Offer the Create page in the empty state.
        var showCreate: Bool
        /// Stored, not computed: templates only see stored properties.
        var isEmpty: Bool

        init(heading: String?, api: String, rows: [Row], next: Int64?, moreURL: String?, empty: String, showCreate: Bool = false) {
            self.heading = heading
            self.api = api
            self.rows = rows
            self.next = next.map(String.init) ?? ""
            self.moreURL = moreURL
            self.empty = empty
            self.showCreate = showCreate
            self.isEmpty = rows.isEmpty
        }
    }

    struct ActivityPage: Sendable {
        var layout: LayoutData
        var text: StudioText
        var isAdmin: Bool
        var everyone: Bool
        var feeds: [Feed<TaskRow>]
        var notice: String?
        /// Not the first page: offer the way back to the newest.
        var paged: Bool
        var newestURL: String
    }

    struct ImageRow: Sendable {
        var id: Int64
        var thumbURL: String
        var fileURL: String
        var downloadURL: String
        var prompt: String
        var model: String
        var size: String
        var quality: String
        var width: Int
        var height: Int
        var created: String
        var remixURL: String
        var referenceURL: String
    }

    struct GalleryPage: Sendable {
        var layout: LayoutData
        var text: StudioText
        var feed: Feed<ImageRow>
        var paged: Bool
    }

    struct LedgerRow: Sendable {
        var id: Int64
        var kind: String
        var kindLabel: String
        var amount: String
        var amountClass: String
        var balanceAfter: Int
        var reason: String
        var taskID: Int64?
        var taskURL: String?
        var created: String
    }

    struct CreditsPage: Sendable {
        var layout: LayoutData
        var text: StudioText
        var balance: Int
        var balanceLabel: String
        var feed: Feed<LedgerRow>
        var paged: Bool
    }

    /// Words the script needs, written into the page as data attributes (studio-text.mustache).
    struct StudioText: Sendable {
        var statuses: [Choice]
        var kinds: [Choice]
        var qualities: [Choice]
    }

    // MARK: Create

    @Sendable func create(_ request: Request, context: SignedInContext) async throws -> Response {
        let query = request.uri.queryParameters
        var form = CreateForm(prompt: query["prompt"].map(String.init) ?? "")
        form.model = query["model"].map(String.init)
        form.size = query["size"].map(String.init)
        form.quality = query["quality"].map(String.init)
        form.n = query["n"].flatMap { Int(String($0)) }
        var refs: [Int64] = []
        for raw in query[values: "ref"] {
            for part in raw.split(separator: ",") {
                if let id = Int64(part), id > 0, !refs.contains(id) { refs.append(id) }
            }
        }
        form.refs = Array(refs.prefix(self.generation.settings.maximumReferences))
        return try self.views.render(try await self.createPage(form, error: nil, context: context), template: "create")
    }

    struct CreateForm: Sendable {
        var prompt: String
        var model: String?
        var size: String?
        var quality: String?
        var n: Int?
        var refs: [Int64] = []
    }

    func createPage(_ form: CreateForm, error: String?, context: SignedInContext) async throws -> CreatePage {
        let settings = self.generation.settings
        let model = form.model.flatMap { settings.models.contains($0) ? $0 : nil } ?? settings.models[0]
        let size = form.size.flatMap { settings.sizes.contains($0) ? $0 : nil } ?? settings.sizes[0]
        let quality = form.quality.flatMap { settings.qualities.contains($0) ? $0 : nil } ?? settings.qualities[0]
        let count = form.n.flatMap { (1...settings.maximumCount).contains($0) ? $0 : nil } ?? 1
        let balance = try await self.database.creditBalance(userID: context.user.id!)
        let credits = (try? self.generation.quote(
            GenerationRequest(prompt: "quote", model: model, size: size, quality: quality, n: count), referenceCount: form.refs.count
        ))?.credits ?? 0
        let uploadMB = max(1, settings.uploadMaximumBytes / 1_048_576)
        return CreatePage(
            layout: self.views.layout(title: self.views.text("create.title", [:], context), context: context),
            text: self.studioText(context),
            prompt: String(form.prompt.prefix(settings.maximumPromptLength)),
            models: settings.models.map { Choice(value: $0, label: $0, selected: $0 == model) },
            sizes: settings.sizes.map { Choice(value: $0, label: self.sizeLabel($0, context), selected: $0 == size) },
            qualities: settings.qualities.map { Choice(value: $0, label: self.qualityLabel($0, context), selected: $0 == quality) },
            counts: (1...max(1, settings.maximumCount)).map { Choice(value: String($0), label: String($0), selected: $0 == count) },
            maxReferences: settings.maximumReferences,
            maxPromptLength: settings.maximumPromptLength,
            uploadLimitMB: uploadMB,
            referencesHint: self.views.text("create.references_hint", ["max": String(settings.maximumReferences), "mb": String(uploadMB)], context),
            demo: settings.provider == .demo,
            provider: settings.provider.rawValue,
            refs: form.refs.map(String.init).joined(separator: ","),
            price: self.priceText(credits: credits, balance: balance, context),
            balance: balance,
            affordable: balance >= credits,
            unaffordable: self.views.text("create.unaffordable", ["credits": String(credits), "balance": String(balance)], context),
            error: error,
            idempotencyKey: UUID().uuidString.lowercased()
        )
    }

    struct SubmitForm: Decodable {
        var prompt: String?
        var model: String?
        var size: String?
        var quality: String?
        var n: Int?
        var idempotencyKey: String?

        enum CodingKeys: String, CodingKey {
            case prompt, model, size, quality, n
            case idempotencyKey = "idempotency_key"
        }
    }

    /// The form without JavaScript (no reference images): submit, then show the task in Activity.
    @Sendable func submit(_ request: Request, context: SignedInContext) async throws -> Response {
        let body = try await URLEncodedFormDecoder().decode(SubmitForm.self, from: request, context: context)
        let viewer = Viewer(userID: context.user.id!, isAdmin: context.user.role == .admin)
        let key = body.idempotencyKey.flatMap { $0.isEmpty ? nil : String($0.prefix(255)) }
        do {
            let outcome = try await self.generation.submit(
                GenerationRequest(prompt: body.prompt ?? "", model: body.model, size: body.size, quality: body.quality, n: body.n),
                viewer: viewer, clientIP: context.clientIP.isEmpty ? nil : context.clientIP, idempotencyKey: key
            )
            return Response(status: .seeOther, headers: [.location: "/activity?notice=submitted#task-\(outcome.task.id!)"])
        } catch {
            let (message, status): (String, HTTPResponse.Status) =
                switch error.kind {
                case .rateLimited, .tooManyActiveTasks:
                    (self.views.text("studio.wait", ["time": self.views.duration(seconds: (error.retryAfter ?? .seconds(5)).retryAfterSeconds, context)], context), .tooManyRequests)
                case .insufficientCredits: (self.views.text("create.insufficient", [:], context) + " " + error.message, .init(code: 402, reasonPhrase: "Payment Required"))
                case .restricted: (self.views.text("privacy.create_restricted", [:], context), .forbidden)
                default: (error.message, .unprocessableContent)
                }
            let form = CreateForm(prompt: body.prompt ?? "", model: body.model, size: body.size, quality: body.quality, n: body.n)
            return try self.views.render(try await self.createPage(form, error: message, context: context), template: "create", status: status)
        }
    }

    // MARK: Activity

    @Sendable func activity(_ request: Request, context: SignedInContext) async throws -> Response {
        let query = request.uri.queryParameters
        let isAdmin = context.user.role == .admin
        let everyone = isAdmin && (query["all"] == "1" || query["all"] == "true")
        let status = query["status"].flatMap { GenerationTask.Status(rawValue: String($0)) }
        let before = query["before"].flatMap { Int64(String($0)) }
        let viewer = Viewer(userID: context.user.id!, isAdmin: isAdmin)

        var feeds: [Feed<TaskRow>] = []
        if everyone && status == nil && before == nil {
            // Everyone's: what went wrong first, then everything.
            feeds.append(
                try await self.taskFeed(viewer: viewer, everyone: true, status: .failed, before: nil, heading: self.views.text("activity.failures", [:], context),
                                        empty: self.views.text("activity.no_failures", [:], context), context: context)
            )
            // The failures above are not repeated below.
            feeds.append(
                try await self.taskFeed(viewer: viewer, everyone: true, status: nil, excluding: .failed, before: nil,
                                        heading: self.views.text("activity.other_tasks", [:], context),
                                        empty: self.views.text("activity.empty_everyone", [:], context), context: context)
            )
        } else {
            let heading: String? =
                if status == .failed && everyone { self.views.text("activity.failures", [:], context) } else if everyone { self.views.text("activity.all_tasks", [:], context) } else { nil }
            let empty = self.views.text(everyone ? "activity.empty_everyone" : (status == nil && before == nil ? "activity.empty" : "activity.empty_filtered"), [:], context)
            feeds.append(
                try await self.taskFeed(
                    viewer: viewer, everyone: everyone, status: status, before: before, heading: heading, empty: empty,
                    showCreate: !everyone && status == nil && before == nil, context: context
                )
            )
        }
        let notice: String? =
            switch query["notice"].map(String.init) {
            case "submitted": self.views.text("activity.notice_submitted", [:], context)
            case "canceled": self.views.text("activity.notice_canceled", [:], context)
            default: nil
            }
        let page = ActivityPage(
            layout: self.views.layout(title: self.views.text("activity.title", [:], context), context: context),
            text: self.studioText(context), isAdmin: isAdmin, everyone: everyone, feeds: feeds, notice: notice,
            paged: before != nil || status != nil, newestURL: everyone ? "/activity?all=1" : "/activity"
        )
        return try self.views.render(page, template: "activity")
    }

    func taskFeed(
        viewer: Viewer, everyone: Bool, status: GenerationTask.Status?, excluding excluded: GenerationTask.Status? = nil, before: Int64?, heading: String?,
        empty: String, showCreate: Bool = false, context: SignedInContext
    ) async throws -> Feed<TaskRow> {
        let tasks = try await self.generation.tasks(viewer: viewer, everyone: everyone, before: before, limit: Self.pageSize, status: status, excluding: excluded)
        let images = Dictionary(grouping: try await self.database.images(taskIDs: tasks.compactMap(\.id)), by: { $0.taskID ?? 0 })
        let owners = everyone ? try await self.database.emails(userIDs: Set(tasks.map(\.userID))) : [:]
        var parameters: [(String, String)] = []
        if everyone { parameters.append(("all", "1")) }
        if let status { parameters.append(("status", status.rawValue)) }
        if let excluded { parameters.append(("exclude_status", excluded.rawValue)) }
        let next = tasks.count == Self.pageSize ? tasks.last?.id : nil
        return Feed(
            heading: heading,
            api: "/api/v1/generations?" + Self.query(parameters + [("limit", String(Self.pageSize))]),
            rows: tasks.map { self.taskRow($0, images: images[$0.id!] ?? [], owner: owners[$0.userID], context) },
            next: next,
            moreURL: next.map { "/activity?" + Self.query(parameters + [("before", String($0))]) },
            empty: empty, showCreate: showCreate
        )
    }

    func taskRow(_ task: GenerationTask, images: [StoredImage], owner: String? = nil, _ context: SignedInContext) -> TaskRow {
        let credits: String =
            if !task.status.isFinished {
                self.views.text("studio.credits_reserved", ["credits": String(task.creditsReserved)], context)
            } else {
                self.views.text("studio.credits_charged", ["charged": String(task.creditsCharged), "refunded": String(task.creditsRefunded)], context)
            }
        return TaskRow(
            id: task.id!,
            owner: owner,
            status: task.status.rawValue,
            statusLabel: self.views.text("studio.status_\(task.status.rawValue)", [:], context),
            statusClass: Self.statusClass(task.status),
            active: !task.status.isFinished,
            prompt: Self.preview(task.prompt),
            fullPrompt: task.prompt,
            model: task.model,
            size: self.sizeLabel(task.size, context),
            quality: self.qualityLabel(task.quality, context),
            countLabel: self.views.text(task.count == 1 ? "studio.images_one" : "studio.images_other", ["count": String(task.count)], context),
            credits: credits,
            duration: task.duration.map { self.views.text("studio.took", ["time": self.views.duration(seconds: max(0, Int($0.rounded())), context)], context) },
            failure: task.status == .failed || task.status == .canceled ? (task.failureMessage?.isEmpty == false ? task.failureMessage : nil) : nil,
            created: self.views.date(task.createdAt, context),
            createdISO: ISO8601DateFormatter().string(from: task.createdAt),
            runAgainURL: "/create?" + Self.query([("prompt", task.prompt), ("model", task.model), ("size", task.size), ("quality", task.quality), ("n", String(task.count))]),
            thumbs: images.map { Thumb(id: $0.id!, thumbURL: "/api/v1/images/\($0.id!)/thumb") }
        )
    }

    /// Cancels a queued or running task (the form without JavaScript).
    @Sendable func cancel(_ request: Request, context: SignedInContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        let viewer = Viewer(userID: context.user.id!, isAdmin: context.user.role == .admin)
        guard try await self.generation.task(id: id, viewer: viewer) != nil else {
            throw WebError(.notFound, code: "not_found", key: "activity.error_no_task", english: "There is no such task.")
        }
        _ = try await self.generation.cancel(id: id, viewer: viewer)
        return Response(status: .seeOther, headers: [.location: "/activity?notice=canceled#task-\(id)"])
    }

    // MARK: Gallery

    @Sendable func gallery(_ request: Request, context: SignedInContext) async throws -> Response {
        let before = request.uri.queryParameters["before"].flatMap { Int64(String($0)) }
        let viewer = Viewer(userID: context.user.id!, isAdmin: context.user.role == .admin)
        let images = try await self.generation.images(viewer: viewer, before: before, limit: Self.pageSize)
        let next = images.count == Self.pageSize ? images.last?.id : nil
        let rows = images.map { image in
            let id = image.id!
            return ImageRow(
                id: id, thumbURL: "/api/v1/images/\(id)/thumb", fileURL: "/api/v1/images/\(id)/file", downloadURL: "/api/v1/images/\(id)/file?download=1",
                prompt: image.prompt, model: image.model, size: self.sizeLabel(image.size, context), quality: self.qualityLabel(image.quality, context),
                width: image.width, height: image.height, created: self.views.date(image.createdAt, context),
                remixURL: "/create?" + Self.query([("prompt", image.prompt), ("model", image.model), ("size", image.size), ("quality", image.quality)]),
                referenceURL: "/create?ref=\(id)"
            )
        }
        let page = GalleryPage(
            layout: self.views.layout(title: self.views.text("gallery.title", [:], context), context: context),
            text: self.studioText(context),
            feed: Feed(
                heading: nil, api: "/api/v1/images?limit=\(Self.pageSize)", rows: rows, next: next, moreURL: next.map { "/gallery?before=\($0)" },
                empty: self.views.text(before == nil ? "gallery.empty" : "gallery.empty_more", [:], context), showCreate: before == nil
            ),
            paged: before != nil
        )
        return try self.views.render(page, template: "gallery")
    }

    // MARK: Credits

    @Sendable func credits(_ request: Request, context: SignedInContext) async throws -> Response {
        let before = request.uri.queryParameters["before"].flatMap { Int64(String($0)) }
        let userID = context.user.id!
        let entries = try await self.database.ledger(userID: userID, before: before, limit: Self.pageSize)
        let balance = try await self.database.creditBalance(userID: userID)
        let next = entries.count == Self.pageSize ? entries.last?.id : nil
        let rows = entries.map { entry in
            LedgerRow(
                id: entry.id!, kind: entry.kind.rawValue, kindLabel: self.views.text("credits.kind_\(entry.kind.rawValue)", [:], context),
                amount: Self.signed(entry.amount), amountClass: entry.amount > 0 ? "plus" : entry.amount < 0 ? "minus" : "zero",
                balanceAfter: entry.balanceAfter, reason: entry.reason, taskID: entry.taskID,
                taskURL: entry.taskID.map { "/activity?before=\($0 + 1)#task-\($0)" }, created: self.views.date(entry.createdAt, context)
            )
        }
        let page = CreditsPage(
            layout: self.views.layout(title: self.views.text("credits.title", [:], context), context: context),
            text: self.studioText(context),
            balance: balance,
            balanceLabel: self.views.text(balance == 1 ? "credits.unit_one" : "credits.unit_other", [:], context),
            feed: Feed(
                heading: nil, api: "/api/v1/credits?limit=\(Self.pageSize)", rows: rows, next: next, moreURL: next.map { "/credits?before=\($0)" },
                empty: self.views.text("credits.empty", [:], context)
            ),
            paged: before != nil
        )
        return try self.views.render(page, template: "credits")
    }

    // MARK: Helpers

    func studioText(_ context: SignedInContext) -> StudioText {
        StudioText(
            statuses: GenerationTask.Status.allCases.map { Choice(value: $0.rawValue, label: self.views.text("studio.status_\($0.rawValue)", [:], context), selected: false) },
            kinds: LedgerEntry.Kind.allCases.map { Choice(value: $0.rawValue, label: self.views.text("credits.kind_\($0.rawValue)", [:], context), selected: false) },
            qualities: ["low", "medium", "high", "auto"].map { Choice(value: $0, label: self.qualityLabel($0, context), selected: false) }
        )
    }

    func priceText(credits: Int, balance: Int, _ context: SignedInContext) -> String {
        self.views.text(credits == 1 ? "create.price_one" : "create.price_other", ["credits": String(credits), "balance": String(balance)], context)
    }

    func sizeLabel(_ size: String, _ context: SignedInContext) -> String {
        size == "auto" ? self.views.text("studio.size_auto", [:], context) : size.replacingOccurrences(of: "x", with: "×")
    }

    func qualityLabel(_ quality: String, _ context: SignedInContext) -> String {
        ["low", "medium", "high", "auto"].contains(quality) ? self.views.text("studio.quality_\(quality)", [:], context) : quality
    }

    static func statusClass(_ status: GenerationTask.Status) -> String {
        switch status {
        case .succeeded: "ok"
        case .failed: "bad"
        case .queued, .running: "active"
        case .canceled: ""
        }
    }

    static func preview(_ prompt: String) -> String {
        let flat = prompt.split(whereSeparator: \.isNewline).joined(separator: " ")
        guard flat.count > Self.promptPreviewLength else { return flat }
        return String(flat.prefix(Self.promptPreviewLength - 1)).trimmingCharacters(in: .whitespaces) + "…"
    }

    /// "+50", "−4" (a real minus sign), "0".
    static func signed(_ amount: Int) -> String {
        amount > 0 ? "+\(amount)" : amount < 0 ? "\u{2212}\(-amount)" : "0"
    }

    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `a=1&b=two%20words`: spaces as %20 (never "+", which the query parser keeps as is).
    static func query(_ pairs: [(String, String)]) -> String {
        pairs.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? "")" }.joined(separator: "&")
    }
}
