import EaselCore
import EaselStore
import Foundation
import Hummingbird
import NIOCore

/// The JSON API under `/api/v1`: the account, its sessions and its API keys. Every handler
/// starts with `context.require(scope)`; `APIAuthMiddleware` has already refused callers
/// without valid credentials. Keys are snake_case; errors are `{"error":{"code","message"}}`.
struct APIController {
    let database: AppDatabase
    let apiKeys: APIKeyService
    let keyRateLimit: RateLimiter.Rule

    /// Adds the account routes and returns the authenticated `/api/v1` group for the others.
    @discardableResult
    func addRoutes(to router: Router<AppRequestContext>) -> RouterGroup<APIContext> {
        let api = router.group("api/v1", context: APIContext.self)
            .add(middleware: APIAuthMiddleware(apiKeys: self.apiKeys, limiter: RateLimiter(), keyRateLimit: self.keyRateLimit))
        api.get("me", use: self.me)
        api.patch("me", use: self.updateMe)
        api.get("sessions", use: self.sessions)
        api.delete("sessions/:id", use: self.deleteSession)
        api.get("keys", use: self.keys)
        api.post("keys", use: self.createKey)
        api.delete("keys/:id", use: self.revokeKey)
        return api
    }

    // MARK: Types

    struct Me: ResponseEncodable {
        var id: Int64
        var email: String
        var displayName: String
        var role: String
        var language: String?
        var theme: String
        var emailVerified: Bool
        var twoFactor: Bool
        /// "/avatars/1?v=…" (on this site, for its owner and admins), or nil without a picture.
        var avatarURL: String?
        var createdAt: Date

        init(_ user: User) {
            self.id = user.id!
            self.email = user.email
            self.displayName = user.displayName
            self.role = user.role.rawValue
            self.language = user.language
            self.theme = user.theme.rawValue
            self.emailVerified = user.isVerified
            self.twoFactor = user.hasTwoFactor
            self.avatarURL = ViewRenderer.avatarURL(user)
            self.createdAt = user.createdAt
        }

        enum CodingKeys: String, CodingKey {
            case id, email, displayName, role, language, theme, emailVerified, twoFactor, avatarURL, createdAt
        }

        // Written out so that a missing language or avatar is `null`, not an absent key.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(self.id, forKey: .id)
            try container.encode(self.email, forKey: .email)
            try container.encode(self.displayName, forKey: .displayName)
            try container.encode(self.role, forKey: .role)
            try container.encode(self.language, forKey: .language)
            try container.encode(self.theme, forKey: .theme)
            try container.encode(self.emailVerified, forKey: .emailVerified)
            try container.encode(self.twoFactor, forKey: .twoFactor)
            try container.encode(self.avatarURL, forKey: .avatarURL)
            try container.encode(self.createdAt, forKey: .createdAt)
        }
    }

    /// `PATCH /me`: absent fields stay as they are; `"language": null` follows the browser again.
    struct MeUpdate: Decodable {
        var displayName: String?
        var language: String??
        var theme: String?

        enum CodingKeys: String, CodingKey { case displayName, language, theme }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.displayName = try container.decodeIfPresent(String.self, forKey: .displayName)
            self.language = container.contains(.language) ? .some(try container.decodeIfPresent(String.self, forKey: .language)) : .none
            self.theme = try container.decodeIfPresent(String.self, forKey: .theme)
        }
    }

    struct SessionInfo: Encodable {
        var id: Int64
        var device: String
        var ip: String
        var createdAt: Date
        var lastSeenAt: Date
        var current: Bool
    }

    struct SessionList: ResponseEncodable {
        var sessions: [SessionInfo]
    }

    struct KeyInfo: ResponseEncodable {
        var id: Int64
        var prefix: String
        var name: String
        var scopes: [String]
        var createdAt: Date
        var expiresAt: Date?
        var lastUsedAt: Date?
        var expired: Bool
        /// The whole key: only in the answer to its creation.
        var key: String?

        init(_ key: APIKey, secret: String? = nil, now: Date = Date()) {
            self.id = key.id!
            self.prefix = key.prefix
            self.name = key.name
            self.scopes = key.scopeSet.sorted().map(\.rawValue)
            self.createdAt = key.createdAt
            self.expiresAt = key.expiresAt
            self.lastUsedAt = key.lastUsedAt
            self.expired = key.expiresAt.map { $0 <= now } ?? false
            self.key = secret
        }

        enum CodingKeys: String, CodingKey {
            case id, prefix, name, scopes, createdAt, expiresAt, lastUsedAt, expired, key
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(self.id, forKey: .id)
            try container.encode(self.prefix, forKey: .prefix)
            try container.encode(self.name, forKey: .name)
            try container.encode(self.scopes, forKey: .scopes)
            try container.encode(self.createdAt, forKey: .createdAt)
            try container.encode(self.expiresAt, forKey: .expiresAt)
            try container.encode(self.lastUsedAt, forKey: .lastUsedAt)
            try container.encode(self.expired, forKey: .expired)
            try container.encodeIfPresent(self.key, forKey: .key)
        }
    }

    struct KeyList: ResponseEncodable {
        var keys: [KeyInfo]
    }

    struct NewKeyRequest: Decodable {
        var name: String?
        var scopes: [String]?
        var expiresInDays: Int?
    }

    // MARK: Account

    @Sendable func me(_ request: Request, context: APIContext) async throws -> Me {
        let caller = try context.require(anyOf: [.read, .account])
        return Me(caller.user)
    }

    @Sendable func updateMe(_ request: Request, context: APIContext) async throws -> Me {
        let caller = try context.require(.account)
        let update = try await Self.decode(MeUpdate.self, from: request, context: context)
        let user = caller.user
        do {
            let displayName = try update.displayName.map(ProfileValidation.displayName) ?? user.displayName
            let language = try update.language.map(ProfileValidation.language) ?? user.language
            let theme = try update.theme.map(ProfileValidation.theme) ?? user.theme
            try await self.database.updateProfile(userID: user.id!, displayName: displayName, language: language, theme: theme)
        } catch let problem as ProfileValidation.Problem {
            throw Self.invalid(problem.field, problem.message)
        }
        guard let updated = try await self.database.user(id: user.id!) else { throw WebError.notFound("This account no longer exists.") }
        return Me(updated)
    }

    // MARK: Sessions

    @Sendable func sessions(_ request: Request, context: APIContext) async throws -> SessionList {
        let caller = try context.require(.account)
        let sessions = try await self.database.sessions(userID: caller.user.id!)
        return SessionList(
            sessions: sessions.map { session in
                SessionInfo(
                    id: session.id!,
                    device: DeviceName(userAgent: session.userAgent).english,
                    ip: session.ip,
                    createdAt: session.createdAt,
                    lastSeenAt: session.lastSeenAt,
                    current: session.id == caller.sessionID
                )
            }
        )
    }

    @Sendable func deleteSession(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.account)
        let id = try context.parameters.require("id", as: Int64.self)
        guard try await self.database.deleteSession(id: id, userID: caller.user.id!) else {
            throw WebError.notFound("You have no session with the id \(id). List them with GET /api/v1/sessions.")
        }
        return Response(status: .noContent)
    }

    // MARK: Keys

    @Sendable func keys(_ request: Request, context: APIContext) async throws -> KeyList {
        let caller = try context.require(.account)
        let now = Date()
        return KeyList(keys: try await self.apiKeys.keys(for: caller.user).map { KeyInfo($0, now: now) })
    }

    @Sendable func createKey(_ request: Request, context: APIContext) async throws -> EditedResponse<KeyInfo> {
        let caller = try context.require(.account)
        let body = try await Self.decode(NewKeyRequest.self, from: request, context: context)
        do {
            let scopes = try APIScope.parse((body.scopes ?? []).joined(separator: ","))
            // A key cannot hand out more than it holds itself.
            if let missing = scopes.sorted().first(where: { !caller.scopes.contains($0) }) {
                throw APIAuthError.insufficientScope([missing])
            }
            let expiresAt = try APIKeyService.expiry(days: body.expiresInDays)
            let new = try await self.apiKeys.create(for: caller.user, name: body.name ?? "", scopes: scopes, expiresAt: expiresAt)
            return EditedResponse(status: .created, response: KeyInfo(new.key, secret: new.secret))
        } catch let error as APIKeyService.CreateError {
            if case .tooManyKeys = error {
                throw WebError(.conflict, code: "too_many_keys", message: error.description)
            }
            throw Self.invalid(error.field, error.description)
        }
    }

    @Sendable func revokeKey(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.account)
        let id = try context.parameters.require("id", as: Int64.self)
        guard try await self.apiKeys.revoke(keyID: id, for: caller.user) else {
            throw WebError.notFound("You have no active API key with the id \(id). List them with GET /api/v1/keys.")
        }
        return Response(status: .noContent)
    }

    // MARK: Helpers

    /// 422 naming the field to fix.
    static func invalid(_ field: String, _ message: String) -> WebError {
        WebError(.unprocessableContent, code: "invalid_field", message: message.hasPrefix(field) ? message : "\(field): \(message)")
    }

    /// Decodes a JSON body: 400 when it is not JSON at all, 422 naming the field when a field has
    /// the wrong type.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: APIContext) async throws -> T {
        var request = request
        let buffer = try await request.collectBody(upTo: 64 * 1024)
        let data = Data(buffer.readableBytesView)
        do {
            return try context.requestDecoder.decode(T.self, from: data.isEmpty ? Data("{}".utf8) : data)
        } catch DecodingError.typeMismatch(let expected, let info) {
            let field = Self.snakeCase(info.codingPath)
            throw Self.invalid(field, "\(field) must be \(Self.describe(expected)).")
        } catch DecodingError.valueNotFound(let expected, let info) {
            let field = Self.snakeCase(info.codingPath)
            throw Self.invalid(field, "\(field) must be \(Self.describe(expected)).")
        } catch {
            throw WebError.badRequest("The body must be a JSON object, e.g. {\"name\": \"my script\"}.")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type, is String?.Type: "a string"
        case is Int.Type, is Int?.Type: "a whole number"
        case is [String].Type, is [String]?.Type: "a list of strings"
        default: "of another type"
        }
    }

    /// "displayName" → "display_name", as clients wrote it.
    static func snakeCase(_ path: [any CodingKey]) -> String {
        path.map { key in
            key.intValue.map(String.init)
                ?? key.stringValue.reduce(into: "") { result, character in
                    if character.isUppercase {
                        result += "_" + character.lowercased()
                    } else {
                        result.append(character)
                    }
                }
        }.joined(separator: ".")
    }
}
