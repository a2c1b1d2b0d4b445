import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Scheduled jobs for admins: what each does, how often, and its last runs with their
/// outcome — the retention timers the privacy policy promises, visible. An admin can run one
/// now (the same as `easel jobs run NAME`).
struct AdminJobsController {
    let scheduler: Scheduler
    let database: AppDatabase
    let views: ViewRenderer

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("admin/jobs", context: SignedInContext.self)
        group.get(use: self.list)
        group.post(":name/run", use: self.run)
    }

    struct RunRow: Sendable {
        var started: String
        var duration: String
        var outcome: String
        var outcomeClass: String
        var trigger: String
        var error: String?
    }

    struct JobRow: Sendable {
        var name: String
        var summary: String
        var every: String
        var runs: [RunRow]
        var never: Bool
    }

    struct Page: Sendable {
        var layout: LayoutData
        var jobs: [JobRow]
        var notice: String?
        var error: String?
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "jobs.error_admins_only", english: "Only administrators can see scheduled jobs.")
        }
    }

    @Sendable func list(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let name = request.uri.queryParameters["ran"].map(String.init).flatMap { ran in self.scheduler.jobs.contains { $0.name == ran } ? ran : nil }
        let failed = request.uri.queryParameters["outcome"] == "failed"
        let notice = name.flatMap { job in failed ? nil : self.views.text("jobs.notice_ran", ["job": job], context) }
        let error = name.flatMap { job in failed ? self.views.text("jobs.notice_failed", ["job": job], context) : nil }
        return try await self.page(context, notice: notice, error: error)
    }

    func page(_ context: SignedInContext, notice: String? = nil, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        var rows: [JobRow] = []
        for job in self.scheduler.jobs {
            let runs = try await self.database.recentJobRuns(job: job.name, limit: 5).map { run in
                RunRow(
                    started: self.views.date(run.startedAt, context),
                    duration: run.finishedAt.map { Self.elapsed($0.timeIntervalSince(run.startedAt)) } ?? "…",
                    outcome: self.views.text("jobs.outcome_\(run.outcome.rawValue)", [:], context),
                    outcomeClass: run.outcome == .succeeded ? "ok" : (run.outcome == .failed ? "bad" : "active"),
                    trigger: self.views.text("jobs.trigger_\(run.trigger.rawValue)", [:], context),
                    error: run.error.map { String($0.prefix(300)) }
                )
            }
            rows.append(JobRow(name: job.name, summary: job.summary, every: Self.interval(job.interval), runs: runs, never: runs.isEmpty))
        }
        let page = Page(
            layout: self.views.layout(title: self.views.text("jobs.title", [:], context), context: context), jobs: rows, notice: notice, error: error)
        return try self.views.render(page, template: "admin-jobs", status: status)
    }

    @Sendable func run(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let name = try context.parameters.require("name")
        guard self.scheduler.jobs.contains(where: { $0.name == name }) else {
            throw WebError(.notFound, code: "not_found", key: "jobs.error_no_job", english: "There is no job with that name.")
        }
        do {
            let run = try await self.scheduler.runNow(name)
            let query = run.outcome == .failed ? "&outcome=failed" : ""
            return Response(status: .seeOther, headers: [.location: "/admin/jobs?ran=\(name)\(query)"])
        } catch Scheduler.RunError.alreadyRunning {
            return try await self.page(context, error: self.views.text("jobs.error_running", ["job": name], context), status: .conflict)
        }
    }

    /// "24 h", "30 min", "45 s".
    static func interval(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds % 86400 == 0 { return "\(seconds / 86400) d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600) h" }
        if seconds % 60 == 0 { return "\(seconds / 60) min" }
        return "\(seconds) s"
    }

    static func elapsed(_ seconds: TimeInterval) -> String {
        seconds < 1 ? "\(Int((seconds * 1000).rounded())) ms" : (seconds < 120 ? String(format: "%.1f s", seconds) : "\(Int(seconds / 60)) min")
    }
}
