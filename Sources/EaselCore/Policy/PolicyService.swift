import EaselStore
import Foundation

/// Policy versions: publishing one (material changes mail every active person and must be
/// acknowledged at their next page view) and recording the acknowledgement.
public struct PolicyService: Sendable {
    public enum PublishError: Error, Equatable, CustomStringConvertible {
        /// The pages show the configured version: publish that one, or change the setting first.
        case notConfigured(requested: String, configured: String)
        case alreadyPublished(String)

        public var description: String {
            switch self {
            case .notConfigured(let requested, let configured):
                "the pages show version \(configured) (EASEL_POLICY_VERSION): set EASEL_POLICY_VERSION=\(requested) and EASEL_POLICY_UPDATED, restart, then publish"
            case .alreadyPublished(let version): "version \(version) is already published"
            }
        }
    }

    public let facts: PolicyFacts
    /// EASEL_POLICY_DIR: the operator's own policy-privacy.mustache and policy-terms.mustache,
    /// read on each request in place of the shipped ones; nil uses the shipped ones.
    public let templateFolder: URL?
    let database: AppDatabase
    let mails: AccountMails

    public init(facts: PolicyFacts, templateFolder: URL? = nil, database: AppDatabase, mails: AccountMails) {
        self.facts = facts
        self.templateFolder = templateFolder
        self.database = database
        self.mails = mails
    }

    /// Records the configured version; a material one queues the notice mail for every active
    /// person, in their language, in the same transaction.
    public func publish(version: String? = nil, material: Bool, now: Date = Date()) async throws -> PolicyVersion {
        let version = version ?? self.facts.version
        guard version == self.facts.version else { throw PublishError.notConfigured(requested: version, configured: self.facts.version) }
        do {
            return try await self.database.publishPolicy(version: version, updatedOn: self.facts.updatedOn, material: material, now: now) {
                [mails, facts] person in
                mails.policyChanged(to: person.email, name: person.displayName, version: facts.version, updatedOn: facts.updatedOn, language: person.preferredLanguage)
            }
        } catch PolicyPublishError.alreadyPublished(let version) {
            throw PublishError.alreadyPublished(version)
        }
    }

    /// Every published version, newest first.
    public func publishedVersions() async throws -> [PolicyVersion] {
        try await self.database.policyVersions()
    }

    /// The material version this person has not acknowledged yet, if any.
    public func pendingNotice(for user: User) async throws -> PolicyVersion? {
        guard let latest = try await self.database.latestMaterialPolicy() else { return nil }
        return latest.needsAcknowledgement(acceptedVersion: user.termsVersion, acceptedAt: user.termsAcceptedAt) ? latest : nil
    }

    /// The person read the current pages and accepts them.
    public func acknowledge(userID: Int64, now: Date = Date()) async throws {
        try await self.database.acknowledgePolicy(userID: userID, version: self.facts.version, now: now)
    }
}

extension AccountMails {
    public static let policyChangedKind = "policy_changed"

    /// A transactional notice (not marketing): sent even to people who restricted processing.
    public func policyChanged(to email: String, name: String?, version: String, updatedOn: String, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: Self.policyChangedKind, name: "policy_changed", to: (email, name), language: language,
            arguments: ["version": version, "date": updatedOn], paragraphs: ["p1", "p2", "p3"],
            action: ("mail.policy_changed.action", "\(self.publicURL.absoluteString)/privacy")
        )
    }
}
