import EaselApp
import EaselCore
@testable import EaselWeb
import EaselStore
import EaselTestSupport
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Stripe billing through the router: webhooks signed with the official `stripe` SDK, checkout
/// and portal against the loopback fake Stripe API (Tests/peers/stripe_api.py).
@Suite("Billing with Stripe", .serialized)
struct BillingTests {
    static let secret = "whsec_test_current"
    static let catalog = """
        {"currency":"usd",
         "plans":[{"id":"starter","name":"Starter","stripe_price":"price_starter","monthly_credits":300,"amount":900},
                  {"id":"studio","name":"Studio","stripe_price":"price_studio","monthly_credits":1000,"amount":2500}],
         "packs":[{"id":"pack-100","name":"100 credits","stripe_price":"price_pack100","credits":100,"amount":500},
                  {"id":"pack-500","name":"500 credits","stripe_price":"price_pack500","credits":500,"amount":2000}]}
        """

    /// An app with billing pointed at `apiBase` (a fake that is never called when nil).
    func withBilling<Value: Sendable>(
        apiBase: String = "http://127.0.0.1:9", secretKey: String = "sk_test_unused",
        _ body: @Sendable (AppServices, any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        let folder = try TemporaryDirectory("easel-billing")
        defer { folder.remove() }
        let path = folder.url.appending(path: "catalog.json")
        try Data(Self.catalog.utf8).write(to: path)
        return try await withTestApp(
            [
                "STRIPE_SECRET_KEY": secretKey, "STRIPE_WEBHOOK_SECRET": Self.secret, "EASEL_BILLING_CATALOG": path.path,
                "EASEL_STRIPE_API_BASE": apiBase, "EASEL_SIGNUP_CREDITS": "0", "EASEL_PROVIDER": "demo", "EASEL_DEMO_LATENCY_MS": "60000",
            ],
            body
        )
    }

    func signIn(_ services: AppServices, _ client: any TestClientProtocol, email: String) async throws -> (Browser, User) {
        try await APITests().signedIn(services, client, email: email)
    }

    func account(_ services: AppServices, _ email: String) async throws -> User {
        try await APITests().makeAccount(services, email: email)
    }

    func deliver(_ client: any TestClientProtocol, _ payload: String, header: String) async throws -> TestResponse {
        try await client.execute(
            uri: "/webhooks/stripe", method: .post, headers: [.contentType: "application/json", HTTPField.Name("Stripe-Signature")!: header],
            body: ByteBuffer(string: payload)
        )
    }

    /// Signs each payload with the SDK (one Python run for all) and delivers them in order.
    func deliverSigned(_ client: any TestClientProtocol, _ payloads: [String], secrets: [String] = [Self.secret], at time: Date = Date())
        async throws -> [TestResponse]
    {
        let headers = try await StripeSigner.sign(payloads.map { (Array($0.utf8), secrets, time) })
        var responses: [TestResponse] = []
        for (payload, header) in zip(payloads, headers) { responses.append(try await self.deliver(client, payload, header: header)) }
        return responses
    }

    // MARK: Event bodies (shaped as Stripe's, API version 2024-06-20)

    static func event(_ id: String, _ type: String, created: Int, _ object: String) -> String {
        #"{"id":"\#(id)","object":"event","api_version":"2024-06-20","created":\#(created),"livemode":false,"type":"\#(type)","data":{"object":\#(object)}}"#
    }

    static func packSession(_ id: String, user: Int64, customer: String, pack: String, credits: Int, amount: Int, intent: String, paid: Bool = true) -> String {
        #"""
        {"id":"\#(id)","object":"checkout.session","mode":"payment","status":"complete","payment_status":"\#(paid ? "paid" : "unpaid")",
         "client_reference_id":"\#(user)","customer":"\#(customer)","subscription":null,"payment_intent":"\#(intent)",
         "amount_total":\#(amount),"currency":"usd","customer_details":{"address":{"country":"DE"}},
         "metadata":{"easel_user_id":"\#(user)","easel_item":"\#(pack)","easel_kind":"pack","easel_credits":"\#(credits)"}}
        """#
    }

    static func invoice(_ id: String, customer: String, subscription: String, price: String, amount: Int, reason: String, intent: String) -> String {
        #"""
        {"id":"\#(id)","object":"invoice","customer":"\#(customer)","subscription":"\#(subscription)","status":"paid","amount_paid":\#(amount),
         "amount_due":\#(amount),"currency":"usd","billing_reason":"\#(reason)","payment_intent":"\#(intent)",
         "lines":{"object":"list","data":[{"price":{"id":"\#(price)"},"period":{"start":1764000000,"end":1766600000}}]}}
        """#
    }

    static func subscription(_ id: String, customer: String, price: String, status: String, cancelAtPeriodEnd: Bool) -> String {
        #"""
        {"id":"\#(id)","object":"subscription","customer":"\#(customer)","status":"\#(status)","cancel_at_period_end":\#(cancelAtPeriodEnd),
         "current_period_end":1766600000,"items":{"object":"list","data":[{"price":{"id":"\#(price)"}}]},"metadata":{}}
        """#
    }

    static func charge(_ id: String, intent: String, amount: Int, refunded: Int) -> String {
        #"""
        {"id":"\#(id)","object":"charge","payment_intent":"\#(intent)","amount":\#(amount),"amount_refunded":\#(refunded),"currency":"usd",
         "refunded":\#(refunded >= amount),"status":"succeeded","payment_method_details":{"card":{"last4":"4242","country":"DE"}},
         "billing_details":{"address":{"country":"DE"}}}
        """#
    }

    // MARK: Signatures

    @Test("Bad signature, stale and future timestamps are 400 and grant nothing; a header with a rotated secret's two v1 values is accepted")
    func signatures() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "ada@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_ada")
            let payload = Self.event(
                "evt_sig", "checkout.session.completed", created: Int(Date().timeIntervalSince1970),
                Self.packSession("cs_sig", user: user.id!, customer: "cus_ada", pack: "pack-100", credits: 100, amount: 500, intent: "pi_sig")
            )
            let now = Date()
            let headers = try await StripeSigner.sign([
                (Array(payload.utf8), ["whsec_wrong"], now),
                (Array(payload.utf8), [Self.secret], now.addingTimeInterval(-600)),
                (Array(payload.utf8), [Self.secret], now.addingTimeInterval(600)),
                (Array(payload.utf8), ["whsec_test_previous", Self.secret], now),
            ])
            for (header, why) in zip(headers.prefix(3), ["wrong secret", "stale", "future"]) {
                let response = try await self.deliver(client, payload, header: header)
                #expect(response.status == .badRequest, "\(why): \(response.text)")
            }
            #expect(try await self.deliver(client, payload, header: "t=1,v1=00").status == .badRequest)
            #expect(try await client.execute(uri: "/webhooks/stripe", method: .post, headers: [:], body: ByteBuffer(string: payload)).status == .badRequest)
            #expect(try await services.database.creditBalance(userID: user.id!) == 0)

            #expect(headers[3].components(separatedBy: "v1=").count == 3, "two v1 values: \(headers[3])")
            let rotated = try await self.deliver(client, payload, header: headers[3])
            #expect(rotated.status == .ok, "\(rotated.text)")
            #expect(try await services.database.creditBalance(userID: user.id!) == 100)
        }
    }

    // MARK: Exactly once

    @Test("A pack is granted once however often, and however concurrently, its event arrives; the receipt is mailed once")
    func duplicates() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "bo@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_bo")
            let payload = Self.event(
                "evt_dup", "checkout.session.completed", created: Int(Date().timeIntervalSince1970),
                Self.packSession("cs_dup", user: user.id!, customer: "cus_bo", pack: "pack-500", credits: 500, amount: 2000, intent: "pi_dup")
            )
            let header = try await StripeSigner.sign([(Array(payload.utf8), [Self.secret], Date())])[0]
            #expect(try await self.deliver(client, payload, header: header).status == .ok)
            #expect(try await self.deliver(client, payload, header: header).status == .ok)
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<12 { group.addTask { try await self.deliver(client, payload, header: header).status } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == .ok })
            // The same session in another event (Stripe may send async_payment_succeeded too) changes nothing either.
            let again = Self.event(
                "evt_dup_async", "checkout.session.async_payment_succeeded", created: Int(Date().timeIntervalSince1970),
                Self.packSession("cs_dup", user: user.id!, customer: "cus_bo", pack: "pack-500", credits: 500, amount: 2000, intent: "pi_dup")
            )
            #expect(try await self.deliverSigned(client, [again]).first?.status == .ok)

            #expect(try await services.database.creditBalance(userID: user.id!) == 500)
            let purchases = try await services.database.ledger(userID: user.id!).filter { $0.kind == .purchase }
            #expect(purchases.count == 1)
            #expect(purchases.first?.paymentRef == "cs_dup")
            let receipts = try await services.database.recentMails().filter { $0.kind == "billing_receipt" && $0.toEmail == "bo@example.org" }
            #expect(receipts.count == 1)
            #expect(receipts.first?.textBody.contains("500") == true)
            #expect(try await services.database.verifyCreditBalances().isEmpty)
        }
    }

    @Test("No table has room for more of a card than its last four digits")
    func noCardNumbers() async throws {
        let database = try AppDatabase.inMemory()
        let cardColumns = try await database.writer.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").flatMap { table in
                try db.columns(in: table).map(\.name).filter { name in ["card", "pan", "cvc", "cvv", "expiry", "exp_"].contains { name.contains($0) } }
                    .map { "\(table).\($0)" }
            }
        }
        #expect(Set(cardColumns) == ["payment.card_last4", "stripe_charge.card_last4"], "\(cardColumns)")
    }

    @Test("A refund after the credits were spent takes back what is left and records the rest as owed; never below zero")
    func refundAfterSpending() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "cy@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_cy")
            let now = Int(Date().timeIntervalSince1970)
            _ = try await self.deliverSigned(client, [
                Self.event("evt_r1", "checkout.session.completed", created: now,
                           Self.packSession("cs_r", user: user.id!, customer: "cus_cy", pack: "pack-100", credits: 100, amount: 500, intent: "pi_r")),
                Self.event("evt_r2", "charge.succeeded", created: now, Self.charge("ch_r", intent: "pi_r", amount: 500, refunded: 0)),
            ])
            #expect(try await services.database.creditBalance(userID: user.id!) == 100)
            // Spend 64 of the 100: a queued task holds its price.
            let viewer = Viewer(userID: user.id!, isAdmin: false)
            let spent = try await services.generation.submit(
                GenerationRequest(prompt: "a lighthouse", model: "gpt-image-2", size: "1024x1024", quality: "high", n: 1), viewer: viewer, clientIP: nil
            ).task.creditsReserved
            let left = try await services.database.creditBalance(userID: user.id!)
            #expect(left == 100 - spent && left < 100)

            let refund = try await self.deliverSigned(client, [
                Self.event("evt_r3", "charge.refunded", created: now + 10, Self.charge("ch_r", intent: "pi_r", amount: 500, refunded: 500))
            ])
            #expect(refund.first?.status == .ok)
            #expect(try await services.database.creditBalance(userID: user.id!) == 0)
            let payment = try #require(try await services.database.payment(checkoutSessionID: "cs_r"))
            #expect(payment.creditsTakenBack == left)
            #expect(payment.creditsOwed == 100 - left)
            #expect(payment.cardLast4 == "4242")
            #expect(payment.billingCountry == "DE")
            #expect(payment.amountRefunded == 500)
            #expect(try await services.database.verifyCreditBalances().isEmpty)
            // Admins see what is owed.
            #expect(try await services.database.paymentsWithCreditsOwed().map(\.id) == [payment.id])
        }
    }

    @Test("A subscription's life: started, month paid, payment failed (past due, mailed), plan changed, cancel scheduled, ended — each mailed once, stale events ignored")
    func subscriptionLife() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "fay@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_fay")
            let t = Int(Date().timeIntervalSince1970)
            let session = #"""
                {"id":"cs_sub","object":"checkout.session","mode":"subscription","status":"complete","payment_status":"paid",
                 "client_reference_id":"\#(user.id!)","customer":"cus_fay","subscription":"sub_fay","payment_intent":null,
                 "amount_total":900,"currency":"usd","metadata":{"easel_user_id":"\#(user.id!)","easel_item":"starter","easel_kind":"subscription"}}
                """#
            let failed = Self.invoice("in_fay_2", customer: "cus_fay", subscription: "sub_fay", price: "price_starter", amount: 900,
                                      reason: "subscription_cycle", intent: "pi_fay_2").replacingOccurrences(of: #""status":"paid""#, with: #""status":"open""#)
            let responses = try await self.deliverSigned(client, [
                Self.event("evt_f1", "checkout.session.completed", created: t, session),
                Self.event("evt_f2", "invoice.paid", created: t + 1,
                           Self.invoice("in_fay_1", customer: "cus_fay", subscription: "sub_fay", price: "price_starter", amount: 900, reason: "subscription_create", intent: "pi_fay_1")),
                Self.event("evt_f3", "invoice.payment_failed", created: t + 2, failed),
            ])
            #expect(responses.allSatisfy { $0.status == .ok })
            #expect(try await services.database.creditBalance(userID: user.id!) == 300)
            #expect(try await services.database.subscriptions(userID: user.id!).first?.status == "past_due")

            _ = try await self.deliverSigned(client, [
                Self.event("evt_f4", "customer.subscription.updated", created: t + 3,
                           Self.subscription("sub_fay", customer: "cus_fay", price: "price_studio", status: "active", cancelAtPeriodEnd: false)),
                Self.event("evt_f5", "customer.subscription.updated", created: t + 4,
                           Self.subscription("sub_fay", customer: "cus_fay", price: "price_studio", status: "active", cancelAtPeriodEnd: true)),
                Self.event("evt_f6", "customer.subscription.deleted", created: t + 5,
                           Self.subscription("sub_fay", customer: "cus_fay", price: "price_studio", status: "canceled", cancelAtPeriodEnd: true)),
                // Late and stale: must not bring the subscription back.
                Self.event("evt_f7", "customer.subscription.updated", created: t + 3,
                           Self.subscription("sub_fay", customer: "cus_fay", price: "price_starter", status: "active", cancelAtPeriodEnd: false)),
            ])
            let held = try #require(try await services.database.subscriptions(userID: user.id!).first)
            #expect(held.status == "canceled")
            #expect(held.planID == "studio")
            let kinds = try await services.database.recentMails().filter { $0.toEmail == "fay@example.org" }.map(\.kind)
            for kind in ["subscription_started", "billing_receipt", "payment_failed", "subscription_changed", "subscription_canceling", "subscription_ended"] {
                #expect(kinds.filter { $0 == kind }.count == 1, "\(kind) in \(kinds)")
            }
            #expect(try await services.database.verifyCreditBalances().isEmpty)

            // The person's Payments page lists both invoices; the failed one says so.
            let browser = Browser(client)
            try await browser.get("/signin")
            #expect(try await browser.post("/signin", ["email": "fay@example.org", "password": "correct horse battery"]).status == .seeOther)
            let page = try await browser.get("/billing")
            #expect(page.status == .ok)
            #expect(page.text.contains("Starter") && page.text.contains("$9.00"))
            #expect(page.text.contains("Failed") && page.text.contains("Paid"))
        }
    }

    @Test("Invoice edge cases: a proration invoice brings no month; a plan gone from the catalog still brings what was promised; an invoice set aside for an unknown person applies when resent; 'started' is mailed once whatever comes first")
    func invoiceEdges() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "kim@example.org")
            let t = Int(Date().timeIntervalSince1970)
            // Before the customer is known (and without metadata): set aside, retryable.
            let first = Self.event("evt_k1", "invoice.paid", created: t,
                                   Self.invoice("in_k1", customer: "cus_kim", subscription: "sub_kim", price: "price_starter", amount: 900,
                                                reason: "subscription_create", intent: "pi_k1"))
            let firstHeader = try await StripeSigner.sign([(Array(first.utf8), [Self.secret], Date())])[0]
            #expect(try await self.deliver(client, first, header: firstHeader).status == .ok)
            #expect(try await services.database.creditBalance(userID: user.id!) == 0)
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_kim")
            #expect(try await self.deliver(client, first, header: firstHeader).status == .ok)
            #expect(try await services.database.creditBalance(userID: user.id!) == 300, "the resent event applies once the person is known")
            #expect(try await self.deliver(client, first, header: firstHeader).status == .ok)
            #expect(try await services.database.creditBalance(userID: user.id!) == 300, "and only once")

            let proration = Self.invoice("in_k2", customer: "cus_kim", subscription: "sub_kim", price: "price_studio", amount: 1600,
                                         reason: "subscription_update", intent: "pi_k2")
            let gone = Self.invoice("in_k3", customer: "cus_kim", subscription: "sub_kim", price: "price_retired", amount: 900,
                                    reason: "subscription_cycle", intent: "pi_k3")
                .replacingOccurrences(of: #""lines":"#, with: #""subscription_details":{"metadata":{"easel_item":"legacy","easel_credits":"250"}},"lines":"#)
            _ = try await self.deliverSigned(client, [
                Self.event("evt_k2", "invoice.paid", created: t + 1, proration),
                Self.event("evt_k3", "invoice.paid", created: t + 2, gone),
                Self.event("evt_k4", "checkout.session.completed", created: t + 3, #"""
                    {"id":"cs_kim","object":"checkout.session","mode":"subscription","status":"complete","payment_status":"paid",
                     "client_reference_id":"\#(user.id!)","customer":"cus_kim","subscription":"sub_kim","amount_total":900,"currency":"usd",
                     "metadata":{"easel_user_id":"\#(user.id!)","easel_item":"starter"}}
                    """#),
            ])
            #expect(try await services.database.creditBalance(userID: user.id!) == 300 + 0 + 250)
            #expect(try await services.database.payments(userID: user.id!).count == 3)
            let kinds = try await services.database.recentMails().filter { $0.toEmail == "kim@example.org" }.map(\.kind)
            #expect(kinds.filter { $0 == "subscription_started" }.count == 1, "\(kinds)")
            #expect(try await services.database.verifyCreditBalances().isEmpty)
        }
    }

    @Test("An account with a subscription that would go on charging cannot be deleted until it is canceled; the billing portal stays reachable")
    func deletionWaitsForCancel() async throws {
        try await self.withBilling { services, client in
            _ = try await self.account(services, "admin@example.org")  // the first account is the admin, who may not leave
            let user = try await self.account(services, "lee@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_lee")
            let t = Int(Date().timeIntervalSince1970)
            _ = try await self.deliverSigned(client, [
                Self.event("evt_l1", "customer.subscription.updated", created: t,
                           Self.subscription("sub_lee", customer: "cus_lee", price: "price_starter", status: "active", cancelAtPeriodEnd: false))
            ])
            await #expect(throws: PrivacyService.DeletionError.activeSubscription) {
                _ = try await services.privacy.requestDeletion(user: user)
            }
            _ = try await self.deliverSigned(client, [
                Self.event("evt_l2", "customer.subscription.updated", created: t + 1,
                           Self.subscription("sub_lee", customer: "cus_lee", price: "price_starter", status: "active", cancelAtPeriodEnd: true))
            ])
            _ = try await services.privacy.requestDeletion(user: user)
            #expect(DeletionPendingMiddleware.allowedPaths.contains("/billing/portal"))
        }
    }

    @Test("An asynchronous payment: pending first, credits only when it succeeds; a failed one grants nothing and is mailed")
    func asyncPayments() async throws {
        try await self.withBilling { services, client in
            let user = try await self.account(services, "gil@example.org")
            try await services.database.linkStripeCustomer(userID: user.id!, customerID: "cus_gil")
            let t = Int(Date().timeIntervalSince1970)
            func session(_ id: String) -> String {
                Self.packSession(id, user: user.id!, customer: "cus_gil", pack: "pack-100", credits: 100, amount: 500, intent: "pi_\(id)", paid: false)
            }
            _ = try await self.deliverSigned(client, [
                Self.event("evt_a1", "checkout.session.completed", created: t, session("cs_a")),
                Self.event("evt_a2", "checkout.session.completed", created: t, session("cs_b")),
            ])
            #expect(try await services.database.creditBalance(userID: user.id!) == 0)
            #expect(try await services.database.payment(checkoutSessionID: "cs_a")?.status == .pending)
            _ = try await self.deliverSigned(client, [
                Self.event("evt_a3", "checkout.session.async_payment_succeeded", created: t + 5, session("cs_a")),
                Self.event("evt_a4", "checkout.session.async_payment_failed", created: t + 5, session("cs_b")),
            ])
            #expect(try await services.database.creditBalance(userID: user.id!) == 100)
            #expect(try await services.database.payment(checkoutSessionID: "cs_b")?.status == .failed)
            let kinds = try await services.database.recentMails().filter { $0.toEmail == "gil@example.org" }.map(\.kind)
            #expect(kinds.filter { $0 == "billing_receipt" }.count == 1)
            #expect(kinds.filter { $0 == "payment_failed" }.count == 1)
        }
    }

    @Test("Admins see revenue, payments and owed credits, and record a refund made outside Easel; members may not")
    func admin() async throws {
        try await self.withBilling { services, client in
            let (admin, _) = try await self.signIn(services, client, email: "admin@example.org")
            let buyer = try await self.account(services, "hal@example.org")
            try await services.database.linkStripeCustomer(userID: buyer.id!, customerID: "cus_hal")
            _ = try await self.deliverSigned(client, [
                Self.event("evt_h1", "checkout.session.completed", created: Int(Date().timeIntervalSince1970),
                           Self.packSession("cs_h", user: buyer.id!, customer: "cus_hal", pack: "pack-500", credits: 500, amount: 2000, intent: "pi_h"))
            ])
            let page = try await admin.get("/admin/billing")
            #expect(page.status == .ok)
            #expect(page.text.contains("<svg class=\"chart\""))
            #expect(page.text.contains("hal@example.org") && page.text.contains("$20.00"))
            #expect(page.text.contains("checkout.session.completed"))
            // Per-person billing, reached from the admin's user page.
            let userPage = try await admin.get("/admin/users/\(buyer.id!)")
            #expect(userPage.text.contains("/admin/billing?user=\(buyer.id!)"))
            let theirs = try await admin.get("/admin/billing?user=\(buyer.id!)")
            #expect(theirs.status == .ok && theirs.text.contains("hal@example.org"))
            let payment = try #require(try await services.database.payment(checkoutSessionID: "cs_h"))
            let csrf = try APITests().formToken(page)
            let bad = try await admin.post("/admin/billing/payments/\(payment.id!)/refund", ["amount": "25.00"], csrf: csrf)
            #expect(bad.status == .unprocessableContent)
            let recorded = try await admin.post("/admin/billing/payments/\(payment.id!)/refund", ["amount": "10.00"], csrf: csrf)
            #expect(recorded.status == .seeOther)
            #expect(try await services.database.creditBalance(userID: buyer.id!) == 250)
            #expect(try await services.database.payment(id: payment.id!)?.creditsTakenBack == 250)
            #expect(try await services.database.verifyCreditBalances().isEmpty)

            let (member, _) = try await self.signIn(services, client, email: "ivy@example.org")
            #expect(try await member.get("/admin/billing").status == .forbidden)
        }
    }

    @Test("At an account's purge payment records and subscriptions stay under a pseudonym; after 7 years they go")
    func retention() async throws {
        try await self.withBilling { services, client in
            let buyer = try await self.account(services, "jo@example.org")
            try await services.database.linkStripeCustomer(userID: buyer.id!, customerID: "cus_jo")
            _ = try await self.deliverSigned(client, [
                Self.event("evt_j1", "checkout.session.completed", created: Int(Date().timeIntervalSince1970),
                           Self.packSession("cs_j", user: buyer.id!, customer: "cus_jo", pack: "pack-100", credits: 100, amount: 500, intent: "pi_j"))
            ])
            try await services.database.writer.write { db in
                try db.execute(
                    sql: "INSERT INTO subscription (stripe_subscription_id, user_id, plan_id, status, created_at, updated_at) VALUES ('sub_j', ?, 'plus', 'canceled', ?, ?)",
                    arguments: [buyer.id!, Date(), Date()]
                )
            }
            try await services.database.pseudonymiseBillingRecords(userID: buyer.id!, pseudonym: "deleted-7f3a")
            let kept = try #require(try await services.database.payment(checkoutSessionID: "cs_j"))
            #expect(kept.userID == nil && kept.pseudonym == "deleted-7f3a")
            #expect(kept.amount == 500 && kept.currency == "usd")
            #expect(try await services.database.stripeCustomerID(userID: buyer.id!) == nil)
            #expect(try await services.database.deletePayments(createdBefore: Date().addingTimeInterval(-MaintenanceJobs.paymentRetention)) == 0)
            #expect(try await self.subscriptionCount(services) == 1, "the subscription stays as long as the payments")
            #expect(try await services.database.deletePayments(createdBefore: Date().addingTimeInterval(60)) == 1)
            #expect(try await self.subscriptionCount(services) == 0)
        }
    }

    func subscriptionCount(_ services: AppServices) async throws -> Int {
        try await services.database.writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM subscription WHERE stripe_subscription_id = 'sub_j'") ?? 0 }
    }

    @Test("Only verified webhooks grant purchased credits: purchase entries are written in one place, reached only from the webhook handler")
    func onlyWebhooksGrant() throws {
        let sources = Checkout.root.appending(path: "Sources")
        var writers: [String] = []
        var appliers: [String] = []
        for case let url as URL in FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)! where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            if text.contains("kind: .purchase") { writers.append(url.lastPathComponent) }
            if text.range(of: #"\.(applyCheckout|applyInvoicePaid|applyCharge|applySubscriptionState|applyInvoiceFailed)\("#, options: .regularExpression) != nil {
                appliers.append(url.lastPathComponent)
            }
        }
        #expect(writers == ["BillingStore.swift"])
        #expect(appliers == ["BillingService.swift"])
        // And in BillingService they are reached only after the signature check.
        let service = try String(contentsOf: sources.appending(path: "EaselCore/Billing/BillingService.swift"), encoding: .utf8)
        let verify = try #require(service.range(of: "StripeWebhookSignature.verify("))
        let firstApply = try #require(service.range(of: "self.database.apply"))
        #expect(verify.lowerBound < firstApply.lowerBound)
    }

    // MARK: Replay

    @Test("Replaying 200 events with duplicates in shuffled order gives exactly the expected balances and subscription states")
    func replay() async throws {
        try await self.withBilling { services, client in
            var generator = SeededGenerator(seed: 20261127)
            var events: [String] = []
            var expectedBalance: [Int64: Int] = [:]
            var expectedSubscription: [String: (status: String, cancelAtPeriodEnd: Bool, plan: String)] = [:]
            let base = 1_764_000_000
            for n in 0..<12 {
                let user = try await self.account(services, "buyer\(n)@example.org")
                let userID = user.id!
                let customer = "cus_\(n)"
                try await services.database.linkStripeCustomer(userID: userID, customerID: customer)
                var balance = 0
                var clock = base + n * 10_000
                func next() -> Int { clock += 60; return clock }
                // Two packs, one refunded in full.
                for (index, (pack, credits, amount)) in [("pack-100", 100, 500), ("pack-500", 500, 2000)].enumerated() {
                    let session = "cs_\(n)_\(index)"
                    let intent = "pi_\(n)_\(index)"
                    events.append(Self.event("evt_\(n)_pack\(index)", "checkout.session.completed", created: next(),
                                             Self.packSession(session, user: userID, customer: customer, pack: pack, credits: credits, amount: amount, intent: intent)))
                    events.append(Self.event("evt_\(n)_charge\(index)", "charge.succeeded", created: next(), Self.charge("ch_\(n)_\(index)", intent: intent, amount: amount, refunded: 0)))
                    balance += credits
                    if index == 0 && n % 3 == 0 {
                        events.append(Self.event("evt_\(n)_refund\(index)", "charge.refunded", created: next(), Self.charge("ch_\(n)_\(index)", intent: intent, amount: amount, refunded: amount)))
                        balance -= credits
                    }
                }
                // A subscription with three paid months for most; some upgrade, some cancel, some end.
                if n % 4 != 3 {
                    let sub = "sub_\(n)"
                    events.append(Self.event("evt_\(n)_sub_created", "customer.subscription.updated", created: next(),
                                             Self.subscription(sub, customer: customer, price: "price_starter", status: "active", cancelAtPeriodEnd: false)))
                    var plan = ("starter", "price_starter", 300, 900)
                    for month in 0..<3 {
                        if month == 2 && n % 2 == 0 {
                            plan = ("studio", "price_studio", 1000, 2500)
                            events.append(Self.event("evt_\(n)_sub_upgrade", "customer.subscription.updated", created: next(),
                                                     Self.subscription(sub, customer: customer, price: plan.1, status: "active", cancelAtPeriodEnd: false)))
                        }
                        events.append(Self.event("evt_\(n)_inv\(month)", "invoice.paid", created: next(),
                                                 Self.invoice("in_\(n)_\(month)", customer: customer, subscription: sub, price: plan.1, amount: plan.3,
                                                              reason: month == 0 ? "subscription_create" : "subscription_cycle", intent: "pi_in_\(n)_\(month)")))
                        balance += plan.2
                    }
                    var final = (status: "active", cancelAtPeriodEnd: false, plan: plan.0)
                    if n % 3 == 1 {
                        events.append(Self.event("evt_\(n)_sub_cancel", "customer.subscription.updated", created: next(),
                                                 Self.subscription(sub, customer: customer, price: plan.1, status: "active", cancelAtPeriodEnd: true)))
                        final.cancelAtPeriodEnd = true
                        if n % 2 == 1 {
                            events.append(Self.event("evt_\(n)_sub_deleted", "customer.subscription.deleted", created: next(),
                                                     Self.subscription(sub, customer: customer, price: plan.1, status: "canceled", cancelAtPeriodEnd: true)))
                            final.status = "canceled"
                        }
                    }
                    expectedSubscription[sub] = final
                }
                expectedBalance[userID] = balance
            }
            // Unknown events are acknowledged and ignored.
            events.append(Self.event("evt_unknown", "customer.created", created: base, #"{"id":"cus_x","object":"customer"}"#))
            let unique = events.count
            var stream = events
            while stream.count < 200 { stream.append(events.randomElement(using: &generator)!) }
            stream.shuffle(using: &generator)
            #expect(stream.count == 200)
            #expect(unique < 200)

            let responses = try await self.deliverSigned(client, stream)
            #expect(responses.allSatisfy { $0.status == .ok }, "\(responses.filter { $0.status != .ok }.map(\.text))")

            for (userID, balance) in expectedBalance {
                #expect(try await services.database.creditBalance(userID: userID) == balance, "user \(userID)")
            }
            for (id, expected) in expectedSubscription {
                let held = try #require(try await services.database.allSubscriptions().first { $0.stripeSubscriptionID == id })
                #expect(held.status == expected.status, "\(id)")
                #expect(held.cancelAtPeriodEnd == expected.cancelAtPeriodEnd, "\(id)")
                #expect(held.planID == expected.plan, "\(id)")
            }
            #expect(try await services.database.verifyCreditBalances().isEmpty)
            #expect(try await services.database.billingEvents(limit: 1000).count == unique)
        }
    }

    // MARK: Checkout and portal against the fake Stripe API

    @Test("Buying a pack creates a customer and a Checkout Session with an Idempotency-Key and redirects; a double submit is the same session; the portal opens")
    func checkoutAndPortal() async throws {
        let stripe = try await StripeAPIPeer.start()
        do {
            try await self.withBilling(apiBase: stripe.baseURL.absoluteString, secretKey: stripe.secretKey) { services, client in
                let (browser, user) = try await APITests().signedIn(services, client, email: "di@example.org")
                let pricing = try await browser.get("/pricing")
                #expect(pricing.status == .ok)
                #expect(pricing.text.contains("100 credits") && pricing.text.contains("$5.00"))
                let key = try #require(pricing.text.firstMatch(of: /name="request_key" value="([^"]+)"/).map { String($0.1) })
                let csrf = try APITests().formToken(pricing)

                let first = try await browser.post("/billing/checkout", ["item": "pack-100", "request_key": key], csrf: csrf)
                #expect(first.status == .seeOther, "\(first.text.prefix(3000))")
                let location = try #require(first.headers[.location])
                #expect(location.hasPrefix("https://checkout.stripe.test/"))
                let second = try await browser.post("/billing/checkout", ["item": "pack-100", "request_key": key], csrf: csrf)
                #expect(second.headers[.location] == location, "a double submit is the same session")

                let requests = try await stripe.requests()
                let customers = requests.filter { $0.path == "/v1/customers" && $0.method == "POST" }
                #expect(customers.count == 1)
                #expect(customers.first?.form["email"] == "di@example.org")
                #expect(customers.first?.form["metadata[easel_user_id]"] == String(user.id!))
                let sessions = requests.filter { $0.path == "/v1/checkout/sessions" && $0.method == "POST" }
                #expect(sessions.count == 2)
                let form = try #require(sessions.first?.form)
                #expect(form["mode"] == "payment")
                #expect(form["line_items[0][price]"] == "price_pack100")
                #expect(form["line_items[0][quantity]"] == "1")
                #expect(form["client_reference_id"] == String(user.id!))
                #expect(form["metadata[easel_item]"] == "pack-100")
                #expect(form["success_url"]?.contains("{CHECKOUT_SESSION_ID}") == true)
                #expect(form["customer"] == (try await services.database.stripeCustomerID(userID: user.id!)))
                #expect(sessions.allSatisfy { ($0.headers["idempotency-key"] ?? $0.headers["Idempotency-Key"] ?? "").isEmpty == false })
                #expect(sessions.last?.replayed == true)
                // Nothing is granted by going to Checkout or coming back from it.
                let success = try await browser.get("/billing/success?session_id=cs_test_whatever&item=pack-100")
                #expect(success.status == .ok)
                #expect(success.text.contains("on their way"))
                #expect(try await services.database.creditBalance(userID: user.id!) == 0)

                let plan = try await browser.post("/billing/checkout", ["item": "starter", "request_key": key], csrf: csrf)
                #expect(plan.status == .seeOther)
                let planForm = try #require(try await stripe.requests().last { $0.path == "/v1/checkout/sessions" }?.form)
                #expect(planForm["mode"] == "subscription")
                #expect(planForm["subscription_data[metadata][easel_user_id]"] == String(user.id!))

                let portal = try await browser.post("/billing/portal", [:], csrf: csrf)
                #expect(portal.status == .seeOther, "\(portal.text)")
                #expect(portal.headers[.location]?.hasPrefix("https://billing.stripe.test/") == true)
                let unknown = try await browser.post("/billing/checkout", ["item": "nothing", "request_key": key], csrf: csrf)
                #expect(unknown.status == .unprocessableContent)
            }
        } catch {
            await stripe.stop()
            throw error
        }
        await stripe.stop()
    }

    @Test("Without Stripe settings there is no billing page, link or webhook")
    func withoutStripe() async throws {
        try await withTestApp(["EASEL_PROVIDER": "demo"]) { services, client in
            let (browser, _) = try await APITests().signedIn(services, client, email: "ed@example.org")
            #expect(try await browser.get("/pricing").status == .notFound)
            #expect(try await browser.get("/billing").status == .notFound)
            #expect(try await client.execute(uri: "/webhooks/stripe", method: .post, headers: [:], body: ByteBuffer(string: "{}")).status == .notFound)
            let credits = try await browser.get("/credits")
            #expect(!credits.text.contains("/pricing"))
            #expect(!(try await browser.get("/")).text.contains("/pricing"))
        }
    }
}

/// A small deterministic generator (SplitMix64), so the shuffled replay is the same every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
