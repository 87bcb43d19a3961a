// Figures as standalone SVG (Figs 3–5 of the paper): confusion matrices, ROC and PR curves, and
// reliability diagrams, with titles, axis labels and legends; they open in any browser.

import Metrics

/// Colours of the classes and of the pooled (micro) curve.
private let seriesColors = ["#d62728", "#2ca02c", "#1f77b4", "#111111"]

/// An SVG document under construction.
struct SVG {
    let width: Double
    let height: Double
    private(set) var body: [String] = []

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func add(_ element: String) { body.append(element) }

    mutating func text(_ value: String, x: Double, y: Double, size: Double = 13, anchor: String = "middle",
                       weight: String = "normal", rotate: Bool = false, fill: String = "#222") {
        let transform = rotate ? " transform=\"rotate(-90 \(fmt(x)) \(fmt(y)))\"" : ""
        add("<text x=\"\(fmt(x))\" y=\"\(fmt(y))\" font-size=\"\(fmt(size))\" text-anchor=\"\(anchor)\" font-weight=\"\(weight)\" fill=\"\(fill)\"\(transform)>\(escape(value))</text>")
    }

    var document: String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(height))" viewBox="0 0 \(fmt(width)) \(fmt(height))" font-family="Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        \(body.joined(separator: "\n"))
        </svg>

        """
    }
}

private func fmt(_ x: Double) -> String { formatFixed(x, decimals: 2) }

private func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

/// A confusion matrix: counts with the row percentage, cells shaded by the row-normalised value.
public func confusionMatrixSVG(_ matrix: ConfusionMatrix, classNames: [String], title: String) -> String {
    let k = matrix.classes, cell = 110.0, left = 150.0, top = 70.0
    var svg = SVG(width: left + cell * Double(k) + 40, height: top + cell * Double(k) + 80)
    svg.text(title, x: svg.width / 2, y: 28, size: 16, weight: "bold")
    let normalized = matrix.rowNormalized
    for t in 0..<k {
        for p in 0..<k {
            let value = normalized[t][p]
            let shade = Int(255 - 200 * value)
            let x = left + Double(p) * cell, y = top + Double(t) * cell
            svg.add("<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(cell))\" height=\"\(fmt(cell))\" fill=\"rgb(\(shade),\(shade),255)\" stroke=\"#444\"/>")
            let ink = value > 0.55 ? "white" : "#111"
            svg.text("\(matrix.counts[t][p])", x: x + cell / 2, y: y + cell / 2 - 2, size: 20, weight: "bold", fill: ink)
            svg.text("\(formatFixed(100 * value, decimals: 1))%", x: x + cell / 2, y: y + cell / 2 + 20, size: 12, fill: ink)
        }
        svg.text(classNames[t], x: left - 10, y: top + (Double(t) + 0.5) * cell + 4, anchor: "end")
        svg.text(classNames[t], x: left + (Double(t) + 0.5) * cell, y: top + Double(k) * cell + 22)
    }
    svg.text("Predicted class", x: left + cell * Double(k) / 2, y: top + Double(k) * cell + 50, size: 14)
    svg.text("True class", x: 24, y: top + cell * Double(k) / 2, size: 14, rotate: true)
    return svg.document
}

/// One line series of a chart.
public struct Series {
    public var label: String
    public var curve: Curve
    public var color: String
    public var dashed: Bool = false

    public init(label: String, curve: Curve, color: String, dashed: Bool = false) {
        self.label = label
        self.curve = curve
        self.color = color
        self.dashed = dashed
    }
}

/// A unit-square line chart with axes, ticks at 0.2, a legend and an optional diagonal.
public func lineChartSVG(_ series: [Series], title: String, xLabel: String, yLabel: String, diagonal: Bool,
                         bars: [(lower: Double, upper: Double, value: Double)] = []) -> String {
    let left = 70.0, top = 50.0, size = 400.0
    var svg = SVG(width: left + size + 230, height: top + size + 70)
    svg.text(title, x: left + size / 2, y: 28, size: 16, weight: "bold")
    func px(_ x: Double) -> Double { left + size * x }
    func py(_ y: Double) -> Double { top + size * (1 - y) }
    for tick in stride(from: 0.0, through: 1.0001, by: 0.2) {
        svg.add("<line x1=\"\(fmt(px(tick)))\" y1=\"\(fmt(py(0)))\" x2=\"\(fmt(px(tick)))\" y2=\"\(fmt(py(1)))\" stroke=\"#eee\"/>")
        svg.add("<line x1=\"\(fmt(px(0)))\" y1=\"\(fmt(py(tick)))\" x2=\"\(fmt(px(1)))\" y2=\"\(fmt(py(tick)))\" stroke=\"#eee\"/>")
        svg.text(formatFixed(tick, decimals: 1), x: px(tick), y: py(0) + 18, size: 11)
        svg.text(formatFixed(tick, decimals: 1), x: px(0) - 8, y: py(tick) + 4, size: 11, anchor: "end")
    }
    svg.add("<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(size))\" height=\"\(fmt(size))\" fill=\"none\" stroke=\"#333\"/>")
    for bar in bars where bar.value.isFinite {
        svg.add("<rect x=\"\(fmt(px(bar.lower)))\" y=\"\(fmt(py(bar.value)))\" width=\"\(fmt(px(bar.upper) - px(bar.lower)))\" height=\"\(fmt(py(0) - py(bar.value)))\" fill=\"#9ecae1\" stroke=\"#3182bd\"/>")
    }
    if diagonal {
        svg.add("<line x1=\"\(fmt(px(0)))\" y1=\"\(fmt(py(0)))\" x2=\"\(fmt(px(1)))\" y2=\"\(fmt(py(1)))\" stroke=\"#999\" stroke-dasharray=\"5,4\"/>")
    }
    for s in series {
        let points = zip(s.curve.x, s.curve.y).filter { $0.0.isFinite && $0.1.isFinite }
            .map { "\(fmt(px($0.0))),\(fmt(py($0.1)))" }.joined(separator: " ")
        let dash = s.dashed ? " stroke-dasharray=\"6,3\"" : ""
        svg.add("<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>")
    }
    for (i, s) in series.enumerated() {
        let y = top + 20 + Double(i) * 22
        svg.add("<line x1=\"\(fmt(left + size + 20))\" y1=\"\(fmt(y - 4))\" x2=\"\(fmt(left + size + 50))\" y2=\"\(fmt(y - 4))\" stroke=\"\(s.color)\" stroke-width=\"3\"/>")
        svg.text(s.label, x: left + size + 58, y: y, size: 12, anchor: "start")
    }
    if !bars.isEmpty {
        let y = top + 20 + Double(series.count) * 22
        svg.add("<rect x=\"\(fmt(left + size + 20))\" y=\"\(fmt(y - 11))\" width=\"30\" height=\"12\" fill=\"#9ecae1\" stroke=\"#3182bd\"/>")
        svg.text("accuracy per bin", x: left + size + 58, y: y, size: 12, anchor: "start")
    }
    svg.text(xLabel, x: left + size / 2, y: top + size + 45, size: 14)
    svg.text(yLabel, x: 22, y: top + size / 2, size: 14, rotate: true)
    return svg.document
}

/// ROC curves: micro (the paper's) and one per class, with their areas in the legend.
public func rocSVG(_ report: ModelReport, classNames: [String]) -> String {
    var series = [Series(label: "micro (AUC \(formatFixed(report.aurocMicro, decimals: 4)))", curve: report.curves.rocMicro,
                         color: seriesColors[3])]
    for (k, curve) in report.curves.rocPerClass.enumerated() {
        series.append(Series(label: "\(classNames[k]) (AUC \(formatFixed(curve.area, decimals: 4)))", curve: curve,
                             color: seriesColors[k % 3], dashed: true))
    }
    return lineChartSVG(series, title: "ROC — \(report.name)", xLabel: "False positive rate", yLabel: "True positive rate", diagonal: true)
}

/// Precision–recall curves: micro (the paper's AUPRC is its trapezoid) and one per class.
public func prSVG(_ report: ModelReport, classNames: [String]) -> String {
    var series = [Series(label: "micro (area \(formatFixed(report.auprcMicro, decimals: 4)))", curve: report.curves.prMicro,
                         color: seriesColors[3])]
    for (k, curve) in report.curves.prPerClass.enumerated() {
        series.append(Series(label: "\(classNames[k]) (area \(formatFixed(curve.area, decimals: 4)))", curve: curve,
                             color: seriesColors[k % 3], dashed: true))
    }
    return lineChartSVG(series, title: "Precision–recall — \(report.name)", xLabel: "Recall", yLabel: "Precision", diagonal: false)
}

/// A reliability diagram: accuracy per equal-width confidence bin, the diagonal of perfect
/// calibration, and the ECE in the title.
public func reliabilitySVG(_ report: ModelReport) -> String {
    let summary = report.calibration.equalWidth
    let filled = summary.bins.filter { $0.count > 0 }
    let bars = filled.map { (lower: $0.lower, upper: $0.upper, value: $0.accuracy) }
    let confidence = Series(label: "mean confidence", curve: Curve(x: filled.map { ($0.lower + $0.upper) / 2 }, y: filled.map { $0.confidence }),
                            color: "#ff7f0e")
    return lineChartSVG([confidence], title: "Reliability — \(report.name) (ECE \(formatFixed(summary.ece, decimals: 4)))",
                        xLabel: "Confidence (\(summary.binning))", yLabel: "Accuracy", diagonal: true, bars: bars)
}
