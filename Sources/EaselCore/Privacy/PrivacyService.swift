import EaselBlobs
import EaselStore
import Foundation
import Logging
import NIOCore

/// Self-service data rights (Settings → Privacy): the access download, deleting all images,
/// deleting the account with its grace period, restricting processing, marketing consent and
/// its one-click unsubscribe; and the purge that ends a deletion, for the scheduler and admins.
public struct PrivacyService: Sendable {
    public struct Settings: Sendable {
        /// Days between a deletion request and the purge (EASEL_ACCOUNT_PURGE_DAYS).
        public var purgeDays: Int
        /// How old an unreferenced blob must be before the sweep removes it.
        public var orphanGrace: TimeInterval
        /// Sent and failed mail older than this leaves the outbox.
        public var mailRetention: TimeInterval
        /// How recent a sign-in must be to stand in for a password (accounts without one).
        public var recentSignIn: TimeInterval

        public init(purgeDays: Int = 30, orphanGrace: TimeInterval = 86400, mailRetention: TimeInterval = 30 * 86400, recentSignIn: TimeInterval = 600) {
            self.purgeDays = purgeDays
            self.orphanGrace = orphanGrace
            self.mailRetention = mailRetention
            self.recentSignIn = recentSignIn
        }

        public var purgeDelay: TimeInterval { TimeInterval(self.purgeDays) * 86400 }
    }

    /// Prefixes the blob sweep looks under; everything else (backups/, exports/, …) has its own
    /// retention and is never touched by it.
    public static let sweptPrefixes = ["images/", "uploads/", "avatars/"]

    /// The folders whose objects belong to one person, named in the key's second part
    /// (images/u<id>/t<task>/…, uploads/u<id>/…, avatars/u<id>/…, exports/u<id>/…): the purge
    /// deletes them all, and they are encrypted under the person's data key.
    public static let personalFolders = ["images", "uploads", "avatars", "exports"]

    public static func personalBlobPrefixes(userID: Int64) -> [String] {
        Self.personalFolders.map { "\($0)/u\(userID)/" }
    }

    public let settings: Settings
    private let database: AppDatabase
    private let blobs: any BlobStore
    /// Destroyed first in a purge, so copies of the person's objects elsewhere stay unreadable.
    private let dataKeys: DataKeys
    private let mails: AccountMails
    private let unsubscribeSigner: SignedValue
    private let logger: Logger

    /// `unsubscribeSigner` signs the tokens of unsubscribe links (purpose "easel unsubscribe v1").
    public init(
        settings: Settings, database: AppDatabase, blobs: any BlobStore, dataKeys: DataKeys, mails: AccountMails, unsubscribeSigner: SignedValue,
        logger: Logger
    ) {
        self.settings = settings
        self.database = database
        self.blobs = blobs
        self.dataKeys = dataKeys
        self.mails = mails
        self.unsubscribeSigner = unsubscribeSigner
        self.logger = logger
    }

    public func state(userID: Int64) async throws -> AccountPrivacy? {
        try await self.database.privacyState(userID: userID)
    }

    /// When a requested deletion becomes a purge.
    public func purgeDate(requestedAt: Date) -> Date {
        requestedAt.addingTimeInterval(self.settings.purgeDelay)
    }

    // MARK: Access

    /// The person's data as one JSON document, produced section by section (long lists a page
    /// at a time) as the client reads it, so a large account never sits in memory whole, even
    /// for a slow client. Logged as a data request.
    public func accessReport(userID: Int64, now: Date = Date()) async throws -> BlobByteStream {
        try await self.database.recordDataRequest(userID: userID, kind: .access, outcome: "downloaded", now: now)
        let reader = AccessReportReader(database: self.database, userID: userID, generatedAt: now, logger: self.logger)
        return AsyncThrowingStream(unfolding: { try await reader.next() })
    }

    // MARK: Images

    /// Deletes every image (original and thumbnail) and every reference upload no unfinished
    /// task needs: rows first, then the files at once. Returns how many files were removed.
    @discardableResult
    public func deleteAllImages(userID: Int64, now: Date = Date()) async throws -> Int {
        let keys = try await self.database.deleteAllImages(userID: userID, now: now)
        var removed = 0
        for key in keys {
            do {
                try await self.blobs.delete(BlobKey(key))
                removed += 1
            } catch {
                // The row is gone: the blob sweep removes what is left after its grace period.
                self.logger.warning("could not delete blob \(key): \(error)")
            }
        }
        return removed
    }

    // MARK: Deletion

    public enum DeletionError: Error, Equatable {
        /// The typed address is not the account's.
        case emailMismatch
        case wrongPassword
        /// Two-factor sign-in is on: the code is needed too.
        case wrongCode
        /// An account without a password must have signed in within the last few minutes.
        case signInAgain
        /// Too many wrong passwords: wait.
        case throttled(retryAfter: Int)
        /// The last admin cannot leave: the instance would have none.
        case lastAdmin
        /// A subscription would go on charging: cancel it in the billing portal first.
        case activeSubscription
    }

    /// What the person proved on the deletion form.
    public struct Reauthentication: Sendable {
        public var typedEmail: String
        /// Checked by the caller (AccountService.signIn, so failures are throttled); nil when
        /// the account has no password.
        public var passwordOK: Bool?
        /// Checked by the caller when two-factor sign-in is on; nil otherwise.
        public var codeOK: Bool?
        /// When the current session signed in.
        public var signedInAt: Date

        public init(typedEmail: String, passwordOK: Bool?, codeOK: Bool?, signedInAt: Date) {
            self.typedEmail = typedEmail
            self.passwordOK = passwordOK
            self.codeOK = codeOK
            self.signedInAt = signedInAt
        }
    }

    /// Checks the re-authentication: the typed address always; the password when the account
    /// has one, else a sign-in (through the identity provider, with two-factor if on) in the
    /// last ten minutes; and the two-factor code when it is on and a password was used.
    public func check(_ proof: Reauthentication, user: User, now: Date = Date()) throws(DeletionError) {
        guard proof.typedEmail.trimmingCharacters(in: .whitespaces).lowercased() == user.email.lowercased() else { throw .emailMismatch }
        if user.passwordHash != nil {
            guard proof.passwordOK == true else { throw .wrongPassword }
            if user.hasTwoFactor, proof.codeOK != true { throw .wrongCode }
        } else {
            guard now.timeIntervalSince(proof.signedInAt) <= self.settings.recentSignIn else { throw .signInAgain }
        }
    }

    /// Marks the account for deletion: signed out everywhere, API keys revoked, unfinished
    /// tasks canceled and refunded, a confirmation mailed. Returns the purge date.
    public func requestDeletion(user: User, now: Date = Date()) async throws -> Date {
        if user.role == .admin, try await self.database.activeAdminCount() <= 1 { throw DeletionError.lastAdmin }
        // Stripe would go on charging a person who is gone: the subscription is canceled first.
        if try await self.database.subscriptions(userID: user.id!).contains(where: { !$0.hasEnded && !$0.cancelAtPeriodEnd }) {
            throw DeletionError.activeSubscription
        }
        let purgeOn = self.purgeDate(requestedAt: now)
        let requested = try await self.database.requestAccountDeletion(
            userID: user.id!,
            mail: self.mails.deletionRequested(to: user.email, name: Self.name(user), purgeOn: purgeOn, language: user.preferredLanguage),
            outcome: "scheduled for \(ISO8601DateFormatter().string(from: purgeOn))", now: now
        )
        self.logger.info("account deletion requested", metadata: ["user": "\(user.id!)"])
        return self.purgeDate(requestedAt: requested)
    }

    /// Signing in within the grace period offers this: the account is kept.
    public func cancelDeletion(user: User, now: Date = Date()) async throws -> Bool {
        let canceled = try await self.database.cancelAccountDeletion(
            userID: user.id!, mail: self.mails.deletionCanceled(to: user.email, name: Self.name(user), language: user.preferredLanguage), now: now
        )
        if canceled { self.logger.info("account deletion canceled", metadata: ["user": "\(user.id!)"]) }
        return canceled
    }

    // MARK: Purge

    /// Purges every account whose grace period is over (and finishes purges that stopped half
    /// way). Returns how many accounts were purged.
    @discardableResult
    /// `ahead`: the time until the job's next run; accounts that fall due before it are purged
    /// now, so none is purged later than the promised day.
    public func purgeDue(now: Date = Date(), ahead: TimeInterval = 0) async throws -> Int {
        var purged = 0
        var failure: (any Error)?
        // One account that cannot be purged (a blob that will not delete) must not hold up the rest.
        for userID in try await self.database.accountsDueForPurge(requestedBefore: now.addingTimeInterval(ahead - self.settings.purgeDelay)) {
            do {
                if try await self.purge(userID: userID, now: now) { purged += 1 }
            } catch {
                self.logger.error("purge failed; the next run tries again", metadata: ["user": "\(userID)", "error": "\(error)"])
                failure = error
            }
        }
        if let failure { throw failure }
        return purged
    }

    /// An account reported as under age, purged at once by an admin (after a confirmation page).
    public func purgeUnderAge(userID: Int64, admin: User, now: Date = Date()) async throws {
        try await self.database.flagUnderAge(userID: userID, by: admin.id!, now: now)
        _ = try await self.purge(userID: userID, actorID: admin.id, now: now)
    }

    /// Crash-safe and re-runnable: (1) mark the purge begun (no new data key can be made from
    /// then on) and withdraw access, (2) destroy the person's data key, so every copy of their
    /// objects anywhere is unreadable, (3) delete every blob under their prefixes, outside any
    /// transaction, (4) delete every row and queue the goodbye mail in one transaction. A
    /// crash before (4) leaves the account marked, and the next run starts again at (1).
    public func purge(userID: Int64, actorID: Int64? = nil, now: Date = Date()) async throws -> Bool {
        guard let target = try await self.database.beginPurge(userID: userID, newPseudonym: "deleted-" + SecureToken.make(bytes: 8), now: now) else {
            return false
        }
        try await self.dataKeys.destroy(userID: userID)
        for prefix in Self.personalBlobPrefixes(userID: userID) {
            for blob in try await self.blobs.list(prefix: prefix) {
                try await self.blobs.delete(blob.key)
            }
        }
        let language = Language(code: target.language) ?? .english
        let mail = self.mails.accountPurged(to: target.email, name: target.displayName.isEmpty ? nil : target.displayName, language: language)
        let done = try await self.database.finishPurge(target, mail: mail, actorID: actorID, now: now)
        if done {
            // An export that finished while the purge ran wrote its archive after the first sweep.
            for blob in try await self.blobs.list(prefix: "exports/u\(userID)/") {
                try await self.blobs.delete(blob.key)
            }
        }
        if done { self.logger.notice("account purged", metadata: ["pseudonym": "\(target.pseudonym)", "reason": "\(target.reason.rawValue)"]) }
        return done
    }

    // MARK: Restriction and consent

    /// Returns the ids of tasks canceled by turning the restriction on.
    @discardableResult
    public func setRestricted(user: User, _ restricted: Bool, now: Date = Date()) async throws -> [Int64] {
        try await self.database.setProcessingRestricted(userID: user.id!, restricted, now: now) ?? []
    }

    @discardableResult
    public func setMarketingConsent(user: User, _ optIn: Bool, now: Date = Date()) async throws -> Bool {
        try await self.database.setMarketingConsent(userID: user.id!, optIn, via: optIn ? "opted in in settings" : "withdrawn in settings", now: now)
    }

    /// The token of a person's unsubscribe links; valid for a year (a mail may be read late).
    public func unsubscribeToken(userID: Int64, now: Date = Date()) -> String {
        self.unsubscribeSigner.sign("u\(userID):marketing", expiresAt: now.addingTimeInterval(365 * 86400))
    }

    /// The account a token unsubscribes, when its signature is right and it has not expired.
    public func unsubscribeUserID(token: String, now: Date = Date()) -> Int64? {
        guard let value = self.unsubscribeSigner.verify(token, now: now), value.hasPrefix("u"), value.hasSuffix(":marketing") else { return nil }
        return Int64(value.dropFirst().dropLast(":marketing".count))
    }

    /// One click (RFC 8058) or the unsubscribe page's button: withdraws marketing consent.
    /// False for a bad token; true also when the person had already withdrawn.
    public func unsubscribe(token: String, now: Date = Date()) async throws -> Bool {
        guard let userID = self.unsubscribeUserID(token: token, now: now) else { return false }
        try await self.database.setMarketingConsent(userID: userID, false, via: "one-click unsubscribe link", now: now)
        return true
    }

    public func unsubscribeURL(userID: Int64, now: Date = Date()) -> String {
        "\(self.mails.publicURL.absoluteString)/unsubscribe?token=\(self.unsubscribeToken(userID: userID, now: now))"
    }

    /// Queues a non-essential mail (marketing, when `marketing`) with its unsubscribe headers,
    /// only if the person consents and has not restricted processing. False when not queued.
    @discardableResult
    public func queueNonEssentialMail(
        to user: User, kind: String, subject: String, paragraphs: [String], marketing: Bool = true, now: Date = Date()
    ) async throws -> Bool {
        let draft = self.mails.nonEssential(
            kind: kind, to: user.email, name: Self.name(user), subject: subject, paragraphs: paragraphs,
            unsubscribeURL: self.unsubscribeURL(userID: user.id!, now: now), unsubscribeMailto: nil, language: user.preferredLanguage
        )
        return try await self.database.queueNonEssentialMail(draft, userID: user.id!, marketing: marketing, now: now)
    }

    // MARK: Retention

    public struct SweepReport: Sendable, Equatable, CustomStringConvertible {
        public var tokens = 0
        public var invitations = 0
        public var mails = 0
        public var orphanBlobs = 0

        public var description: String {
            "\(self.tokens) token(s), \(self.invitations) invitation(s), \(self.mails) mail(s), \(self.orphanBlobs) orphaned blob(s) removed"
        }
    }

    /// Nightly: spent email tokens and invitations, mail past its retention, goodbye mails
    /// once sent, and blobs no row refers to (older than the grace period).
    @discardableResult
    public func sweep(now: Date = Date()) async throws -> SweepReport {
        var report = SweepReport()
        report.tokens = try await self.database.deleteSpentEmailTokens(now: now)
        report.invitations = try await self.database.deleteSpentInvitations(now: now)
        report.mails = try await self.database.deleteFinishedMail(queuedBefore: now.addingTimeInterval(-self.settings.mailRetention), purgeMailKind: AccountMails.purgedKind)
        report.orphanBlobs = try await self.sweepOrphanBlobs(now: now)
        return report
    }

    /// Goodbye mails leave the outbox as soon as they are sent: run after each purge pass.
    @discardableResult
    public func removeSentPurgeMails(now: Date = Date()) async throws -> Int {
        try await self.database.deleteFinishedMail(queuedBefore: now.addingTimeInterval(-self.settings.mailRetention), purgeMailKind: AccountMails.purgedKind)
    }

    /// Blobs under images/, uploads/ and avatars/ that no row names, last written more than the
    /// grace period ago (a worker writes files before their row: the grace covers that). The
    /// keys are listed first and the references read after, so a row written meanwhile counts.
    public func sweepOrphanBlobs(now: Date = Date()) async throws -> Int {
        var candidates: [BlobInfo] = []
        for prefix in Self.sweptPrefixes {
            candidates += try await self.blobs.list(prefix: prefix).filter { blob in
                guard let modified = blob.lastModified else { return false }
                return now.timeIntervalSince(modified) > self.settings.orphanGrace
            }
        }
        guard !candidates.isEmpty else { return 0 }
        let referenced = try await self.database.referencedBlobKeys()
        var removed = 0
        for blob in candidates where !referenced.contains(blob.key.rawValue) {
            try await self.blobs.delete(blob.key)
            removed += 1
        }
        if removed > 0 { self.logger.notice("orphaned blobs removed", metadata: ["count": "\(removed)"]) }
        return removed
    }

    static func name(_ user: User) -> String? {
        user.displayName.isEmpty ? nil : user.displayName
    }
}

/// Hands out the access report one piece per call: the opening, then each section's start, then
/// its pages. Pulled by the response writer, so nothing is read before the client takes it.
private final class AccessReportReader: @unchecked Sendable {
    private enum Step {
        case opening
        case section(Int)
        case page(Int)
        case finished
    }

    private let database: AppDatabase
    private let userID: Int64
    private let generatedAt: Date
    private let logger: Logger
    private var step = Step.opening
    private var after: Int64 = 0
    private var firstOfSection = true

    init(database: AppDatabase, userID: Int64, generatedAt: Date, logger: Logger) {
        self.database = database
        self.userID = userID
        self.generatedAt = generatedAt
        self.logger = logger
    }

    func next() async throws -> ByteBuffer? {
        do {
            return try await self.advance().map { ByteBuffer(string: $0) }
        } catch {
            self.logger.error("personal data download failed: \(error)")
            self.step = .finished
            throw error
        }
    }

    private func advance() async throws -> String? {
        let sections = AppDatabase.accessSections
        switch self.step {
        case .opening:
            self.step = .section(0)
            return "{\n\"format\":\"easel-personal-data-1\",\n\"generated_at\":\"\(ISO8601DateFormatter().string(from: self.generatedAt))\""
        case .section(let index):
            guard index < sections.count else {
                self.step = .finished
                return "\n}\n"
            }
            let section = sections[index]
            let opening = ",\n\"\(section.name)\":"
            guard section.single else {
                self.after = 0
                self.firstOfSection = true
                self.step = .page(index)
                return opening + "["
            }
            var object = try await self.database.accessRows(section, userID: self.userID).objects.first ?? "null"
            if section.name == "consents" {
                // Choices other features keep on the account (analytics opt-out, …).
                let optOuts = try await self.database.accountOptOuts(userID: self.userID)
                if object.hasSuffix("}"), optOuts.count > 2 { object = String(object.dropLast()) + "," + String(optOuts.dropFirst()) }
            }
            self.step = .section(index + 1)
            return opening + object
        case .page(let index):
            try Task.checkCancellation()
            let page = try await self.database.accessRows(sections[index], userID: self.userID, after: self.after)
            var text = ""
            if !page.objects.isEmpty {
                text = (self.firstOfSection ? "\n" : ",\n") + page.objects.joined(separator: ",\n")
                self.firstOfSection = false
            }
            if let last = page.lastID {
                self.after = last
            } else {
                text += "]"
                self.step = .section(index + 1)
            }
            return text
        case .finished:
            return nil
        }
    }
}
