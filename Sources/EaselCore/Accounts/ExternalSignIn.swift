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
        /// Said to the person as it is.
        case refused(String)
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
        case provider(String)
        public var description: String {
            switch self {
            case .provider(let message): message
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
            throw .provider("Signing in with your provider is not working right now. Try again in a moment, or sign in with your password.")
        }
    }

    /// Exchanges the code and checks the ID token; the caller has already checked `state`.
    public func finish(code: String, started: Started) async throws(Failure) -> OIDCIdentity {
        do {
            return try await self.client.finishAuthorization(code: code, codeVerifier: started.codeVerifier, expectedNonce: started.nonce)
        } catch {
            self.logger.warning("sign-in with the provider failed", metadata: ["error": "\(error)"])
            throw .provider("Your provider's answer could not be verified, so you were not signed in. Please try again.")
        }
    }

    /// Links by (issuer, subject) only, never by email alone (SECURITY.md).
    public func complete(_ identity: OIDCIdentity, signedIn current: User?) async throws -> Outcome {
        if let current {
            do {
                try await self.database.linkIdentity(userID: current.id!, issuer: identity.issuer, subject: identity.subject, email: identity.email)
            } catch IdentityStoreError.linkedElsewhere {
                return .refused("That account at your provider is already connected to another account here.")
            }
            return .linked(current)
        }
        if let user = try await self.database.user(issuer: identity.issuer, subject: identity.subject) {
            guard user.status == .active else { return .refused("This account is suspended. Contact the administrator of this server.") }
            return .signedIn(user)
        }
        guard identity.emailVerified, let rawEmail = identity.email, let email = AccountService.normalizedEmail(rawEmail) else {
            return .refused("Your provider did not confirm your email address, so it cannot be used to create an account here. Confirm it there, or sign up with a password.")
        }
        if try await self.database.user(email: email) != nil {
            return .refused("An account with \(email) already exists. Sign in with your password, then connect your provider from your account page.")
        }
        switch self.settings.signup {
        case .closed: return .refused("Sign-up is closed on this server. Ask its administrator for an account.")
        case .invite: return .refused("This server is invitation-only. Ask its administrator for an invitation.")
        case .open: break
        }
        if !self.settings.allowedDomains.isEmpty, let domain = email.split(separator: "@").last, !self.settings.allowedDomains.contains(String(domain)) {
            return .refused("Sign-up is limited to certain email domains on this server.")
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
    /// (outside any transaction) tries to keep the provider's picture as its avatar.
    public func createAccount(_ pending: PendingAccount) async throws -> User {
        let user = try await self.database.createAccount(
            NewAccount(
                email: pending.email, passwordHash: nil, displayName: pending.name, language: nil, termsVersion: self.settings.termsVersion,
                signupCredits: self.settings.signupCredits
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
