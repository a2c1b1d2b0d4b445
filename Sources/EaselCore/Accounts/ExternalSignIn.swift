import EaselIntegrations
import EaselStore
import Foundation
import Logging

/// What an identity from an OpenID Connect provider means here: sign in, link, or a new account.
public struct ExternalSignIn: Sendable {
    public enum Outcome: Sendable, Equatable {
        case signedIn(User)
        case linked(User)
        /// A new person: confirm age and terms before the account is made.
        case needsConsent(PendingAccount)
        /// Said to the person in their language (see `Refusal.key`).
        case refused(Refusal)
    }

    /// Why a provider's identity cannot sign in or make an account here.
    public enum Refusal: Sendable, Equatable {
        case linkedElsewhere
        case suspended
        case emailUnverified
        case emailTaken(String)
        case signupClosed
        case inviteOnly
        case domainNotAllowed

        /// The message catalog's text for it, and the text's placeholders.
        public var key: String {
            switch self {
            case .linkedElsewhere: "oidc.linked_elsewhere"
            case .suspended: "signin.error_suspended"
            case .emailUnverified: "oidc.email_unverified"
            case .emailTaken: "oidc.exists"
            case .signupClosed: "signup.error_closed"
            case .inviteOnly: "signup.error_invite_only"
            case .domainNotAllowed: "signup.error_domain"
            }
        }

        public var arguments: [String: String] {
            if case .emailTaken(let email) = self { return ["email": email] }
            return [:]
        }
    }

    /// A verified identity waiting for the person's consent, carried in a signed cookie.
    public struct PendingAccount: Codable, Sendable, Equatable {
        public var issuer: String
        public var subject: String
        public var email: String
        public var name: String
        /// The provider's `picture` claim, fetched once the account exists.
        public var pictureURL: URL?
    }

    /// What the browser keeps between leaving for the provider and coming back.
    public struct Started: Codable, Sendable {
        public var url: URL
        public var state: String
        public var nonce: String
        public var codeVerifier: String
    }

    public enum Failure: Error, CustomStringConvertible {
        /// The provider cannot be reached or set up (discovery, keys).
        case unavailable
        /// The provider's answer did not pass the checks (token exchange, ID token).
        case answerUnverified

        /// The message catalog's text for it.
        public var key: String {
            switch self {
            case .unavailable: "oidc.unavailable"
            case .answerUnverified: "oidc.answer_unverified"
            }
        }

        public var description: String {
            switch self {
            case .unavailable: "the provider is unavailable"
            case .answerUnverified: "the provider's answer could not be verified"
            }
        }
    }

    public let buttonLabel: String
    private let client: OIDCClient
    private let database: AppDatabase
    private let settings: AccountService.Settings
    /// Keeps the provider's picture of a new account; nil skips it.
    private let avatars: AvatarService?
    private let logger: Logger

    public init(
        buttonLabel: String, client: OIDCClient, database: AppDatabase, settings: AccountService.Settings, avatars: AvatarService? = nil, logger: Logger
    ) {
        self.buttonLabel = buttonLabel
        self.client = client
        self.database = database
        self.settings = settings
        self.avatars = avatars
        self.logger = logger
    }

    /// The provider's sign-in page, with fresh state, nonce and PKCE verifier.
    public func start() async throws(Failure) -> Started {
        do {
            let request = try await self.client.startAuthorization()
            return Started(url: request.url, state: request.state, nonce: request.nonce, codeVerifier: request.codeVerifier)
        } catch {
            self.logger.error("sign-in with the provider could not start", metadata: ["error": "\(error)"])
            throw .unavailable
        }
    }

    /// Exchanges the code and checks the ID token; the caller has already checked `state`.
    public func finish(code: String, started: Started) async throws(Failure) -> OIDCIdentity {
        do {
            return try await self.client.finishAuthorization(code: code, codeVerifier: started.codeVerifier, expectedNonce: started.nonce)
        } catch {
            self.logger.warning("sign-in with the provider failed", metadata: ["error": "\(error)"])
            throw .answerUnverified
        }
    }

    /// Links by (issuer, subject) only, never by email alone (SECURITY.md).
    public func complete(_ identity: OIDCIdentity, signedIn current: User?) async throws -> Outcome {
        if let current {
            do {
                try await self.database.linkIdentity(userID: current.id!, issuer: identity.issuer, subject: identity.subject, email: identity.email)
            } catch IdentityStoreError.linkedElsewhere {
                return .refused(.linkedElsewhere)
            }
            return .linked(current)
        }
        if let user = try await self.database.user(issuer: identity.issuer, subject: identity.subject) {
            guard user.status == .active else { return .refused(.suspended) }
            return .signedIn(user)
        }
        guard identity.emailVerified, let rawEmail = identity.email, let email = AccountService.normalizedEmail(rawEmail) else {
            return .refused(.emailUnverified)
        }
        if try await self.database.user(email: email) != nil {
            return .refused(.emailTaken(email))
        }
        switch self.settings.signup {
        case .closed: return .refused(.signupClosed)
        case .invite: return .refused(.inviteOnly)
        case .open: break
        }
        if !self.settings.allowedDomains.isEmpty, let domain = email.split(separator: "@").last, !self.settings.allowedDomains.contains(String(domain)) {
            return .refused(.domainNotAllowed)
        }
        // Only a plausible web address goes into the cookie; the fetcher checks it again.
        let picture = identity.pictureURL.flatMap { url in
            ["http", "https"].contains(url.scheme?.lowercased()) && url.absoluteString.utf8.count <= 2048 ? url : nil
        }
        return .needsConsent(
            PendingAccount(
                issuer: identity.issuer, subject: identity.subject, email: email, name: String((identity.name ?? "").prefix(80)), pictureURL: picture
            )
        )
    }

    /// Makes the account once the person confirmed their age and accepted the terms, then
    /// (outside any transaction) tries to keep the provider's picture as its avatar. Like an
    /// email sign-up, the profile keeps the language and theme the person was seeing.
    public func createAccount(_ pending: PendingAccount, language: Language, theme: User.Theme = .system) async throws -> User {
        let user = try await self.database.createAccount(
            NewAccount(
                email: pending.email, passwordHash: nil, displayName: pending.name, language: language.rawValue, theme: theme,
                termsVersion: self.settings.termsVersion, signupCredits: self.settings.signupCredits
            ),
            issuer: pending.issuer, subject: pending.subject
        )
        self.logger.info("account created from a provider identity", metadata: ["user": "\(user.id ?? 0)", "issuer": "\(pending.issuer)"])
        if let avatars = self.avatars, let url = pending.pictureURL, let id = user.id, await avatars.importPicture(userID: id, from: url) {
            return try await self.database.user(id: id) ?? user
        }
        return user
    }
}
