import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// Billing for admins: payments (everyone's or one person's), credits owed after refunds,
/// recording a refund made outside Easel, revenue by month as a chart, and recent events.
struct AdminBillingController {
    let billing: BillingService
    let database: AppDatabase
    let views: ViewRenderer
    let records: BillingController

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("admin/billing", context: SignedInContext.self)
        group.get(use: self.overview)
        group.post("payments/:id/refund", use: self.recordRefund)
    }

    func requireAdmin(_ context: SignedInContext) throws {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "admin_billing.error_admins_only", english: "Only administrators can see billing.")
        }
    }

    struct AdminPaymentRow: Sendable {
        var row: BillingController.PaymentRow
        var person: String
        var personURL: String?
        var reference: String
        /// Nil when none (a zero would still show in the template).
        var owed: Int?
        var takenBack: Int?
        var refundedOutside: String
        var country: String?
    }

    struct EventRow: Sendable {
        var id: String
        var type: String
        var received: String
        var outcome: String
    }

    struct Page: Sendable {
        var layout: LayoutData
        var filteredEmail: String?
        var payments: [AdminPaymentRow]
        var owed: [AdminPaymentRow]
        var hasPayments = false
        var hasOwed = false
        var chart: String
        var totals: [String]
        var events: [EventRow]
        var notice: String?
        var error: String?
    }

    @Sendable func overview(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let userID = request.uri.queryParameters["user"].flatMap { Int64(String($0)) }
        return try await self.page(context, userID: userID, notice: request.uri.queryParameters["notice"] != nil ? self.views.text("admin_billing.refund_recorded", [:], context) : nil)
    }

    func page(_ context: SignedInContext, userID: Int64?, notice: String? = nil, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let payments = try await self.database.payments(userID: userID, limit: 200)
        let owed = try await self.database.paymentsWithCreditsOwed()
        let emails = try await self.database.emails(userIDs: Set((payments + owed).compactMap(\.userID)))
        let since = Calendar(identifier: .gregorian).date(byAdding: .month, value: -11, to: Date()) ?? Date()
        let revenue = try await self.database.revenueByMonth(since: Self.startOfMonth(since))
        let locale = Locale(identifier: context.language.rawValue)
        func row(_ payment: Payment) -> AdminPaymentRow {
            AdminPaymentRow(
                row: self.records.paymentRow(payment, context),
                person: payment.userID.flatMap { emails[$0] } ?? payment.pseudonym ?? "—",
                personURL: payment.userID.map { "/admin/billing?user=\($0)" },
                reference: payment.reference, owed: payment.creditsOwed > 0 ? payment.creditsOwed : nil,
                takenBack: payment.creditsTakenBack > 0 ? payment.creditsTakenBack : nil,
                refundedOutside: Self.decimal(payment.amountRefundedOutside, currency: payment.currency),
                country: payment.billingCountry
            )
        }
        var page = Page(
            layout: self.views.layout(title: self.views.text("admin_billing.title", [:], context), context: context),
            filteredEmail: userID.map { emails[$0] ?? "#\($0)" },
            payments: payments.map(row), owed: owed.map(row),
            chart: Self.revenueChart(
                revenue, locale: locale, label: self.views.text("admin_billing.chart_label", [:], context),
                figures: SVGChart.Figures(summary: self.views.text("chart.figures", [:], context), keyHeading: self.views.text("chart.month", [:], context))
            ),
            totals: Dictionary(grouping: revenue, by: \.currency).sorted { $0.key < $1.key }.map { currency, months in
                let net = months.reduce(0) { $0 + $1.gross - $1.refunded }
                return self.views.text("admin_billing.total", ["amount": MoneyFormat.string(amount: net, currency: currency, locale: locale)], context)
            },
            events: try await self.database.billingEvents(limit: 30).map {
                EventRow(id: $0.id, type: $0.type, received: self.views.date($0.receivedAt, context), outcome: $0.outcome)
            },
            notice: notice, error: error
        )
        page.hasPayments = !page.payments.isEmpty
        page.hasOwed = !page.owed.isEmpty
        return try self.views.render(page, template: "admin-billing", status: status)
    }

    struct RefundForm: Decodable {
        /// The total refunded outside Easel so far, in the payment's currency ("12.50").
        var amount: String
    }

    @Sendable func recordRefund(_ request: Request, context: SignedInContext) async throws -> Response {
        try self.requireAdmin(context)
        let id = try context.parameters.require("id", as: Int64.self)
        let form = try await URLEncodedFormDecoder().decode(RefundForm.self, from: request, context: context)
        guard let payment = try await self.database.payment(id: id) else {
            throw WebError(.notFound, code: "not_found", key: "admin_billing.error_no_payment", english: "There is no such payment.")
        }
        guard let minor = Self.minorUnits(form.amount, currency: payment.currency), minor >= 0, minor <= payment.amount else {
            return try await self.page(
                context, userID: nil, error: self.views.text("admin_billing.error_amount", [:], context), status: .unprocessableContent
            )
        }
        try await self.database.recordOutsideRefund(paymentID: id, totalAmount: minor)
        return Response(status: .seeOther, headers: [.location: "/admin/billing?notice=refund"])
    }

    /// "12.50" usd → 1250; "1000" jpy → 1000.
    static func minorUnits(_ text: String, currency: String) -> Int? {
        let digits = MoneyFormat.fractionDigits(currency)
        var text = text.trimmingCharacters(in: .whitespaces)
        // A comma is a decimal separator only alone and followed by at most the currency's
        // decimals ("12,50"); "1,000" or "1,234.50" are refused rather than misread.
        if let comma = text.firstIndex(of: ",") {
            let after = text[text.index(after: comma)...]
            guard !text.contains("."), text.filter({ $0 == "," }).count == 1, digits > 0, after.count <= digits else { return nil }
            text.replaceSubrange(comma...comma, with: ".")
        }
        guard text.allSatisfy({ $0.isNumber || $0 == "." }), let value = Decimal(string: text) else { return nil }
        var scaled = value
        for _ in 0..<digits { scaled *= 10 }
        var rounded = Decimal()
        NSDecimalRound(&rounded, &scaled, 0, .plain)
        guard rounded == scaled else { return nil }
        return NSDecimalNumber(decimal: rounded).intValue
    }

    /// 1250 usd → "12.50", for the refund field.
    static func decimal(_ minor: Int, currency: String) -> String {
        let digits = MoneyFormat.fractionDigits(currency)
        guard digits > 0 else { return String(minor) }
        var divisor = 1
        for _ in 0..<digits { divisor *= 10 }
        let fraction = String(abs(minor) % divisor)
        return "\(minor / divisor).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
    }

    static func startOfMonth(_ date: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: calendar.dateComponents([.year, .month], from: date)) ?? date
    }

    /// Net revenue per month as an SVG bar chart (server-drawn: no script, no third party).
    /// One bar per month of the main currency (the one with most money).
    static func revenueChart(_ revenue: [MonthlyRevenue], locale: Locale, label: String, figures: SVGChart.Figures? = nil, now: Date = Date()) -> String {
        let byCurrency = Dictionary(grouping: revenue, by: \.currency)
        guard let (currency, paid) = byCurrency.max(by: { $0.value.reduce(0) { $0 + $1.gross } < $1.value.reduce(0) { $0 + $1.gross } }) else {
            return ""
        }
        // Every one of the last 12 months gets a slot, empty ones too.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let months: [MonthlyRevenue] = (0..<12).reversed().map { back in
            let date = calendar.date(byAdding: .month, value: -back, to: now) ?? now
            let parts = calendar.dateComponents([.year, .month], from: date)
            let name = String(format: "%04d-%02d", parts.year ?? 0, parts.month ?? 0)
            return paid.first { $0.month == name } ?? MonthlyRevenue(month: name, currency: currency, gross: 0, refunded: 0, payments: 0)
        }
        let bars = months.enumerated().map { index, month in
            let value = max(0, month.gross - month.refunded)
            let amount = MoneyFormat.string(amount: value, currency: currency, locale: locale)
            return SVGChart.Bar(
                value: Double(value), axisLabel: index == 0 || month.month.hasSuffix("-01") ? month.month : String(month.month.suffix(2)),
                key: month.month, formatted: amount, valueText: amount
            )
        }
        return SVGChart.bars(bars, label: "\(label) (\(currency.uppercased()))", figures: figures)
    }
}
