import Crypto
import EaselStore
import Foundation

/// What an API key may do. A signed-in browser session has every scope.
public enum APIScope: String, Sendable, CaseIterable, Codable, Comparable {
    /// Start image generations (and spend credits).
    case generate
    /// Read the account, its images and its activity.
    case read
    /// Change the account: profile, sessions, API keys.
    case account

    /// What the scope allows, in words for the key page and the docs.
    public var summary: String {
        switch self {
        case .generate: "create images (spends credits)"
        case .read: "read your account, images and activity"
        case .account: "change your profile, sessions and API keys"
        }
    }

    public static func < (lhs: APIScope, rhs: APIScope) -> Bool {
        Self.allCases.firstIndex(of: lhs)! < Self.allCases.firstIndex(of: rhs)!
    }

    /// Scopes in their canonical order, comma-separated, as stored: "generate,read".
    public static func list(_ scopes: Set<APIScope>) -> String {
        scopes.sorted().map(\.rawValue).joined(separator: ",")
    }

    /// Parses "generate, read" (commas and spaces); throws naming the first unknown scope.
    public static func parse(_ list: String) throws(APIKeyService.CreateError) -> Set<APIScope> {
        var scopes = Set<APIScope>()
        for part in list.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            guard let scope = APIScope(rawValue: part.lowercased()) else { throw .unknownScope(String(part)) }
            scopes.insert(scope)
        }
        return scopes
    }
}

extension APIKey {
    /// The stored scopes that this build knows (an unknown one, from a newer build, grants nothing).
    public var scopeSet: Set<APIScope> {
        Set(self.scopes.split(separator: ",").compactMap { APIScope(rawValue: String($0)) })
    }
}

/// Personal API keys: `easel_` + an 8-character public id + `_` + 43 random base62 characters
/// (about 256 bits). The database keeps the public part and the SHA-256 of the whole key.
public struct APIKeyService: Sendable {
    public static let keyPrefix = "easel_"
    public static let idLength = 8
    public static let secretLength = 43
    public static let maximumNameLength = 60
    public static let maximumExpiryDays = 3650

    /// Active (unrevoked, unexpired) keys a person may hold at once.
    public let maximumActiveKeys: Int
    private let database: AppDatabase

    public init(database: AppDatabase, maximumActiveKeys: Int = 50) {
        self.database = database
        self.maximumActiveKeys = maximumActiveKeys
    }

    public enum CreateError: Error, Equatable, CustomStringConvertible {
        case nameMissing
        case nameTooLong
        case noScopes
        case unknownScope(String)
        case invalidExpiry
        case tooManyKeys(limit: Int)
        case accountNotActive

        /// What happened and what to do, for the page, the API and the command line alike.
        public var description: String {
            switch self {
            case .nameMissing: "Give the key a name (1 to \(APIKeyService.maximumNameLength) characters) that says where it is used."
            case .nameTooLong: "The key's name is too long: use at most \(APIKeyService.maximumNameLength) characters."
            case .noScopes: "Choose at least one scope (\(APIScope.allCases.map(\.rawValue).joined(separator: ", ")))."
            case .unknownScope(let name):
                "There is no scope \"\(name)\": use \(APIScope.allCases.map(\.rawValue).joined(separator: ", "))."
            case .invalidExpiry:
                "The expiry must be a whole number of days from 1 to \(APIKeyService.maximumExpiryDays), or empty for a key that does not expire."
            case .tooManyKeys(let limit): "You already have \(limit) active keys. Revoke one you no longer use, then try again."
            case .accountNotActive: "This account is suspended or its email address is not confirmed yet, so it cannot have API keys."
            }
        }

        /// The field a form or API client should fix.
        public var field: String {
            switch self {
            case .nameMissing, .nameTooLong: "name"
            case .noScopes, .unknownScope: "scopes"
            case .invalidExpiry: "expires_in_days"
            case .tooManyKeys, .accountNotActive: "key"
            }
        }
    }

    /// A key just made: `secret` is the whole key, to show once and then forget.
    public struct NewKey: Sendable {
        public var key: APIKey
        public var secret: String
    }

    /// A request authenticated by a key.
    public struct Authenticated: Sendable {
        public var user: User
        public var key: APIKey
        public var scopes: Set<APIScope> { self.key.scopeSet }
    }

    /// The expiry date for "expires in `days` days"; nil days means never.
    public static func expiry(days: Int?, from now: Date = Date()) throws(CreateError) -> Date? {
        guard let days else { return nil }
        guard (1...Self.maximumExpiryDays).contains(days) else { throw .invalidExpiry }
        return now.addingTimeInterval(TimeInterval(days) * 86400)
    }

    /// Makes a key for `user`. The returned `secret` is the only copy of the key there will be.
    public func create(for user: User, name rawName: String, scopes: Set<APIScope>, expiresAt: Date?, now: Date = Date()) async throws -> NewKey {
        let name = rawName.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw CreateError.nameMissing }
        guard name.count <= Self.maximumNameLength else { throw CreateError.nameTooLong }
        guard !scopes.isEmpty else { throw CreateError.noScopes }
        if let expiresAt, expiresAt <= now { throw CreateError.invalidExpiry }
        guard let userID = user.id, user.status == .active, user.isVerified else { throw CreateError.accountNotActive }

        // A prefix clash is about one in 10^12 per pair of keys; draw again rather than fail.
        for _ in 0..<3 {
            let (prefix, secret) = Self.generate()
            let key = APIKey(
                userID: userID,
                name: name,
                prefix: prefix,
                secretHash: Self.hash(secret),
                scopes: APIScope.list(scopes),
                createdAt: now,
                expiresAt: expiresAt
            )
            do {
                let stored = try await self.database.createAPIKey(key, activeLimit: self.maximumActiveKeys)
                return NewKey(key: stored, secret: secret)
            } catch APIKeyStoreError.prefixTaken {
                continue
            } catch APIKeyStoreError.tooManyKeys(let limit) {
                throw CreateError.tooManyKeys(limit: limit)
            }
        }
        throw APIKeyStoreError.prefixTaken
    }

    /// The key's owner and the key, or nil when the key is malformed, unknown, revoked or
    /// expired, or its owner is suspended. Notes the use (at most once a minute).
    public func authenticate(bearer: String, now: Date = Date()) async throws -> Authenticated? {
        guard let prefix = Self.prefix(of: bearer), let (key, user) = try await self.database.apiKey(prefix: prefix) else { return nil }
        guard Self.constantTimeEqual(Self.hash(bearer), key.secretHash), key.isActive(at: now), user.status == .active else {
            return nil
        }
        if key.lastUsedAt.map({ now.timeIntervalSince($0) >= 60 }) ?? true {
            try await self.database.touchAPIKey(id: key.id!, now: now)
        }
        return Authenticated(user: user, key: key)
    }

    public func keys(for user: User) async throws -> [APIKey] {
        try await self.database.apiKeys(userID: user.id!)
    }

    /// Revokes one of the user's keys at once; false when they have no such active key.
    public func revoke(keyID: Int64, for user: User, now: Date = Date()) async throws -> Bool {
        try await self.database.revokeAPIKey(id: keyID, userID: user.id!, now: now)
    }

    // MARK: Format

    static let idAlphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    static let secretAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

    /// A fresh (prefix, whole key) pair from the system's CSPRNG, each character drawn uniformly.
    static func generate() -> (prefix: String, key: String) {
        var generator = SystemRandomNumberGenerator()
        let id = String((0..<Self.idLength).map { _ in Self.idAlphabet.randomElement(using: &generator)! })
        let secret = String((0..<Self.secretLength).map { _ in Self.secretAlphabet.randomElement(using: &generator)! })
        let prefix = Self.keyPrefix + id
        return (prefix, prefix + "_" + secret)
    }

    /// "easel_ab12cd34" for a well-formed key, nil for anything else (which is never looked up).
    public static func prefix(of key: String) -> String? {
        let parts = key.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "easel",
            parts[1].count == Self.idLength, parts[1].allSatisfy({ Self.idAlphabet.contains($0) }),
            parts[2].count == Self.secretLength, parts[2].allSatisfy({ Self.secretAlphabet.contains($0) })
        else { return nil }
        return Self.keyPrefix + parts[1]
    }

    /// SHA-256 of the whole key: what the database keeps.
    public static func hash(_ key: String) -> Data {
        Data(SHA256.hash(data: Data(key.utf8)))
    }

    static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
