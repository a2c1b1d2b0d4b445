import EaselCore
import EaselStore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// The Privacy Policy and Terms (/privacy, /terms), rendered from templates the operator can
/// edit with this instance's facts filled in, and the notice of a material change
/// (/policy/notice) that people acknowledge.
struct PolicyController {
    let policy: PolicyService
    let views: ViewRenderer
    /// Asks for queued mail (the notices of a material change) to go out now.
    var mailQueued: @Sendable () -> Void = {}

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/privacy", use: self.privacy)
        router.get("/terms", use: self.terms)
        let group = router.group("policy", context: SignedInContext.self)
        group.get("notice", use: self.notice)
        group.post("notice", use: self.acknowledge)
        let admin = router.group("admin/policy", context: SignedInContext.self)
        admin.get(use: self.admin)
        admin.post("publish", use: self.publish)
    }

    /// The facts as templates read them: plain strings, numbers and flags.
    struct Facts: Sendable {
        var siteName: String
        var operatorName: String
        /// The operator is named apart from the site ("Example Ltd runs Easel").
        var operatorDiffers: Bool
        var contact: String?
        var contactHref: String?
        var jurisdiction: String?
        var siteURL: String
        var version: String
        var updatedOn: String
        var services: [PolicyFacts.OutsideService]
        var hasServices: Bool
        var offlineGeneration: Bool
        var billing: Bool
        var accountPurgeDays: Int
        var requestLog: Bool
        var requestLogDays: Int
        var analytics: Bool
        var analyticsDays: Int
        var exportDays: Int
        var paymentYears: Int
        var sentMailDays: Int
        var sessionMaxDays: Int
        var minimumAge: Int
        var hasMinimumAge: Bool

        init(_ facts: PolicyFacts) {
            self.siteName = facts.siteName
            self.operatorName = facts.operatorName
            self.operatorDiffers = facts.operatorName != facts.siteName
            self.contact = facts.contact
            self.contactHref = facts.contactHref
            self.jurisdiction = facts.jurisdiction
            self.siteURL = facts.publicURL.absoluteString
            self.version = facts.version
            self.updatedOn = facts.updatedOn
            self.services = facts.services
            self.hasServices = !facts.services.isEmpty
            self.offlineGeneration = facts.offlineGeneration
            self.billing = facts.billing
            self.accountPurgeDays = facts.accountPurgeDays
            self.requestLog = facts.requestLogDays > 0
            self.requestLogDays = facts.requestLogDays
            self.analytics = facts.analytics
            self.analyticsDays = facts.analyticsDays
            self.exportDays = facts.exportDays
            self.paymentYears = facts.paymentYears
            self.sentMailDays = facts.sentMailDays
            self.sessionMaxDays = facts.sessionMaxDays
            self.minimumAge = facts.minimumAge
            self.hasMinimumAge = facts.minimumAge > 0
        }
    }

    struct PolicyPage: Sendable {
        var layout: LayoutData
        var facts: Facts
        var lastUpdated: String
    }

    @Sendable func privacy(_ request: Request, context: AppRequestContext) throws -> Response {
        try self.page(template: "policy-privacy", titleKey: "policy.privacy_title", context: context)
    }

    @Sendable func terms(_ request: Request, context: AppRequestContext) throws -> Response {
        try self.page(template: "policy-terms", titleKey: "policy.terms_title", context: context)
    }

    func page(template: String, titleKey: String, context: AppRequestContext) throws -> Response {
        let facts = self.policy.facts
        let page = PolicyPage(
            layout: self.views.layout(title: self.views.text(titleKey, [:], context), context: context), facts: Facts(facts),
            lastUpdated: self.views.text("policy.last_updated", ["date": facts.updatedOn, "version": facts.version], context)
        )
        guard let folder = self.policy.templateFolder,
            let data = FileManager.default.contents(atPath: folder.appending(path: "\(template).mustache").path)
        else { return try self.views.render(page, template: template) }
        // The operator's own text, with the shipped layout around it.
        var library = try self.views.assets.templates()
        do {
            try library.register(String(decoding: data, as: UTF8.self), named: template)
        } catch {
            throw WebError(
                .internalServerError, code: "policy_template_invalid",
                message: "The policy template \(template).mustache in EASEL_POLICY_DIR has an error: \(error). Fix it, or remove it to use the shipped text."
            )
        }
        guard let html = library.render(page, withTemplate: template) else {
            throw WebError(.internalServerError, code: "template_missing", message: "The page template \"\(template)\" is missing.")
        }
        return Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }

    struct NoticePage: Sendable {
        var layout: LayoutData
        var text: String
        var next: String
        /// Nothing to acknowledge (already done, or no material change): the page says so.
        var pending: Bool
    }

    @Sendable func notice(_ request: Request, context: SignedInContext) async throws -> Response {
        let facts = self.policy.facts
        let pending = try await self.policy.pendingNotice(for: context.user) != nil
        let page = NoticePage(
            layout: self.views.layout(title: self.views.text("policy.notice_title", [:], context), context: context),
            text: self.views.text("policy.notice_text", ["date": facts.updatedOn, "version": facts.version], context),
            next: Self.localPath(request.uri.queryParameters["next"].map(String.init)) ?? "/", pending: pending
        )
        return try self.views.render(page, template: "policy-notice")
    }

    struct AcknowledgeForm: Decodable {
        var next: String?
    }

    @Sendable func acknowledge(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(AcknowledgeForm.self, from: request, context: context)
        try await self.policy.acknowledge(userID: context.user.id!)
        return Response(status: .seeOther, headers: [.location: Self.localPath(form.next) ?? "/"])
    }

    // MARK: Admin: publish the configured version

    struct VersionRow: Sendable {
        var version: String
        var updatedOn: String
        var kind: String
        var published: String
        var mails: Int
    }

    struct AdminPage: Sendable {
        var layout: LayoutData
        var lead: String
        var publishLabel: String
        /// The configured version is not recorded yet.
        var canPublish: Bool
        var versions: [VersionRow]
        var hasVersions: Bool
        var notice: String?
        var error: String?
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "policy.error_admins_only", english: "Only administrators can publish policy versions.")
        }
    }

    @Sendable func admin(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let notice = request.uri.queryParameters["published"].map { count in
            self.views.text("policy.admin_notice_published", ["version": self.policy.facts.version, "count": String(count)], context)
        }
        return try await self.adminPage(context, notice: notice)
    }

    func adminPage(_ context: SignedInContext, notice: String? = nil, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let facts = self.policy.facts
        let versions = try await self.policy.publishedVersions()
        let rows = versions.map { version in
            VersionRow(
                version: version.version, updatedOn: version.updatedOn,
                kind: self.views.text(version.material ? "policy.admin_kind_material" : "policy.admin_kind_minor", [:], context),
                published: self.views.date(version.publishedAt, context), mails: version.mailsQueued
            )
        }
        let page = AdminPage(
            layout: self.views.layout(title: self.views.text("policy.admin_title", [:], context), context: context),
            lead: self.views.text("policy.admin_lead", ["version": facts.version, "date": facts.updatedOn], context),
            publishLabel: self.views.text("policy.admin_publish", ["version": facts.version], context),
            canPublish: !versions.contains { $0.version == facts.version }, versions: rows, hasVersions: !rows.isEmpty, notice: notice, error: error
        )
        return try self.views.render(page, template: "admin-policy", status: status)
    }

    struct PublishForm: Decodable {
        var material: String?
    }

    @Sendable func publish(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let form = try await URLEncodedFormDecoder().decode(PublishForm.self, from: request, context: context)
        do {
            let record = try await self.policy.publish(material: form.material == "on")
            if record.mailsQueued > 0 { self.mailQueued() }
            return Response(status: .seeOther, headers: [.location: "/admin/policy?published=\(record.mailsQueued)"])
        } catch PolicyService.PublishError.alreadyPublished(let version) {
            let error = self.views.text("policy.admin_error_published", ["version": version], context)
            return try await self.adminPage(context, error: error, status: .conflict)
        }
    }

    /// A path on this site ("/gallery?page=2"), never another site ("//evil.example").
    static func localPath(_ raw: String?) -> String? {
        AccountController.safeNext(raw)
    }
}
