import EaselBlobs
import EaselCore
import EaselStore
import Foundation
import Hummingbird
import NIOCore

/// "Export everything" on Settings → Privacy: start an export, follow it live, download it.
/// Exports are only ever their owner's: anyone else gets the same 404 as for a missing one.
struct ExportController {
    let exports: ExportService
    let views: ViewRenderer
    let blobs: any BlobStore
    /// Wakes the `exports` job.
    let exportQueued: @Sendable () -> Void

    /// Where the Privacy page shows the block; the start button comes back here.
    static let pagePath = "/account/privacy#export"

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("account/privacy", context: SignedInContext.self)
        group.post("export", use: self.start)
        group.get("exports/:id/status", use: self.status)
        group.get("exports/:id/download", use: self.download)
    }

    // MARK: The block on the Privacy page

    struct Block: Sendable {
        var lead: String
        var active: ActiveExport?
        var ready: [ReadyExport]
        var failures: [String]
        var scriptURL: String
    }

    struct ActiveExport: Sendable {
        var statusURL: String
        /// Known once the build has started and counted the files.
        var known: Bool
        var entriesDone: Int
        var entriesTotal: Int
        var text: String
    }

    struct ReadyExport: Sendable {
        var downloadURL: String
        var text: String
    }

    func block(for context: SignedInContext, now: Date = Date()) async throws -> Block {
        let exports = try await self.exports.exports(userID: context.user.id!)
        let active = exports.first { $0.status.isActive }
        return Block(
            lead: self.views.text("export.lead", ["days": String(self.exports.settings.retentionDays)], context),
            active: active.map { export in
                ActiveExport(
                    statusURL: "/account/privacy/exports/\(export.id!)/status", known: export.status == .running && export.entriesTotal > 0,
                    entriesDone: export.entriesDone, entriesTotal: export.entriesTotal, text: self.progressText(export, context)
                )
            },
            ready: exports.filter { $0.status == .ready && !$0.isExpired(at: now) }.map { export in
                ReadyExport(
                    downloadURL: AccountMails.exportDownloadPath(export.id!),
                    text: self.views.text(
                        "export.ready",
                        ["size": ByteSize.string(export.size ?? 0), "made": self.views.date(export.finishedAt ?? export.createdAt, context),
                         "date": self.views.date(export.expiresAt ?? now, context)],
                        context
                    )
                )
            },
            failures: exports.prefix { $0.status != .ready }.filter { $0.status == .failed }.map { export in
                self.views.text("export.failed", ["date": self.views.date(export.finishedAt ?? export.createdAt, context)], context)
            },
            scriptURL: self.views.assets.url("export.js")
        )
    }

    func progressText(_ export: DataExport, _ context: some PageContext) -> String {
        switch export.status {
        case .queued:
            return self.views.text("export.queued", [:], context)
        case .running where export.entriesTotal > 0:
            return self.views.text(
                "export.running",
                [
                    "done": String(export.entriesDone), "total": String(export.entriesTotal), "bytes": ByteSize.string(export.bytesDone),
                    "bytes_total": ByteSize.string(export.bytesTotal),
                ],
                context
            )
        case .running:
            return self.views.text("export.starting", [:], context)
        case .ready:
            return self.views.text("export.just_ready", [:], context)
        case .failed:
            return self.views.text("export.failed", ["date": self.views.date(export.finishedAt ?? export.createdAt, context)], context)
        }
    }

    // MARK: Actions

    /// Starts an export, or (pressed again) leads back to the one under way.
    @Sendable func start(_ request: Request, context: SignedInContext) async throws -> Response {
        let (_, created) = try await self.exports.request(for: context.user)
        if created { self.exportQueued() }
        return Response(status: .seeOther, headers: [.location: Self.pagePath])
    }

    struct Status: ResponseEncodable {
        var id: Int64
        var status: String
        var entries_done: Int
        var entries_total: Int
        var bytes_done: Int64
        var bytes_total: Int64
        var size: Int64?
        var text: String
        var download_url: String?
    }

    /// For the page's live progress: polled while the export is queued or running.
    @Sendable func status(_ request: Request, context: SignedInContext) async throws -> Response {
        let export = try await self.owned(context)
        let status = Status(
            id: export.id!, status: export.status.rawValue, entries_done: export.entriesDone, entries_total: export.entriesTotal,
            bytes_done: export.bytesDone, bytes_total: export.bytesTotal, size: export.size, text: self.progressText(export, context),
            download_url: export.status == .ready && !export.isExpired(at: Date()) ? AccountMails.exportDownloadPath(export.id!) : nil
        )
        var response = try status.response(from: request, context: context)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// The archive, streamed through Easel (it is encrypted in storage, so never a bucket URL).
    @Sendable func download(_ request: Request, context: SignedInContext) async throws -> Response {
        let export = try await self.owned(context)
        guard export.status == .ready, !export.isExpired(at: Date()), let key = export.blobKey else {
            throw WebError(.notFound, code: "export_unavailable", key: "export.error_unavailable", english: "This export is not ready, or it has expired. Start a new one on the Privacy page.")
        }
        let day = ISO8601DateFormatter.string(from: export.finishedAt ?? export.createdAt, timeZone: TimeZone(secondsFromGMT: 0)!, formatOptions: [.withFullDate])
        return try await BlobResponder(blobs: self.blobs).respond(
            to: request, key: try BlobKey(key), etag: "export-\(export.id!)-\(export.size ?? 0)", contentType: "application/zip",
            disposition: "attachment; filename=\"\(Self.fileName(site: self.views.siteName, day: day))\""
        )
    }

    /// "easel-export-2026-11-28.zip": the site's name in letters, digits and dashes.
    static func fileName(site: String, day: String) -> String {
        let slug = site.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? String($0) : "-" }.joined()
            .split(separator: "-").joined(separator: "-")
        return "\(slug.isEmpty ? "easel" : slug)-export-\(day).zip"
    }

    private func owned(_ context: SignedInContext) async throws -> DataExport {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let export = try await self.exports.export(id: id, ownedBy: context.user.id!) else {
            throw WebError(.notFound, code: "not_found", key: "export.error_not_found", english: "There is no such export. Exports are kept for a few days, then removed.")
        }
        return export
    }
}
