import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// `/account/keys`: the signed-in person's API keys: list, create (the key is shown once), revoke.
struct APIKeysPageController {
    let apiKeys: APIKeyService
    let views: ViewRenderer

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("account/keys", context: SignedInContext.self)
        group.get(use: self.page)
        group.post(use: self.create)
        group.post(":id/revoke", use: self.revoke)
    }

    struct KeyRow: Sendable {
        var id: Int64
        var prefix: String
        var name: String
        var scopes: String
        var created: String
        var expires: String
        var lastUsed: String
        var expired: Bool
    }

    struct ScopeChoice: Sendable {
        var value: String
        var summary: String
        var checked: Bool
    }

    struct NewKeyView: Sendable {
        var secret: String
        var name: String
        /// "Your new key “nightly”", in the page's language.
        var heading: String
    }

    struct KeysPage: Sendable {
        var layout: LayoutData
        var keys: [KeyRow]
        var hasKeys: Bool
        var scopes: [ScopeChoice]
        var name: String
        var expiresInDays: String
        var maximumNameLength: Int
        var maximumExpiryDays: Int
        /// "e.g. 90 (at most 3650)", in the page's language.
        var expiryPlaceholder: String
        var newKey: NewKeyView?
        var error: String?
        var notice: String?
    }

    struct CreateForm: Decodable {
        var name: String?
        var scopeGenerate: String?
        var scopeRead: String?
        var scopeAccount: String?
        var expiresInDays: String?

        enum CodingKeys: String, CodingKey {
            case name
            case scopeGenerate = "scope_generate"
            case scopeRead = "scope_read"
            case scopeAccount = "scope_account"
            case expiresInDays = "expires_in_days"
        }

        var scopes: Set<APIScope> {
            var scopes = Set<APIScope>()
            if self.scopeGenerate != nil { scopes.insert(.generate) }
            if self.scopeRead != nil { scopes.insert(.read) }
            if self.scopeAccount != nil { scopes.insert(.account) }
            return scopes
        }
    }

    func render(
        _ context: SignedInContext,
        newKey: NewKeyView? = nil,
        form: CreateForm? = nil,
        error: String? = nil,
        notice: String? = nil,
        status: HTTPResponse.Status = .ok
    ) async throws -> Response {
        let now = Date()
        let rows = try await self.apiKeys.keys(for: context.user).map { key in
            KeyRow(
                id: key.id!,
                prefix: key.prefix,
                name: key.name,
                scopes: key.scopeSet.sorted().map(\.rawValue).joined(separator: ", "),
                created: self.views.date(key.createdAt, context),
                expires: key.expiresAt.map { self.views.date($0, context) } ?? self.views.text("account_keys.never", [:], context),
                lastUsed: key.lastUsedAt.map { self.views.date($0, context) } ?? self.views.text("account_keys.never", [:], context),
                expired: key.expiresAt.map { $0 <= now } ?? false
            )
        }
        // A fresh form suggests read-only; a refused one keeps what was ticked.
        let checked = form?.scopes ?? [.read]
        let page = KeysPage(
            layout: self.views.layout(title: self.views.text("account.api_keys", [:], context), context: context),
            keys: rows,
            hasKeys: !rows.isEmpty,
            scopes: APIScope.allCases.map { ScopeChoice(value: $0.rawValue, summary: self.views.text("account_keys.scope_\($0.rawValue)", [:], context), checked: checked.contains($0)) },
            name: newKey == nil ? form?.name ?? "" : "",
            expiresInDays: newKey == nil ? form?.expiresInDays ?? "" : "",
            maximumNameLength: APIKeyService.maximumNameLength,
            maximumExpiryDays: APIKeyService.maximumExpiryDays,
            expiryPlaceholder: self.views.text("account_keys.expires_placeholder", ["max": String(APIKeyService.maximumExpiryDays)], context),
            newKey: newKey,
            error: error,
            notice: notice
        )
        return try self.views.render(page, template: "account-keys", status: status)
    }

    @Sendable func page(_ request: Request, context: SignedInContext) async throws -> Response {
        let notice: String? = request.uri.queryParameters["notice"] == "revoked" ? self.views.text("account_keys.notice_revoked", [:], context) : nil
        return try await self.render(context, notice: notice)
    }

    @Sendable func create(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CreateForm.self, from: request, context: context)
        do {
            let days = form.expiresInDays?.trimmingCharacters(in: .whitespaces) ?? ""
            guard days.isEmpty || Int(days) != nil else { throw APIKeyService.CreateError.invalidExpiry }
            let expiresAt = try APIKeyService.expiry(days: Int(days))
            let new = try await self.apiKeys.create(for: context.user, name: form.name ?? "", scopes: form.scopes, expiresAt: expiresAt)
            return try await self.render(context, newKey: NewKeyView(secret: new.secret, name: new.key.name, heading: self.views.text("account_keys.new_key_title", ["name": new.key.name], context)))
        } catch let error as APIKeyService.CreateError {
            return try await self.render(context, form: form, error: self.message(for: error, context), status: .unprocessableContent)
        }
    }

    @Sendable func revoke(_ request: Request, context: SignedInContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        guard try await self.apiKeys.revoke(keyID: id, for: context.user) else {
            throw WebError(.notFound, code: "not_found", key: "account_keys.error_no_key", english: "That key does not exist or was already revoked.")
        }
        return Response(status: .seeOther, headers: [.location: "/account/keys?notice=revoked"])
    }

    /// `error` in the page's language (the API and the command line use its English description).
    func message(for error: APIKeyService.CreateError, _ context: some PageContext) -> String {
        let scopes = APIScope.allCases.map(\.rawValue).joined(separator: ", ")
        return switch error {
        case .nameMissing: self.views.text("account_keys.error_name_missing", ["max": String(APIKeyService.maximumNameLength)], context)
        case .nameTooLong: self.views.text("account_keys.error_name_too_long", ["max": String(APIKeyService.maximumNameLength)], context)
        case .noScopes: self.views.text("account_keys.error_no_scopes", ["scopes": scopes], context)
        case .unknownScope(let name): self.views.text("account_keys.error_unknown_scope", ["name": name, "scopes": scopes], context)
        case .invalidExpiry: self.views.text("account_keys.error_expiry", ["max": String(APIKeyService.maximumExpiryDays)], context)
        case .tooManyKeys(let limit): self.views.text("account_keys.error_too_many", ["limit": String(limit)], context)
        case .accountNotActive: self.views.text("account_keys.error_not_active", [:], context)
        }
    }
}
