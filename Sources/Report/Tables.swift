// The paper's tables as Markdown (Table 1: segmentation, Table 2: classification with its
// significance rows) and the number formatting every table and figure shares.

import Metrics

/// One Table 2-style Markdown row: Acc, AUROC, AUPRC, P, R, F, MCC and its interval, 4 decimals.
public func tableRow(_ report: ModelReport) -> String {
    let f = { (x: Double) in formatFixed(x, decimals: 4) }
    return "| \(report.name) | \(f(report.accuracy)) | \(f(report.aurocMicro)) | \(f(report.auprcMicro)) | "
        + "\(f(report.precisionWeighted)) | \(f(report.recallWeighted)) | \(f(report.f1Weighted)) | \(f(report.mcc)) | "
        + "(\(f(report.mccPaperCI.lower)), \(f(report.mccPaperCI.upper))) |"
}

/// The header of `tableRow`'s table.
public let tableHeader = """
    | model | Acc | AUROC (micro) | AUPRC (micro, trapezoid) | P (weighted) | R (weighted) | F (weighted) | MCC | MCC 95% CI (paper's Wald) |
    |---|---|---|---|---|---|---|---|---|
    """

/// `x` with exactly `decimals` digits after the point (round half away from zero).
public func formatFixed(_ x: Double, decimals: Int) -> String {
    guard x.isFinite else { return "NA" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    let integer = Int(scaled) / Int(scale), fraction = Int(scaled) % Int(scale)
    let sign = x < 0 && scaled > 0 ? "-" : ""
    guard decimals > 0 else { return sign + "\(integer)" }
    let digits = String(fraction)
    return sign + "\(integer)." + String(repeating: "0", count: decimals - digits.count) + digits
}

extension MeanSD {
    /// "0.9637±0.0271" as in the paper's tables.
    public var text: String { formatFixed(mean, decimals: 4) + "±" + formatFixed(sd, decimals: 4) }
}

/// Table 2-style rows, then the significance of each comparison against the first model.
public func evaluationMarkdown(_ reports: [ModelReport], _ comparisons: [Comparison]) -> String {
    var lines = [tableHeader] + reports.map(tableRow)
    lines.append("")
    lines.append("MCC interval: the paper's rule (Wald with a t multiplier, 4 dp; SPEC §5.1) — not Clopper–Pearson. "
                 + "Bootstrap intervals for every metric are in metrics.json.")
    if !comparisons.isEmpty {
        lines += ["", "| reference | other | paper rule (inferred) p | McNemar p | ΔMCC (95% paired bootstrap) | bootstrap p | DeLong micro p |",
                  "|---|---|---|---|---|---|---|"]
        for c in comparisons {
            let f = { (x: Double) in formatFixed(x, decimals: 4) }
            lines.append("| \(c.reference) | \(c.other) | \(f(c.paperRule.pValue)) | \(f(c.mcnemar.pValue)) | "
                         + "\(f(c.mccDelta)) (\(f(c.mccDeltaInterval.lower)), \(f(c.mccDeltaInterval.upper))) | "
                         + "\(f(c.pairedBootstrap.pValue)) | \(c.delongMicro.map { f($0.pValue) } ?? "NA") |")
        }
    }
    return lines.joined(separator: "\n") + "\n"
}

/// The paper's Table 1 layout: one row per loss and the ensemble, IoU, Dice and accuracy as
/// mean±SD, the best of each column in bold.
public func table1(_ evaluation: SegmentationEvaluation) -> String {
    let rows = evaluation.models + (evaluation.ensemble.map { [$0] } ?? [])
    let columns: [(String, (SegmentationRow) -> MeanSD)] = [("IoU", \.iou), ("Dice", \.dice), ("Accuracy", \.accuracy)]
    var text = "Table 1. Segmentation performance of the individual U-Nets"
        + (evaluation.ensemble == nil ? "" : " and the bitwise-AND ensemble of the top \(evaluation.ensemble?.models.count ?? 0) by \(evaluation.selectionMetric.rawValue)")
        + " (\(evaluation.images) images, split '\(evaluation.split)', mean ± sample SD per image; compared at \(evaluation.comparedAt)).\n\n"
    text += "| Loss/Method | " + columns.map(\.0).joined(separator: " | ") + " |\n|---|" + columns.map { _ in "---|" }.joined() + "\n"
    let best = columns.map { column in rows.map { column.1($0).mean }.max() ?? 0 }
    for row in rows {
        let cells = columns.enumerated().map { c, column in
            let value = column.1(row)
            return value.mean == best[c] ? "**\(value.text)**" : value.text
        }
        text += "| \(row.name) | " + cells.joined(separator: " | ") + " |\n"
    }
    return text
}

/// A name usable as a file name: letters, digits, '-', '_' and '.'; anything else becomes '_'.
public func fileSafe(_ name: String) -> String {
    String(name.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" })
}
