import Foundation
import GRDB

public enum CreditStoreError: Error, Equatable, Sendable {
    /// The entry would take the balance below zero.
    case insufficientCredits(balance: Int, needed: Int)
    case unknownUser
}

/// A balance that does not match its ledger, found by `verifyCreditBalances`.
public struct BalanceDifference: Sendable, Equatable, CustomStringConvertible {
    public var userID: Int64
    public var email: String
    /// What credit_balance says.
    public var stored: Int
    /// The sum of the person's ledger entries.
    public var fromLedger: Int
    /// Other inconsistencies for this person (a broken balance_after chain, a task whose
    /// ledger does not match its credits columns).
    public var problems: [String]

    public var description: String {
        var line = "user \(self.userID) <\(self.email)>: balance \(self.stored), ledger sums to \(self.fromLedger)"
        if !self.problems.isEmpty { line += "; " + self.problems.joined(separator: "; ") }
        return line
    }
}

extension AppDatabase {
    /// The one way credits move: appends a ledger row and moves the balance by its amount, in the
    /// caller's transaction. credit_balance's CHECK (balance >= 0) refuses an overdraft, so the
    /// whole transaction fails rather than ever leaving a negative balance.
    @discardableResult
    static func appendLedgerEntry(
        _ db: Database, userID: Int64, kind: LedgerEntry.Kind, amount: Int, taskID: Int64? = nil,
        paymentRef: String? = nil, reason: String = "", actorID: Int64? = nil, now: Date
    ) throws -> LedgerEntry {
        let current = try Int.fetchOne(db, sql: "SELECT balance FROM credit_balance WHERE user_id = ?", arguments: [userID]) ?? 0
        let after = current + amount
        guard after >= 0 else { throw CreditStoreError.insufficientCredits(balance: current, needed: -amount) }
        try db.execute(
            sql: """
                INSERT INTO credit_balance (user_id, balance, updated_at) VALUES (?, ?, ?)
                ON CONFLICT(user_id) DO UPDATE SET balance = balance + ?, updated_at = excluded.updated_at
                """,
            arguments: [userID, after, now, amount]
        )
        var entry = LedgerEntry(
            id: nil, userID: userID, kind: kind, amount: amount, balanceAfter: after, taskID: taskID,
            paymentRef: paymentRef, reason: reason, actorID: actorID, createdAt: now
        )
        try entry.insert(db)
        return entry
    }

    /// An admin (or sign-up) gives credits, with a reason kept in the ledger.
    @discardableResult
    public func grantCredits(userID: Int64, amount: Int, reason: String, actorID: Int64? = nil, now: Date = Date()) async throws -> LedgerEntry {
        try await self.writer.write { db in
            guard try User.exists(db, key: userID) else { throw CreditStoreError.unknownUser }
            return try Self.appendLedgerEntry(db, userID: userID, kind: .grant, amount: amount, reason: reason, actorID: actorID, now: now)
        }
    }

    public func creditBalance(userID: Int64) async throws -> Int {
        try await self.writer.read { db in
            try Int.fetchOne(db, sql: "SELECT balance FROM credit_balance WHERE user_id = ?", arguments: [userID]) ?? 0
        }
    }

    /// A person's ledger, newest first, keyset-paged by id.
    public func ledger(userID: Int64, before: Int64? = nil, limit: Int = 50) async throws -> [LedgerEntry] {
        try await self.writer.read { db in
            var request = LedgerEntry.filter(LedgerEntry.Columns.userID == userID)
            if let before { request = request.filter(LedgerEntry.Columns.id < before) }
            return try request.order(LedgerEntry.Columns.id.desc).limit(limit).fetchAll(db)
        }
    }

    /// Re-derives every balance from the ledger and checks each finished task's entries against
    /// its credits columns. Empty when everything agrees. Reads one consistent snapshot.
    public func verifyCreditBalances() async throws -> [BalanceDifference] {
        try await self.writer.read { db in
            var differences: [Int64: BalanceDifference] = [:]
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT u.id, u.email, COALESCE(b.balance, 0) AS stored,
                           COALESCE((SELECT SUM(amount) FROM credit_ledger l WHERE l.user_id = u.id), 0) AS from_ledger
                    FROM user u LEFT JOIN credit_balance b ON b.user_id = u.id
                    """
            )
            for row in rows {
                let stored: Int = row["stored"]
                let fromLedger: Int = row["from_ledger"]
                if stored != fromLedger {
                    differences[row["id"]] = BalanceDifference(userID: row["id"], email: row["email"], stored: stored, fromLedger: fromLedger, problems: [])
                }
            }
            func note(_ userID: Int64, _ problem: String) throws {
                if differences[userID] == nil {
                    let row = try Row.fetchOne(
                        db, sql: "SELECT u.email, COALESCE(b.balance, 0) AS stored FROM user u LEFT JOIN credit_balance b ON b.user_id = u.id WHERE u.id = ?",
                        arguments: [userID])
                    let stored: Int = row?["stored"] ?? 0
                    differences[userID] = BalanceDifference(userID: userID, email: row?["email"] ?? "?", stored: stored, fromLedger: stored, problems: [])
                }
                differences[userID]!.problems.append(problem)
            }
            // Each entry's balance_after follows from the one before it.
            let chain = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, user_id, amount, balance_after,
                           LAG(balance_after, 1, 0) OVER (PARTITION BY user_id ORDER BY id) AS previous
                    FROM credit_ledger
                    """
            )
            for row in chain where (row["previous"] as Int) + (row["amount"] as Int) != (row["balance_after"] as Int) {
                try note(row["user_id"], "ledger entry \(row["id"] as Int64) does not follow from the one before it")
            }
            // A task's ledger entries add up to minus what it charged, once it has finished, and
            // to minus its reservation while it is in flight.
            let tasks = try Row.fetchAll(
                db,
                sql: """
                    SELECT t.id, t.user_id, t.status, t.credits_reserved, t.credits_charged, t.credits_refunded,
                           COALESCE(SUM(l.amount), 0) AS ledger_sum,
                           COALESCE(SUM(CASE WHEN l.kind = 'reserve' THEN -l.amount END), 0) AS reserved_in_ledger
                    FROM generation_task t LEFT JOIN credit_ledger l ON l.task_id = t.id
                    GROUP BY t.id
                    """
            )
            for row in tasks {
                let status: String = row["status"]
                let expected: Int = ["succeeded", "failed", "canceled"].contains(status) ? -(row["credits_charged"] as Int) : -(row["credits_reserved"] as Int)
                if (row["ledger_sum"] as Int) != expected || (row["reserved_in_ledger"] as Int) != (row["credits_reserved"] as Int) {
                    try note(row["user_id"], "task \(row["id"] as Int64) (\(status)) has ledger entries summing to \(row["ledger_sum"] as Int), expected \(expected)")
                }
            }
            return differences.values.sorted { $0.userID < $1.userID }
        }
    }
}
