import EaselCore
import Foundation

/// Small charts drawn on the server as SVG: no script, no third party, and they print. Each
/// bar or point has a `<title>` (a tooltip); the `<svg>` has `role="img"` and a label; and
/// with `Figures` the same numbers follow as a table in a `<details>`, for screen readers,
/// keyboards and copying.
enum SVGChart {
    struct Bar: Sendable {
        var value: Double
        /// Under the bar; empty for none (with 90 bars, only some are labelled).
        var axisLabel: String
        /// What the bar is for ("2026-11-28"): the tooltip's start and the table's row header.
        var key: String
        /// The value as people read it ("12", "$20.00").
        var formatted: String
        /// Written above the bar when given.
        var valueText: String?

        var title: String { "\(self.key): \(self.formatted)" }
    }

    /// The table under a chart: the disclosure's text and the first column's heading.
    struct Figures: Sendable {
        var summary: String
        var keyHeading: String
    }

    static let width = 640
    static let height = 220
    static let top = 20
    static let bottom = 30

    /// One bar per value, scaled to the largest; nothing when there are no bars.
    static func bars(_ bars: [Bar], label: String, maximumBarWidth: Int = 72, figures: Figures? = nil) -> String {
        guard !bars.isEmpty else { return "" }
        let peak = max(bars.map(\.value).max() ?? 1, 1e-9)
        let slot = Double(self.width) / Double(bars.count)
        let barWidth = min(Double(maximumBarWidth), max(2, slot * 0.6))
        let plot = Double(self.height - self.top - self.bottom)
        var body = ""
        for (index, bar) in bars.enumerated() {
            let barHeight = max(0, plot * bar.value / peak)
            let x = Double(index) * slot + (slot - barWidth) / 2
            let y = Double(self.height - self.bottom) - barHeight
            body += "<g><title>\(Markup.escape(bar.title))</title>"
            body +=
                "<rect x=\"\(self.number(x))\" y=\"\(self.number(y))\" width=\"\(self.number(barWidth))\" height=\"\(self.number(barHeight))\" rx=\"\(barWidth >= 8 ? 3 : 1)\" class=\"bar\"/>"
            if !bar.axisLabel.isEmpty {
                body += self.axisLabel(bar.axisLabel, x: x + barWidth / 2, index: index, count: bars.count)
            }
            if let text = bar.valueText, bar.value > 0 {
                body +=
                    "<text x=\"\(self.number(x + barWidth / 2))\" y=\"\(self.number(max(Double(self.top - 4), y - 4)))\" text-anchor=\"middle\" class=\"value\">\(Markup.escape(text))</text>"
            }
            body += "</g>"
        }
        let table = figures.map { self.table($0, columns: [label], rows: bars.map { ($0.key, [$0.formatted]) }) } ?? ""
        return self.frame(body, label: label, peak: bars.contains { $0.valueText != nil } ? nil : peak) + table
    }

    /// The figures of a chart as a table, folded away under a `<details>`.
    static func table(_ figures: Figures, columns: [String], rows: [(key: String, values: [String])]) -> String {
        var html = "<details class=\"chart-figures\"><summary>\(Markup.escape(figures.summary))</summary><div class=\"scroll\"><table><thead><tr>"
        html += "<th scope=\"col\">\(Markup.escape(figures.keyHeading))</th>"
        html += columns.map { "<th scope=\"col\">\(Markup.escape($0))</th>" }.joined()
        html += "</tr></thead><tbody>"
        for row in rows {
            html += "<tr><th scope=\"row\">\(Markup.escape(row.key))</th>" + row.values.map { "<td>\(Markup.escape($0))</td>" }.joined() + "</tr>"
        }
        return html + "</tbody></table></div></details>"
    }

    struct Series: Sendable {
        /// A CSS class: `line-a`, `line-b`.
        var style: String
        var name: String
        /// One per x position; nil leaves a gap.
        var values: [Double?]
    }

    /// Lines over the same x positions (p50 and p95 of a day, say), with a legend.
    static func lines(_ series: [Series], axisLabels: [String], titles: [String], label: String, unit: String, figures: Figures? = nil) -> String {
        let count = axisLabels.count
        guard count > 0 else { return "" }
        let table =
            figures.map { figures in
                self.table(
                    figures, columns: series.map(\.name),
                    rows: titles.indices.map { index in
                        (titles[index], series.map { line in line.values.indices.contains(index) ? line.values[index].map { "\(self.figure($0)) \(unit)" } ?? "—" : "—" })
                    }
                )
            } ?? ""
        return self.lineChart(series, axisLabels: axisLabels, titles: titles, label: label, unit: unit) + table
    }

    private static func lineChart(_ series: [Series], axisLabels: [String], titles: [String], label: String, unit: String) -> String {
        let count = axisLabels.count
        let values = series.flatMap { $0.values.compactMap { $0 } }
        let slot = Double(self.width) / Double(count)
        // No point yet: the empty frame still shows where the chart will be.
        guard !values.isEmpty else {
            return self.frame(
                axisLabels.enumerated().filter { !$0.element.isEmpty }.map { index, text in
                    self.axisLabel(text, x: Double(index) * slot + slot / 2, index: index, count: count)
                }.joined(), label: label, peak: nil)
        }
        let peak = max(values.max() ?? 1, 1e-9)
        let plot = Double(self.height - self.top - self.bottom)
        func point(_ index: Int, _ value: Double) -> (Double, Double) {
            (Double(index) * slot + slot / 2, Double(self.height - self.bottom) - plot * value / peak)
        }
        var body = ""
        for (index, text) in axisLabels.enumerated() where !text.isEmpty {
            body += self.axisLabel(text, x: Double(index) * slot + slot / 2, index: index, count: count)
        }
        for (position, line) in series.enumerated() {
            var path = ""
            var pen = false
            for (index, value) in line.values.enumerated() {
                guard let value else {
                    pen = false
                    continue
                }
                let (x, y) = point(index, value)
                path += "\(pen ? "L" : "M")\(self.number(x)) \(self.number(y)) "
                pen = true
            }
            body += "<path d=\"\(path.trimmingCharacters(in: .whitespaces))\" class=\"line \(line.style)\" fill=\"none\"/>"
            for (index, value) in line.values.enumerated() {
                guard let value else { continue }
                let (x, y) = point(index, value)
                let title = "\(titles.indices.contains(index) ? titles[index] : ""): \(line.name) \(self.figure(value)) \(unit)"
                body +=
                    "<circle cx=\"\(self.number(x))\" cy=\"\(self.number(y))\" r=\"2.5\" class=\"dot \(line.style)\"><title>\(Markup.escape(title))</title></circle>"
            }
            let legendX = 8 + position * 110
            body += "<rect x=\"\(legendX)\" y=\"4\" width=\"10\" height=\"10\" class=\"swatch \(line.style)\"/>"
            body += "<text x=\"\(legendX + 14)\" y=\"13\" class=\"axis\">\(Markup.escape(line.name))</text>"
        }
        return self.frame(body, label: label, peak: peak, unit: unit)
    }

    /// A label under the x axis; the first and last are anchored inwards so they are not cut off.
    private static func axisLabel(_ text: String, x: Double, index: Int, count: Int) -> String {
        let anchor = count > 1 && index == 0 ? "start" : (count > 1 && index == count - 1 ? "end" : "middle")
        let position = anchor == "start" ? max(0, x - 4) : (anchor == "end" ? min(Double(self.width), x + 4) : x)
        return "<text x=\"\(self.number(position))\" y=\"\(self.height - 10)\" text-anchor=\"\(anchor)\" class=\"axis\">\(Markup.escape(text))</text>"
    }

    /// The `<svg>` with its baseline and, when given, the peak written at the top right.
    private static func frame(_ body: String, label: String, peak: Double?, unit: String = "") -> String {
        var scale = ""
        // An all-zero chart gets no scale: "0" at the top would read as a value.
        if let peak, peak >= 0.05 {
            let text = unit.isEmpty ? self.figure(peak) : "\(self.figure(peak)) \(unit)"
            scale =
                "<line x1=\"0\" y1=\"\(self.top)\" x2=\"\(self.width)\" y2=\"\(self.top)\" class=\"gridline\"/>"
                + "<text x=\"\(self.width - 2)\" y=\"\(self.top - 4)\" text-anchor=\"end\" class=\"axis\">\(Markup.escape(text))</text>"
        }
        return """
            <svg class="chart" viewBox="0 0 \(self.width) \(self.height)" role="img" aria-label="\(Markup.escape(label))" xmlns="http://www.w3.org/2000/svg">\
            <line x1="0" y1="\(self.height - self.bottom)" x2="\(self.width)" y2="\(self.height - self.bottom)" class="baseline"/>\(scale)\(body)</svg>
            """
    }

    /// "12", "3.5", "1,234" stays plain: at most one decimal.
    static func figure(_ value: Double) -> String {
        value.rounded() == value ? String(Int(value)) : String(format: "%.1f", value)
    }

    private static func number(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded.rounded() == rounded ? String(Int(rounded)) : String(format: "%.1f", rounded)
    }
}
