import Foundation
import GRDB

/// A person's privacy choices and the state of a deletion they asked for.
public struct AccountPrivacy: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "account_privacy"

    public enum DeletionReason: String, Codable, Sendable {
        /// The person asked; signing in within the grace period cancels.
        case requested = "self"
        /// An admin purged an account reported as under age.
        case underAge = "under_age"
    }

    public var userID: Int64
    public var deletionRequestedAt: Date?
    public var deletionReason: DeletionReason?
    public var purgeStartedAt: Date?
    public var pseudonym: String?
    public var restrictedAt: Date?
    public var marketingOptInAt: Date?
    public var updatedAt: Date

    public var deletionPending: Bool { self.deletionRequestedAt != nil }
    public var restricted: Bool { self.restrictedAt != nil }
    public var marketingConsent: Bool { self.marketingOptInAt != nil }

    enum CodingKeys: String, CodingKey {
        case pseudonym
        case userID = "user_id"
        case deletionRequestedAt = "deletion_requested_at"
        case deletionReason = "deletion_reason"
        case purgeStartedAt = "purge_started_at"
        case restrictedAt = "restricted_at"
        case marketingOptInAt = "marketing_opt_in_at"
        case updatedAt = "updated_at"
    }
}

/// One entry of the data-request log (admin page, and the person's own download).
public struct DataRequest: Codable, Sendable, Equatable, Identifiable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "data_request"

    public enum Kind: String, Codable, Sendable, CaseIterable {
        case access, export
        case imagesDeleted = "images_deleted"
        case deletionRequested = "deletion_requested"
        case deletionCanceled = "deletion_canceled"
        case purged
        case underAgePurged = "under_age_purged"
        case restrictionOn = "restriction_on"
        case restrictionOff = "restriction_off"
        case marketingOptIn = "marketing_opt_in"
        case marketingOptOut = "marketing_opt_out"
        case analyticsOptOut = "analytics_opt_out"
        case analyticsOptIn = "analytics_opt_in"
    }

    public var id: Int64?
    public var userID: Int64?
    public var pseudonym: String?
    public var kind: Kind
    public var outcome: String
    public var actorID: Int64?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, pseudonym, kind, outcome
        case userID = "user_id"
        case actorID = "actor_id"
        case createdAt = "created_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        self.id = inserted.rowID
    }
}

/// A data request with the address of its person while the account exists.
public struct DataRequestEntry: Sendable, Equatable {
    public var request: DataRequest
    /// Nil once the account is purged: then `request.pseudonym` stands in.
    public var email: String?
}

public enum PrivacyStoreError: Error, Equatable, Sendable {
    /// Generation refused: the person restricted processing, or asked for their account to be deleted.
    case processingRestricted
    case noSuchAccount
    /// Admins cannot purge their own account from the admin pages.
    case notOnYourself
}

/// Who a purge is for, read when it begins (the mail needs the address before the row goes).
public struct PurgeTarget: Sendable, Equatable {
    public var userID: Int64
    public var email: String
    public var displayName: String
    public var language: String?
    public var pseudonym: String
    public var reason: AccountPrivacy.DeletionReason
}

extension AppDatabase {
    // MARK: Reading

    public func privacyState(userID: Int64) async throws -> AccountPrivacy? {
        try await self.writer.read { db in try AccountPrivacy.fetchOne(db, key: userID) }
    }

    /// The state, or the defaults of an account that never changed a privacy setting.
    static func privacyState(_ db: Database, userID: Int64, now: Date) throws -> AccountPrivacy {
        try AccountPrivacy.fetchOne(db, key: userID)
            ?? AccountPrivacy(
                userID: userID, deletionRequestedAt: nil, deletionReason: nil, purgeStartedAt: nil, pseudonym: nil, restrictedAt: nil,
                marketingOptInAt: nil, updatedAt: now
            )
    }

    /// Admins who can still sign in: active, and not awaiting deletion.
    public func activeAdminCount() async throws -> Int {
        try await self.writer.read { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM user LEFT JOIN account_privacy ON account_privacy.user_id = user.id
                    WHERE user.role = 'admin' AND user.status = 'active' AND account_privacy.deletion_requested_at IS NULL
                    """
            ) ?? 0
        }
    }

    /// Inside submit's transaction: refuses generation while processing is restricted or the
    /// account awaits deletion.
    static func refuseIfProcessingRestricted(_ db: Database, userID: Int64) throws {
        let blocked = try Bool.fetchOne(
            db, sql: "SELECT restricted_at IS NOT NULL OR deletion_requested_at IS NOT NULL FROM account_privacy WHERE user_id = ?", arguments: [userID]
        )
        if blocked == true { throw PrivacyStoreError.processingRestricted }
    }

    /// Cancels and refunds every unfinished task of the person; returns their ids.
    static func cancelUnfinishedTasks(_ db: Database, userID: Int64, message: String, now: Date) throws -> [Int64] {
        let tasks = try GenerationTask.filter(GenerationTask.Columns.userID == userID)
            .filter([GenerationTask.Status.queued.rawValue, GenerationTask.Status.running.rawValue].contains(GenerationTask.Columns.status))
            .fetchAll(db)
        for task in tasks {
            _ = try Self.finishUnsuccessfully(db, task: task, status: .canceled, code: "canceled", message: message, now: now)
        }
        return tasks.compactMap(\.id)
    }

    static func insertDataRequest(_ db: Database, userID: Int64?, pseudonym: String? = nil, kind: DataRequest.Kind, outcome: String, actorID: Int64? = nil, now: Date) throws {
        var row = DataRequest(id: nil, userID: userID, pseudonym: pseudonym, kind: kind, outcome: String(outcome.prefix(500)), actorID: actorID, createdAt: now)
        try row.insert(db)
    }

    // MARK: The data-request log

    /// Records a data request and its outcome (downloads, exports); the export job calls this too.
    public func recordDataRequest(userID: Int64, kind: DataRequest.Kind, outcome: String, now: Date = Date()) async throws {
        try await self.writer.write { db in
            try Self.insertDataRequest(db, userID: userID, kind: kind, outcome: outcome, now: now)
        }
    }

    /// Newest first, keyset-paged by id, with each person's address while the account exists.
    public func dataRequests(before: Int64? = nil, limit: Int = 100) async throws -> [DataRequestEntry] {
        try await self.writer.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT data_request.*, user.email AS person_email FROM data_request LEFT JOIN user ON user.id = data_request.user_id
                    WHERE data_request.id < ? ORDER BY data_request.id DESC LIMIT ?
                    """,
                arguments: [before ?? Int64.max, limit]
            )
            return try rows.map { DataRequestEntry(request: try DataRequest(row: $0), email: $0["person_email"]) }
        }
    }

    public func dataRequests(userID: Int64, limit: Int = 50) async throws -> [DataRequest] {
        try await self.writer.read { db in
            try DataRequest.filter(Column("user_id") == userID).order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    // MARK: Deletion

    /// Marks the account for deletion (kept if already marked), signs the person out
    /// everywhere, revokes their API keys, cancels and refunds unfinished tasks, logs the request
    /// and queues the confirmation mail: one transaction. Returns when the request was made.
    public func requestAccountDeletion(userID: Int64, mail: MailDraft, outcome: String, now: Date = Date()) async throws -> Date {
        try await self.writer.write { db in
            guard try User.exists(db, key: userID) else { throw PrivacyStoreError.noSuchAccount }
            var state = try Self.privacyState(db, userID: userID, now: now)
            if state.deletionRequestedAt == nil {
                state.deletionRequestedAt = now
                state.deletionReason = .requested
                state.updatedAt = now
                try state.save(db)
                try Self.insertDataRequest(db, userID: userID, kind: .deletionRequested, outcome: outcome, now: now)
                try Self.enqueue(mail, db: db, now: now)
            }
            try Self.withdrawAccess(db, userID: userID, now: now)
            return state.deletionRequestedAt!
        }
    }

    /// Sessions gone, API keys revoked, unfinished tasks canceled and refunded.
    static func withdrawAccess(_ db: Database, userID: Int64, now: Date) throws {
        try Session.filter(Column("user_id") == userID).deleteAll(db)
        try APIKey.filter(APIKey.Columns.userID == userID).filter(APIKey.Columns.revokedAt == nil).updateAll(db, APIKey.Columns.revokedAt.set(to: now))
        _ = try Self.cancelUnfinishedTasks(db, userID: userID, message: "Canceled: the account is being deleted.", now: now)
    }

    /// Cancels a deletion the person asked for, while its purge has not begun. False when there
    /// was nothing to cancel.
    public func cancelAccountDeletion(userID: Int64, mail: MailDraft, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE account_privacy SET deletion_requested_at = NULL, deletion_reason = NULL, updated_at = ?
                    WHERE user_id = ? AND deletion_requested_at IS NOT NULL AND deletion_reason = 'self' AND purge_started_at IS NULL
                    """,
                arguments: [now, userID]
            )
            guard db.changesCount == 1 else { return false }
            try Self.insertDataRequest(db, userID: userID, kind: .deletionCanceled, outcome: "canceled by signing in", now: now)
            try Self.enqueue(mail, db: db, now: now)
            return true
        }
    }

    /// An admin marks an account reported as under age for an immediate purge.
    public func flagUnderAge(userID: Int64, by adminID: Int64, now: Date = Date()) async throws {
        try await self.writer.write { db in
            guard userID != adminID else { throw PrivacyStoreError.notOnYourself }
            guard try User.exists(db, key: userID) else { throw PrivacyStoreError.noSuchAccount }
            var state = try Self.privacyState(db, userID: userID, now: now)
            state.deletionRequestedAt = state.deletionRequestedAt ?? now
            state.deletionReason = .underAge
            state.updatedAt = now
            try state.save(db)
            try Self.withdrawAccess(db, userID: userID, now: now)
        }
    }

    /// Accounts whose deletion was requested before `requestedBefore`, or whose purge began and
    /// did not finish, or that were flagged as under age.
    public func accountsDueForPurge(requestedBefore: Date) async throws -> [Int64] {
        try await self.writer.read { db in
            try Int64.fetchAll(
                db,
                sql: """
                    SELECT user_id FROM account_privacy WHERE deletion_requested_at IS NOT NULL
                    AND (deletion_requested_at <= ? OR purge_started_at IS NOT NULL OR deletion_reason = 'under_age') ORDER BY user_id
                    """,
                arguments: [requestedBefore]
            )
        }
    }

    /// Marks the purge begun (once: from then on signing in cannot cancel), chooses the
    /// pseudonym, and withdraws access again. Nil when the account is gone or not marked.
    public func beginPurge(userID: Int64, newPseudonym: String, now: Date = Date()) async throws -> PurgeTarget? {
        try await self.writer.write { db in
            guard let user = try User.fetchOne(db, key: userID), var state = try AccountPrivacy.fetchOne(db, key: userID),
                let reason = state.deletionReason
            else { return nil }
            if state.purgeStartedAt == nil { state.purgeStartedAt = now }
            if state.pseudonym == nil { state.pseudonym = newPseudonym }
            state.updatedAt = now
            try state.update(db)
            try Self.withdrawAccess(db, userID: userID, now: now)
            return PurgeTarget(
                userID: userID, email: user.email, displayName: user.displayName, language: user.language, pseudonym: state.pseudonym!, reason: reason
            )
        }
    }

    /// Tables whose rows outlive the person: payments and subscriptions (pseudonymised for the
    /// tax retention period) and the data-request log (under the pseudonym).
    static let keptAfterPurge: Set<String> = ["payment", "subscription", "data_request"]

    /// The last step of a purge, after the blobs are gone: every row about the person, then the
    /// account itself, in one transaction; the data-request log keeps a pseudonymous entry and
    /// the goodbye mail is queued to the address (the outbox sweep removes it once sent).
    public func finishPurge(_ target: PurgeTarget, mail: MailDraft?, actorID: Int64? = nil, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            guard try User.exists(db, key: target.userID) else { return false }
            let id = target.userID
            let email = target.email.lowercased()
            try db.execute(sql: "UPDATE data_request SET pseudonym = ? WHERE user_id = ?", arguments: [target.pseudonym, id])
            try db.execute(sql: "UPDATE payment SET user_id = NULL, pseudonym = ?, updated_at = ? WHERE user_id = ?", arguments: [target.pseudonym, now, id])
            try db.execute(sql: "UPDATE subscription SET user_id = NULL, updated_at = ? WHERE user_id = ?", arguments: [now, id])
            // Mail to the address, and mail that names it (an invitation sent on their behalf);
            // mail to earlier addresses goes with the other user_id rows below.
            try db.execute(sql: "DELETE FROM mail_outbox WHERE lower(to_email) = ? OR instr(lower(text_body), ?) > 0", arguments: [email, email])
            try db.execute(sql: "DELETE FROM login_failure WHERE lower(email) = ?", arguments: [email])
            try db.execute(sql: "DELETE FROM invitation WHERE lower(email) = ?", arguments: [email])
            try db.execute(sql: "DELETE FROM email_token WHERE lower(new_email) = ?", arguments: [email])
            // Ledger rows before tasks (a task's deletion would null their task_id), task
            // references before uploads (their foreign key is RESTRICT).
            try db.execute(sql: "DELETE FROM credit_ledger WHERE user_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM task_reference WHERE task_id IN (SELECT id FROM generation_task WHERE user_id = ?)", arguments: [id])
            try db.execute(sql: "DELETE FROM image WHERE user_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM generation_task WHERE user_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM upload WHERE user_id = ?", arguments: [id])
            // Any other table with a user_id column (added by later features), cascade or not.
            for table in try Self.tablesWithUserIDColumn(db) where !Self.keptAfterPurge.contains(table) && table != "account_privacy" {
                try db.execute(sql: "DELETE FROM \(table.quotedDatabaseIdentifier) WHERE user_id = ?", arguments: [id])
            }
            try db.execute(sql: "DELETE FROM user WHERE id = ?", arguments: [id])
            let kind: DataRequest.Kind = target.reason == .underAge ? .underAgePurged : .purged
            try Self.insertDataRequest(db, userID: nil, pseudonym: target.pseudonym, kind: kind, outcome: "completed", actorID: actorID, now: now)
            if let mail { try Self.enqueue(mail, db: db, now: now) }
            return true
        }
    }

    static func tablesWithUserIDColumn(_ db: Database) throws -> [String] {
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'")
        return try tables.filter { table in try db.columns(in: table).contains { $0.name == "user_id" } }
    }

    // MARK: Restriction and consent

    /// Turns "restrict processing" on or off; on cancels and refunds unfinished tasks. Returns
    /// the ids of the canceled tasks, or nil when nothing changed.
    public func setProcessingRestricted(userID: Int64, _ restricted: Bool, now: Date = Date()) async throws -> [Int64]? {
        try await self.writer.write { db in
            var state = try Self.privacyState(db, userID: userID, now: now)
            guard state.restricted != restricted else { return nil }
            state.restrictedAt = restricted ? now : nil
            state.updatedAt = now
            try state.save(db)
            var canceled: [Int64] = []
            if restricted {
                canceled = try Self.cancelUnfinishedTasks(db, userID: userID, message: "Canceled: processing is restricted on this account.", now: now)
            }
            let outcome = restricted ? (canceled.isEmpty ? "on" : "on; \(canceled.count) unfinished task(s) canceled and refunded") : "off"
            try Self.insertDataRequest(db, userID: userID, kind: restricted ? .restrictionOn : .restrictionOff, outcome: outcome, now: now)
            return canceled
        }
    }

    /// Opts in to (or withdraws from) marketing mail; false when nothing changed.
    @discardableResult
    public func setMarketingConsent(userID: Int64, _ optIn: Bool, via: String, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            guard try User.exists(db, key: userID) else { return false }
            var state = try Self.privacyState(db, userID: userID, now: now)
            guard state.marketingConsent != optIn else { return false }
            state.marketingOptInAt = optIn ? now : nil
            state.updatedAt = now
            try state.save(db)
            try Self.insertDataRequest(db, userID: userID, kind: optIn ? .marketingOptIn : .marketingOptOut, outcome: via, now: now)
            return true
        }
    }

    /// Queues a non-essential mail only when the person allows it: not restricted, not awaiting
    /// deletion, and (for marketing) opted in. Checked in the same transaction as the queueing.
    @discardableResult
    public func queueNonEssentialMail(_ mail: MailDraft, userID: Int64, marketing: Bool, now: Date = Date()) async throws -> Bool {
        try await self.writer.write { db in
            guard try User.exists(db, key: userID) else { return false }
            let state = try Self.privacyState(db, userID: userID, now: now)
            guard !state.restricted, !state.deletionPending, !marketing || state.marketingConsent else { return false }
            try Self.enqueue(mail, db: db, now: now)
            return true
        }
    }

    // MARK: Images

    /// Removes every image row of the person and the uploads no unfinished task still needs,
    /// logs it, and returns the blob keys to delete (the caller deletes them after the commit).
    public func deleteAllImages(userID: Int64, now: Date = Date()) async throws -> [String] {
        try await self.writer.write { db in
            var keys = try String.fetchAll(db, sql: "SELECT blob_key FROM image WHERE user_id = ? UNION ALL SELECT thumb_key FROM image WHERE user_id = ?", arguments: [userID, userID])
            let images = try StoredImage.filter(StoredImage.Columns.userID == userID).deleteAll(db)
            try db.execute(
                sql: "DELETE FROM task_reference WHERE task_id IN (SELECT id FROM generation_task WHERE user_id = ? AND status IN ('succeeded', 'failed', 'canceled'))",
                arguments: [userID]
            )
            let unused = "user_id = ? AND id NOT IN (SELECT upload_id FROM task_reference)"
            keys += try String.fetchAll(db, sql: "SELECT blob_key FROM upload WHERE \(unused)", arguments: [userID])
            try db.execute(sql: "DELETE FROM upload WHERE \(unused)", arguments: [userID])
            let uploads = db.changesCount
            try Self.insertDataRequest(db, userID: userID, kind: .imagesDeleted, outcome: "\(images) image(s) and \(uploads) reference upload(s) deleted", now: now)
            return keys
        }
    }

    // MARK: Retention

    /// Every blob key a row refers to under images/, uploads/ and avatars/ (the blob sweep
    /// removes the others there after a grace period).
    public func referencedBlobKeys() async throws -> Set<String> {
        var keys = try await self.referencedGenerationBlobKeys()
        keys.formUnion(try await self.writer.read { db in try String.fetchAll(db, sql: "SELECT avatar_key FROM user WHERE avatar_key IS NOT NULL") })
        return keys
    }

    /// Used tokens a day after use and expired ones; returns how many went.
    @discardableResult
    public func deleteSpentEmailTokens(now: Date = Date()) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(sql: "DELETE FROM email_token WHERE expires_at < ? OR used_at < ?", arguments: [now, now.addingTimeInterval(-86400)])
            return db.changesCount
        }
    }

    /// Invitations a week after they expired or were used (admins see them meanwhile).
    @discardableResult
    public func deleteSpentInvitations(now: Date = Date()) async throws -> Int {
        try await self.writer.write { db in
            let limit = now.addingTimeInterval(-7 * 86400)
            try db.execute(sql: "DELETE FROM invitation WHERE expires_at < ? OR used_at < ?", arguments: [limit, limit])
            return db.changesCount
        }
    }

    /// Sent and failed mail queued before `before`, and every goodbye mail of a purged account
    /// once it was sent (or given up): the outbox keeps no address of a purged person.
    @discardableResult
    public func deleteFinishedMail(queuedBefore before: Date, purgeMailKind: String) async throws -> Int {
        try await self.writer.write { db in
            try db.execute(
                sql: "DELETE FROM mail_outbox WHERE status IN ('sent', 'failed') AND (created_at < ? OR kind = ?)",
                arguments: [before, purgeMailKind]
            )
            return db.changesCount
        }
    }

    // MARK: Access report

    /// One section of the "Download my data" file: a query naming every column it shows, so
    /// password hashes, token hashes, TOTP secrets and key hashes can never slip in.
    public struct AccessSection: Sendable {
        public var name: String
        /// One object rather than a list.
        public var single: Bool
        /// Paged by `id`: the query takes (user, after id, limit).
        public var paged: Bool
        var sql: String
    }

    public static let accessSections: [AccessSection] = [
        AccessSection(
            name: "account", single: true, paged: false,
            sql: """
                SELECT id, email, email_verified_at, display_name, role, status, language, theme,
                  password_hash IS NOT NULL AS has_password, avatar_key IS NOT NULL AS has_avatar,
                  totp_enabled_at IS NOT NULL AS two_factor_enabled, totp_enabled_at AS two_factor_enabled_at, created_at, updated_at
                FROM user WHERE id = ?
                """
        ),
        AccessSection(
            name: "consents", single: true, paged: false,
            sql: """
                SELECT user.age_confirmed_at, user.terms_version, user.terms_accepted_at,
                  account_privacy.marketing_opt_in_at IS NOT NULL AS marketing_mail, account_privacy.marketing_opt_in_at,
                  account_privacy.restricted_at IS NOT NULL AS processing_restricted, account_privacy.restricted_at,
                  account_privacy.deletion_requested_at
                FROM user LEFT JOIN account_privacy ON account_privacy.user_id = user.id WHERE user.id = ?
                """
        ),
        AccessSection(name: "identities", single: false, paged: false, sql: "SELECT issuer, subject, email, created_at FROM identity WHERE user_id = ? ORDER BY id"),
        AccessSection(
            name: "sessions", single: false, paged: false,
            sql: "SELECT user_agent AS device, ip, country, created_at, last_seen_at, expires_at FROM session WHERE user_id = ? ORDER BY id"
        ),
        AccessSection(name: "known_devices", single: false, paged: false, sql: "SELECT first_seen_at FROM known_device WHERE user_id = ? ORDER BY first_seen_at"),
        AccessSection(
            name: "api_keys", single: false, paged: false,
            sql: "SELECT name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at FROM api_key WHERE user_id = ? ORDER BY id"
        ),
        AccessSection(
            name: "tasks", single: false, paged: true,
            sql: """
                SELECT id, status, provider, model, prompt, size, quality, count, reference_count, credits_reserved, credits_charged,
                  credits_refunded, failure_code, failure_message, created_at, started_at, finished_at
                FROM generation_task WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?
                """
        ),
        AccessSection(
            name: "images", single: false, paged: true,
            sql: """
                SELECT id, task_id, result_index, format, width, height, bytes, sha256, provider, model, quality, size, prompt, created_at
                FROM image WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?
                """
        ),
        AccessSection(
            name: "reference_uploads", single: false, paged: true,
            sql: "SELECT id, format, width, height, bytes, sha256, created_at FROM upload WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?"
        ),
        AccessSection(
            name: "credit_ledger", single: false, paged: true,
            sql: "SELECT id, kind, amount, balance_after, task_id, payment_ref, reason, created_at FROM credit_ledger WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?"
        ),
        AccessSection(
            name: "payments", single: false, paged: false,
            sql: """
                SELECT id, kind, product_id, amount, currency, status, card_last4, billing_country, credits, amount_refunded,
                  amount_refunded_outside, period_start, period_end, created_at, paid_at
                FROM payment WHERE user_id = ? ORDER BY id
                """
        ),
        AccessSection(
            name: "subscriptions", single: false, paged: false,
            sql: "SELECT plan_id, status, cancel_at_period_end, current_period_end, created_at, updated_at FROM subscription WHERE user_id = ? ORDER BY created_at"
        ),
        AccessSection(
            name: "mails", single: false, paged: false,
            sql: "SELECT kind, to_email, subject, status, created_at, sent_at FROM mail_outbox WHERE user_id = ? ORDER BY id"
        ),
        AccessSection(name: "data_requests", single: false, paged: false, sql: "SELECT kind, outcome, created_at FROM data_request WHERE user_id = ? ORDER BY id"),
    ]

    /// Rows of one section as JSON objects; `after` and `limit` page the paged ones by id.
    /// Returns the objects and the last id seen (nil when the section is done).
    public func accessRows(_ section: AccessSection, userID: Int64, after: Int64 = 0, limit: Int = 500) async throws -> (objects: [String], lastID: Int64?) {
        try await self.writer.read { db in
            let arguments: StatementArguments = section.paged ? [userID, after, limit] : [userID]
            let rows = try Row.fetchAll(db, sql: section.sql, arguments: arguments)
            let objects = rows.map(Self.jsonObject)
            let lastID: Int64? = section.paged && rows.count == limit ? rows.last?["id"] : nil
            return (objects, lastID)
        }
    }

    /// The person's settings that other features keep in their own columns (analytics opt-out,
    /// say): every `*_opt_out` column of `user`, as a JSON object.
    public func accountOptOuts(userID: Int64) async throws -> String {
        try await self.writer.read { db in
            let columns = try db.columns(in: "user").map(\.name).filter { $0.hasSuffix("_opt_out") }
            guard !columns.isEmpty else { return "{}" }
            let sql = "SELECT \(columns.map(\.quotedDatabaseIdentifier).joined(separator: ", ")) FROM user WHERE id = ?"
            return try Row.fetchOne(db, sql: sql, arguments: [userID]).map(Self.jsonObject) ?? "{}"
        }
    }

    static func jsonObject(_ row: Row) -> String {
        var fields: [String] = []
        for (column, value) in row {
            fields.append(Self.jsonString(column) + ":" + Self.json(value, column: column))
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func json(_ value: DatabaseValue, column: String) -> String {
        switch value.storage {
        case .null: return "null"
        case .int64(let number):
            // SQLite has no booleans: columns named as questions hold 0 or 1.
            if column.hasPrefix("has_") || column.hasSuffix("_enabled") || column == "processing_restricted" || column == "marketing_mail"
                || column == "cancel_at_period_end" || column.hasSuffix("_opt_out")
            {
                return number == 0 ? "false" : "true"
            }
            return String(number)
        case .double(let number): return number.isFinite ? String(number) : "null"
        case .string(let text): return Self.jsonString(Self.isoDate(text) ?? text)
        case .blob: return "null"
        }
    }

    /// GRDB's "2026-11-28 10:00:00.000" (UTC) as ISO 8601, else nil.
    static func isoDate(_ text: String) -> String? {
        guard text.count >= 19, text.count <= 23 else { return nil }
        let scalars = Array(text.unicodeScalars)
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        guard scalars[4] == "-", scalars[7] == "-", scalars[10] == " ", scalars[13] == ":", scalars[16] == ":",
            digits.allSatisfy({ ("0"..."9").contains(scalars[$0]) })
        else { return nil }
        return String(String.UnicodeScalarView(scalars[0..<10])) + "T" + String(String.UnicodeScalarView(scalars[11...])) + "Z"
    }

    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<": out += "\\u003c"
            default:
                if scalar.value < 0x20 || scalar == "\u{2028}" || scalar == "\u{2029}" {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
