import Foundation
import GRDB

/// A published version of the Privacy Policy and Terms. A material one must be acknowledged
/// by everyone who accepted an earlier version.
public struct PolicyVersion: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "policy_version"

    public var version: String
    /// The "Last updated" date shown on the pages, as written in the configuration (2026-11-25).
    public var updatedOn: String
    public var material: Bool
    public var publishedAt: Date
    /// Notices queued when it was published (0 for a change that is not material).
    public var mailsQueued: Int

    public init(version: String, updatedOn: String, material: Bool, publishedAt: Date, mailsQueued: Int = 0) {
        self.version = version
        self.updatedOn = updatedOn
        self.material = material
        self.publishedAt = publishedAt
        self.mailsQueued = mailsQueued
    }

    enum CodingKeys: String, CodingKey {
        case version, material
        case updatedOn = "updated_on"
        case publishedAt = "published_at"
        case mailsQueued = "mails_queued"
    }

    /// Whether someone who accepted `acceptedVersion` at `acceptedAt` still has to acknowledge
    /// this version: only a material one, and only if they accepted before it was published.
    public func needsAcknowledgement(acceptedVersion: String, acceptedAt: Date) -> Bool {
        self.material && acceptedVersion != self.version && acceptedAt < self.publishedAt
    }
}

public enum PolicyPublishError: Error, Equatable {
    case alreadyPublished(String)
}

extension AppDatabase {
    static func createPolicyTables(_ db: Database) throws {
        try db.create(table: "policy_version") { t in
            t.primaryKey("version", .text)
            t.column("updated_on", .text).notNull()
            t.column("material", .boolean).notNull()
            t.column("published_at", .datetime).notNull()
            t.column("mails_queued", .integer).notNull().defaults(to: 0)
        }
        try db.create(index: "policy_version_material", on: "policy_version", columns: ["material", "published_at"])
    }

    /// Records `version` and, when it is material, queues `notice(person)` for every active
    /// person: verified, not suspended, not awaiting deletion. One transaction, so a version is
    /// never recorded without its notices, nor mailed twice.
    public func publishPolicy(
        version: String, updatedOn: String, material: Bool, now: Date = Date(),
        notice: @Sendable (User) -> MailDraft
    ) async throws -> PolicyVersion {
        try await self.writer.write { db in
            if try PolicyVersion.exists(db, key: version) { throw PolicyPublishError.alreadyPublished(version) }
            var record = PolicyVersion(version: version, updatedOn: updatedOn, material: material, publishedAt: now)
            if material {
                let people = try User.fetchAll(
                    db,
                    sql: """
                        SELECT user.* FROM user
                        LEFT JOIN account_privacy ON account_privacy.user_id = user.id
                        WHERE user.status = 'active' AND user.email_verified_at IS NOT NULL
                          AND account_privacy.deletion_requested_at IS NULL
                        ORDER BY user.id
                        """
                )
                for person in people { try Self.enqueue(notice(person), db: db, now: now) }
                record.mailsQueued = people.count
            }
            try record.insert(db)
            return record
        }
    }

    /// The newest material version, which everyone must have acknowledged.
    public func latestMaterialPolicy() async throws -> PolicyVersion? {
        try await self.writer.read { db in
            try PolicyVersion.filter(Column("material") == true).order(Column("published_at").desc).fetchOne(db)
        }
    }

    public func policyVersions() async throws -> [PolicyVersion] {
        try await self.writer.read { db in try PolicyVersion.order(Column("published_at").desc).fetchAll(db) }
    }

    /// Records that the person read and accepted `version` (the notice page's button).
    public func acknowledgePolicy(userID: Int64, version: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try User.filter(key: userID).updateAll(
                db, Column("terms_version").set(to: version), Column("terms_accepted_at").set(to: now), Column("updated_at").set(to: now)
            )
        }
    }
}
