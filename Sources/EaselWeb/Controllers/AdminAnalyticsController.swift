import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// The analytics dashboard for admins: 90 days of visitors, page views, sign-ups,
/// generations (count, success rate, p50/p95 time), credits spent and requests, as SVG charts
/// drawn here, plus the top pages, referrers, countries, devices and screen sizes.
struct AdminAnalyticsController {
    let database: AppDatabase
    let views: ViewRenderer
    /// EASEL_ANALYTICS: when off, only the figures derived from accounts and tasks are shown.
    let analytics: Bool
    static let days = 90

    func addRoutes(to router: Router<AppRequestContext>) {
        router.group("admin/analytics", context: SignedInContext.self).get(use: self.dashboard)
    }

    struct Figure: Sendable {
        var label: String
        var value: String
    }

    struct Chart: Sendable {
        var title: String
        var svg: String
        var total: String?
    }

    struct Row: Sendable {
        var name: String
        var count: Int
        /// Width of the little bar behind the count, in percent of the largest.
        var share: Int
    }

    struct Table: Sendable {
        var title: String
        var column: String
        var rows: [Row]
        var empty: Bool
    }

    struct Page: Sendable {
        var layout: LayoutData
        var analyticsOn: Bool
        var period: String
        var figures: [Figure]
        var charts: [Chart]
        var tables: [Table]
    }

    @Sendable func dashboard(_ request: Request, context: SignedInContext) async throws -> Response {
        guard context.user.role == .admin else {
            throw WebError(.forbidden, code: "forbidden", key: "analytics.error_admins_only", english: "Only administrators can see analytics.")
        }
        let now = Date()
        let days = (0..<Self.days).reversed().map { UTCDay.string(now, minusDays: $0) }
        let first = days[0]
        let traffic = Dictionary(uniqueKeysWithValues: try await self.database.dailyTraffic(since: first).map { ($0.day, $0) })
        let product = try await self.database.productFigures(since: now.addingTimeInterval(-Double(Self.days - 1) * 86400))
        let byDay = Dictionary(uniqueKeysWithValues: product.days.map { ($0.day, $0) })
        let requests = Dictionary(uniqueKeysWithValues: try await self.database.dailyRequests(since: first).map { ($0.day, $0) })
        let top = try await self.database.trafficTop(since: first)

        func t(_ key: String, _ arguments: [String: String] = [:]) -> String { self.views.text(key, arguments, context) }
        // Every 15th day is labelled under the bars ("11-28"); every bar has its date as a tooltip.
        func axis(_ index: Int) -> String { index % 15 == 0 || index == days.count - 1 ? String(days[index].dropFirst(5)) : "" }
        let chartTable = SVGChart.Figures(summary: t("chart.figures"), keyHeading: t("chart.day"))
        func chart(_ titleKey: String, _ values: [Double], format: (Double) -> String = SVGChart.figure) -> String {
            SVGChart.bars(
                values.enumerated().map { index, value in
                    SVGChart.Bar(value: value, axisLabel: axis(index), key: days[index], formatted: format(value), valueText: nil)
                },
                label: t(titleKey), figures: chartTable
            )
        }

        let visitors = days.map { Double(traffic[$0]?.visitors ?? 0) }
        let pageViews = days.map { Double(traffic[$0]?.pageViews ?? 0) }
        let signUps = days.map { Double(byDay[$0]?.signUps ?? 0) }
        let generations = days.map { Double(byDay[$0]?.generations ?? 0) }
        let credits = days.map { Double(byDay[$0]?.creditsSpent ?? 0) }
        let requestCounts = days.map { Double(requests[$0]?.requests ?? 0) }
        let successRates: [Double] = days.map { day in
            guard let figures = byDay[day], figures.succeeded + figures.failed > 0 else { return 0 }
            return 100 * Double(figures.succeeded) / Double(figures.succeeded + figures.failed)
        }
        let succeeded = product.days.reduce(0) { $0 + $1.succeeded }
        let failed = product.days.reduce(0) { $0 + $1.failed }
        let sum = { (values: [Double]) in Int(values.reduce(0, +)) }
        let seconds = { (value: Double?) in value.map { SVGChart.figure($0) + " s" } ?? "—" }

        var charts: [Chart] = []
        if self.analytics {
            charts.append(
                Chart(
                    title: t("analytics.visitors"), svg: chart("analytics.visitors", visitors),
                    total: t("analytics.busiest_day", ["count": String(Int(visitors.max() ?? 0))])))
            charts.append(
                Chart(
                    title: t("analytics.page_views"), svg: chart("analytics.page_views", pageViews),
                    total: t("analytics.total", ["count": String(sum(pageViews))])))
        }
        charts += [
            Chart(
                title: t("analytics.sign_ups"), svg: chart("analytics.sign_ups", signUps),
                total: t("analytics.total", ["count": String(sum(signUps))])),
            Chart(
                title: t("analytics.generations"), svg: chart("analytics.generations", generations),
                total: t("analytics.total", ["count": String(sum(generations))])),
            Chart(title: t("analytics.success_rate"), svg: chart("analytics.success_rate", successRates) { SVGChart.figure($0) + " %" }, total: nil),
            Chart(
                title: t("analytics.generation_time"),
                svg: SVGChart.lines(
                    [
                        .init(style: "line-a", name: "p50", values: days.map { byDay[$0]?.p50Seconds }),
                        .init(style: "line-b", name: "p95", values: days.map { byDay[$0]?.p95Seconds }),
                    ],
                    axisLabels: days.indices.map(axis), titles: days, label: t("analytics.generation_time"), unit: "s", figures: chartTable
                ),
                total: "p50 \(seconds(product.p50Seconds)) · p95 \(seconds(product.p95Seconds))"
            ),
            Chart(
                title: t("analytics.credits_spent"), svg: chart("analytics.credits_spent", credits),
                total: t("analytics.total", ["count": String(sum(credits))])),
            Chart(
                title: t("analytics.requests"), svg: chart("analytics.requests", requestCounts),
                total: t("analytics.total", ["count": String(sum(requestCounts))])),
        ]

        var figures: [Figure] = []
        if self.analytics {
            figures.append(Figure(label: t("analytics.page_views"), value: String(sum(pageViews))))
        }
        figures += [
            Figure(label: t("analytics.sign_ups"), value: String(sum(signUps))),
            Figure(label: t("analytics.generations"), value: String(sum(generations))),
            Figure(
                label: t("analytics.success_rate"),
                value: succeeded + failed == 0 ? "—" : SVGChart.figure((1000 * Double(succeeded) / Double(succeeded + failed)).rounded() / 10) + " %"),
            Figure(label: t("analytics.time_p50"), value: seconds(product.p50Seconds)),
            Figure(label: t("analytics.time_p95"), value: seconds(product.p95Seconds)),
            Figure(label: t("analytics.credits_spent"), value: String(sum(credits))),
        ]

        func table(_ titleKey: String, _ columnKey: String, _ counts: [String: Int]) -> Table {
            let sorted = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(10)
            let peak = max(sorted.first?.value ?? 1, 1)
            return Table(
                title: t(titleKey), column: t(columnKey),
                rows: sorted.map { Row(name: $0.key, count: $0.value, share: max(1, 100 * $0.value / peak)) },
                empty: sorted.isEmpty
            )
        }
        let tables =
            self.analytics
            ? [
                table("analytics.top_pages", "analytics.page", top.pages),
                table("analytics.referrers", "analytics.host", top.referrers),
                table("analytics.countries", "analytics.country", top.countries),
                table("analytics.devices", "analytics.device", top.devices),
                table("analytics.screens", "analytics.screen", top.screens),
            ] : []

        let page = Page(
            layout: self.views.layout(title: t("analytics.title"), context: context), analyticsOn: self.analytics,
            period: t("analytics.period", ["from": first, "to": days[days.count - 1]]), figures: figures, charts: charts, tables: tables
        )
        return try self.views.render(page, template: "admin-analytics")
    }
}
