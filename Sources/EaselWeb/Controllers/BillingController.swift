import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Buying credits with Stripe: the pricing page, Checkout and the Billing Portal on the way out,
/// the success page that waits for the webhook, the person's billing records, and the webhook
/// itself. Only served when Stripe is configured.
struct BillingController {
    let billing: BillingService
    let database: AppDatabase
    let views: ViewRenderer
    let mailQueued: @Sendable () -> Void

    /// Stripe's events are small; anything bigger is not from Stripe.
    static let webhookBodyLimit = 1_048_576

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("pricing", use: self.pricing)
        // Signed by Stripe (HMAC), not by a session: the CSRF check leaves /webhooks/ alone.
        router.post("webhooks/stripe", use: self.webhook)
        let group = router.group(context: SignedInContext.self)
        group.post("billing/checkout", use: self.checkout)
        group.get("billing/success", use: self.success)
        group.get("billing/success/status", use: self.successStatus)
        group.get("billing", use: self.records)
        group.post("billing/portal", use: self.portal)
    }

    // MARK: Pricing

    struct Offer: Sendable {
        var id: String
        var name: String
        var description: String?
        var price: String
        var credits: String
        var note: String?
    }

    struct PricingPage: Sendable {
        var layout: LayoutData
        var plans: [Offer]
        var packs: [Offer]
        // Stored, not computed: templates read stored properties only.
        var hasPlans = false
        var hasPacks = false
        var signedIn: Bool
        var subscribed: Bool
        var canceled: Bool
        var error: String?
        /// Makes a double click on the same page the same Checkout Session.
        var requestKey: String
        var signInURL: String
    }

    @Sendable func pricing(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await self.pricingPage(context, canceled: request.uri.queryParameters["canceled"] != nil, error: nil)
    }

    func pricingPage(_ context: some PageContext, canceled: Bool, error: String?, status: HTTPResponse.Status = .ok) async throws -> Response {
        let catalog = self.billing.catalog
        let locale = Locale(identifier: context.language.rawValue)
        var subscribed = false
        if let user = context.signedInUser {
            subscribed = try await self.database.subscriptions(userID: user.id!).contains { !$0.hasEnded }
        }
        var page = PricingPage(
            layout: self.views.layout(title: self.views.text("pricing.title", [:], context), context: context),
            plans: catalog.plans.map { plan in
                Offer(
                    id: plan.id, name: plan.name, description: plan.description,
                    price: self.views.text("pricing.per_month", ["price": MoneyFormat.string(amount: plan.amount, currency: catalog.currency, locale: locale)], context),
                    credits: self.views.text("pricing.credits_month", ["credits": String(plan.monthlyCredits)], context),
                    note: plan.rolloverCap.map { self.views.text("pricing.rollover", ["cap": String($0)], context) }
                )
            },
            packs: catalog.packs.map { pack in
                Offer(
                    id: pack.id, name: pack.name, description: pack.description,
                    price: MoneyFormat.string(amount: pack.amount, currency: catalog.currency, locale: locale),
                    credits: self.views.text("pricing.credits_once", ["credits": String(pack.credits)], context), note: nil
                )
            },
            signedIn: context.signedInUser != nil, subscribed: subscribed, canceled: canceled, error: error,
            requestKey: UUID().uuidString, signInURL: "/signin?next=/pricing"
        )
        page.hasPlans = !page.plans.isEmpty
        page.hasPacks = !page.packs.isEmpty
        return try self.views.render(page, template: "pricing", status: status)
    }

    // MARK: Checkout

    struct CheckoutForm: Decodable {
        var item: String
        var request_key: String?
    }

    @Sendable func checkout(_ request: Request, context: SignedInContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(CheckoutForm.self, from: request, context: context)
        do {
            let url = try await self.billing.checkout(
                user: context.user, itemID: form.item, requestKey: form.request_key ?? UUID().uuidString, language: context.language
            )
            return Response(status: .seeOther, headers: [.location: url.absoluteString])
        } catch let error as BillingError {
            let (key, status): (String, HTTPResponse.Status) =
                switch error.kind {
                case .unknownItem: ("pricing.error_unknown", .unprocessableContent)
                case .alreadySubscribed: ("pricing.error_subscribed", .conflict)
                default: ("pricing.error_stripe", .serviceUnavailable)
                }
            return try await self.pricingPage(context, canceled: false, error: self.views.text(key, [:], context), status: status)
        }
    }

    // MARK: After checkout

    struct SuccessPage: Sendable {
        var layout: LayoutData
        var statusURL: String
        var landed: Bool
        var failed: Bool
        var balance: Int
    }

    @Sendable func success(_ request: Request, context: SignedInContext) async throws -> Response {
        let query = request.uri.queryParameters
        let sessionID = query["session_id"].map(String.init) ?? ""
        let item = query["item"].map(String.init) ?? ""
        let state = try await self.checkoutState(sessionID: sessionID, item: item, userID: context.user.id!)
        let page = SuccessPage(
            layout: self.views.layout(title: self.views.text("billing_success.title", [:], context), context: context),
            statusURL: "/billing/success/status?" + StudioController.query([("session_id", sessionID), ("item", item)]),
            landed: state == .landed, failed: state == .failed, balance: try await self.database.creditBalance(userID: context.user.id!)
        )
        return try self.views.render(page, template: "billing-success")
    }

    struct SuccessStatus: ResponseEncodable {
        var landed: Bool
        var failed: Bool
        var balance: Int
    }

    /// What the success page's script polls until the webhook has brought the credits.
    @Sendable func successStatus(_ request: Request, context: SignedInContext) async throws -> SuccessStatus {
        let query = request.uri.queryParameters
        let state = try await self.checkoutState(
            sessionID: query["session_id"].map(String.init) ?? "", item: query["item"].map(String.init) ?? "", userID: context.user.id!
        )
        return SuccessStatus(landed: state == .landed, failed: state == .failed, balance: try await self.database.creditBalance(userID: context.user.id!))
    }

    enum CheckoutState { case waiting, landed, failed }

    /// A pack: its payment's status. A plan: a paid invoice of that plan in the last day.
    func checkoutState(sessionID: String, item: String, userID: Int64) async throws -> CheckoutState {
        if let payment = try await self.database.payment(checkoutSessionID: sessionID), payment.userID == userID {
            return payment.status == .paid ? .landed : payment.status == .failed ? .failed : .waiting
        }
        guard self.billing.catalog.plan(id: item) != nil else { return .waiting }
        let recent = Date().addingTimeInterval(-86_400)
        let landed = try await self.database.payments(userID: userID, limit: 10).contains {
            $0.kind == .subscription && $0.productID == item && $0.status == .paid && ($0.paidAt ?? .distantPast) > recent
        }
        return landed ? .landed : .waiting
    }

    // MARK: Records and portal

    struct PaymentRow: Sendable {
        var id: Int64
        var date: String
        var item: String
        var amount: String
        var status: String
        var statusClass: String
        var card: String?
        var credits: Int
        var refunded: String?
    }

    struct SubscriptionRow: Sendable {
        var plan: String
        var status: String
        var renews: String?
        var ends: String?
    }

    struct RecordsPage: Sendable {
        var layout: LayoutData
        var subscriptions: [SubscriptionRow]
        var payments: [PaymentRow]
        var hasPayments = false
        var hasCustomer: Bool
        var error: String?
    }

    @Sendable func records(_ request: Request, context: SignedInContext) async throws -> Response {
        try await self.recordsPage(context, error: nil)
    }

    func recordsPage(_ context: SignedInContext, error: String?, status: HTTPResponse.Status = .ok) async throws -> Response {
        let userID = context.user.id!
        let subscriptions = try await self.database.subscriptions(userID: userID)
        let payments = try await self.database.payments(userID: userID, limit: 100)
        var page = RecordsPage(
            layout: self.views.layout(title: self.views.text("billing.title", [:], context), context: context),
            subscriptions: subscriptions.map { self.subscriptionRow($0, context) },
            payments: payments.map { self.paymentRow($0, context) },
            hasCustomer: try await self.database.stripeCustomerID(userID: userID) != nil,
            error: error
        )
        page.hasPayments = !page.payments.isEmpty
        return try self.views.render(page, template: "billing", status: status)
    }

    func subscriptionRow(_ subscription: Subscription, _ context: some PageContext) -> SubscriptionRow {
        let plan = subscription.planID.flatMap { self.billing.catalog.plan(id: $0)?.name } ?? subscription.planID ?? "—"
        let statusKey = "billing.sub_status_\(subscription.status)"
        let status = self.views.text(statusKey, [:], context)
        let end = subscription.currentPeriodEnd.map { self.views.date($0, context) }
        return SubscriptionRow(
            plan: plan, status: status == statusKey ? subscription.status : status,
            renews: subscription.hasEnded || subscription.cancelAtPeriodEnd ? nil : end,
            ends: !subscription.hasEnded && subscription.cancelAtPeriodEnd ? end : nil
        )
    }

    func paymentRow(_ payment: Payment, _ context: some PageContext) -> PaymentRow {
        let catalog = self.billing.catalog
        let locale = Locale(identifier: context.language.rawValue)
        let item =
            payment.kind == .pack
            ? catalog.pack(id: payment.productID)?.name ?? payment.productID : catalog.plan(id: payment.productID)?.name ?? payment.productID
        let refunded = payment.totalRefunded
        let status = refunded >= payment.amount && payment.amount > 0 ? "refunded" : refunded > 0 ? "partially_refunded" : payment.status.rawValue
        return PaymentRow(
            id: payment.id!, date: self.views.date(payment.paidAt ?? payment.createdAt, context), item: item,
            amount: MoneyFormat.string(amount: payment.amount, currency: payment.currency, locale: locale),
            status: self.views.text("billing.status_\(status)", [:], context),
            statusClass: status == "paid" ? "ok" : status == "failed" ? "bad" : "neutral",
            card: payment.cardLast4.map { "•••• \($0)" }, credits: payment.credits,
            refunded: refunded > 0 ? MoneyFormat.string(amount: refunded, currency: payment.currency, locale: locale) : nil
        )
    }

    @Sendable func portal(_ request: Request, context: SignedInContext) async throws -> Response {
        do {
            let url = try await self.billing.portal(user: context.user)
            return Response(status: .seeOther, headers: [.location: url.absoluteString])
        } catch let error as BillingError {
            let key = error.kind == .noCustomer ? "billing.error_no_customer" : "billing.error_stripe"
            return try await self.recordsPage(context, error: self.views.text(key, [:], context), status: error.kind == .noCustomer ? .conflict : .serviceUnavailable)
        }
    }

    // MARK: Webhook

    /// 200 once the event is applied or set aside (so Stripe stops retrying), 400 for a bad
    /// signature or body, 500 when the database failed (so Stripe tries again later).
    @Sendable func webhook(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: Self.webhookBodyLimit)
        do {
            let outcome = try await self.billing.handleWebhook(body: Array(buffer: body), signature: request.headers[HTTPField.Name("Stripe-Signature")!])
            if outcome == .applied { self.mailQueued() }
            return Self.json(.ok, #"{"received":true}"#)
        } catch let error as BillingError where error.kind == .badWebhook {
            return Self.json(.badRequest, #"{"error":{"message":"# + Self.quoted(error.message) + "}}")
        }
    }

    static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func quoted(_ text: String) -> String {
        String(decoding: (try? JSONEncoder().encode(text)) ?? Data(#""""#.utf8), as: UTF8.self)
    }
}
