// The reproduction report: Tables 1–5 in the paper's layout with every cell beside the paper's
// value and the difference, the MCC intervals, the paper's 25 significance claims checked on our
// numbers, the figures, and what this run did differently and where every number came from.

import Metrics

/// One classification table of the reproduction: an `evaluate` artifact's rows.
public struct ClassificationTable: Sendable {
    public var title: String
    /// "evaluate/<variant>/<key>".
    public var artifact: String
    public var split: String
    public var reports: [ModelReport]
    /// The paper's rows of this table (matched by name).
    public var paper: [PaperClassificationRow]
    /// Figures of this table's rows: file beside report.md, caption, SVG text.
    public var figures: [(file: String, caption: String, svg: String)]

    public init(title: String, artifact: String, split: String, reports: [ModelReport], paper: [PaperClassificationRow],
                figures: [(file: String, caption: String, svg: String)]) {
        self.title = title
        self.artifact = artifact
        self.split = split
        self.reports = reports
        self.paper = paper
        self.figures = figures
    }
}

/// A Grad-CAM artifact's sheet and numbers.
public struct GradCAMSection: Sendable {
    public var title: String
    public var artifact: String
    public var sheetFile: String
    public var sheet: [UInt8]
    public var lines: [String]

    public init(title: String, artifact: String, sheetFile: String, sheet: [UInt8], lines: [String]) {
        self.title = title
        self.artifact = artifact
        self.sheetFile = sheetFile
        self.sheet = sheet
        self.lines = lines
    }
}

/// Everything the report shows, gathered from one reproduction's artifacts.
public struct ReproductionInputs: Sendable {
    public var profile: String
    public var segmentation: (evaluation: SegmentationEvaluation, artifact: String)?
    public var tables: [ClassificationTable]
    /// Predictions of each row (by row name) on the scored split, for the paired tests.
    public var predictions: [String: Predictions]
    public var gradcam: [GradCAMSection]
    /// What this run did differently from the paper, one sentence each.
    public var protocolNotes: [String]
    /// Provenance rows: stage, variant, key, seconds, threads, BLAS, convolution.
    public var provenance: [[String]]
    /// Build and environment facts: commit, tool version, total compute time.
    public var environment: [String]

    public init(profile: String, segmentation: (evaluation: SegmentationEvaluation, artifact: String)?, tables: [ClassificationTable],
                predictions: [String: Predictions], gradcam: [GradCAMSection], protocolNotes: [String],
                provenance: [[String]], environment: [String]) {
        self.profile = profile
        self.segmentation = segmentation
        self.tables = tables
        self.predictions = predictions
        self.gradcam = gradcam
        self.protocolNotes = protocolNotes
        self.provenance = provenance
        self.environment = environment
    }
}

/// "0.9312 / 0.9279 (+0.0033)": ours, the paper's, and the difference; ours alone without a paper value.
public func besidePaper(_ ours: Double, _ paper: Double?) -> String {
    let f = { (x: Double) in formatFixed(x, decimals: 4) }
    guard let paper else { return f(ours) }
    let delta = ours - paper
    return "\(f(ours)) / \(f(paper)) (\(delta >= 0 ? "+" : "")\(f(delta)))"
}

/// The report document.
public func reproductionReport(_ inputs: ReproductionInputs) -> Document {
    var doc = Document(title: "Reproduction report — multi-loss ensemble deep learning for pediatric chest X-rays (profile '\(inputs.profile)')")
    doc.blocks.append(.paragraph("Every number below comes from the artifact named beside its table. Cells read **ours / paper (difference)**; "
                                 + "the paper's values are SPEC §10's (Rajaraman, Zamzmi & Antani 2021), with its two mistyped MCC intervals corrected and marked ✱."))
    doc.blocks.append(.heading(level: 2, text: "Protocol: what this run did differently"))
    doc.blocks.append(.bullets(inputs.protocolNotes))
    let absent = notYetShown(inputs)
    if !absent.isEmpty {
        doc.blocks.append(.heading(level: 2, text: "Not in this report yet"))
        doc.blocks.append(.paragraph("This report was made from part of a reproduction; what the paper shows and this run has not produced:"))
        doc.blocks.append(.bullets(absent))
    }
    if let (evaluation, artifact) = inputs.segmentation { doc.blocks += segmentationBlocks(evaluation, artifact: artifact) }
    for table in inputs.tables { doc.blocks += classificationBlocks(table) }
    if let proposed = inputs.tables.lazy.flatMap(\.reports).first(where: { $0.name == "proposed" }) {
        doc.blocks += table5Blocks(proposed)
    }
    doc.blocks += claimBlocks(inputs)
    if !inputs.gradcam.isEmpty {
        doc.blocks.append(.heading(level: 2, text: "Fig 6 — Grad-CAM"))
        for section in inputs.gradcam {
            doc.blocks.append(.paragraph("\(section.title), from `\(section.artifact)`."))
            doc.blocks.append(.bullets(section.lines))
            doc.blocks.append(.figure(file: section.sheetFile, caption: section.title, svg: nil, png: section.sheet))
        }
    }
    doc.blocks.append(.heading(level: 2, text: "Provenance"))
    doc.blocks.append(.bullets(inputs.environment))
    doc.blocks.append(.table(header: ["stage", "variant", "key", "wall time (s)", "threads", "BLAS", "convolution"], rows: inputs.provenance))
    return doc
}

/// What the paper shows that `inputs` lacks, one line per table or figure: a whole table, or the
/// paper's rows this run has no row for (an interrupted or partial reproduction). Empty when
/// every table, every paper row and a Grad-CAM figure are there.
public func notYetShown(_ inputs: ReproductionInputs) -> [String] {
    func listing(_ names: [String]) -> String { names.joined(separator: ", ") }
    var lines: [String] = []
    if let (evaluation, _) = inputs.segmentation {
        var ours = Set(evaluation.models.map(\.name))
        if evaluation.ensemble != nil { ours.insert("ensemble") }
        let absent = paperTable1.filter { !ours.contains($0.name) }.map(\.paperName)
        if !absent.isEmpty { lines.append("Table 1 — rows not run: \(listing(absent))") }
    } else {
        lines.append("Table 1 — lung segmentation: not given (no segment-evaluate artifact)")
    }
    for expected in paperClassificationTables {
        guard let table = inputs.tables.first(where: { $0.title == expected.title }) else {
            lines.append("\(expected.title): not given (no evaluate artifact)")
            continue
        }
        let ours = Set(table.reports.map(\.name))
        let absent = expected.rows.filter { !ours.contains($0.name) }.map(\.paperName)
        if !absent.isEmpty { lines.append("\(expected.title) — rows not run: \(listing(absent))") }
    }
    if !inputs.tables.contains(where: { $0.reports.contains { $0.name == "proposed" } }) {
        lines.append("Table 5 — against the literature: needs the proposed model (Table 4)")
    }
    if inputs.gradcam.isEmpty { lines.append("Fig 6 — Grad-CAM: not given (no gradcam artifact)") }
    return lines
}

private func segmentationBlocks(_ evaluation: SegmentationEvaluation, artifact: String) -> [Block] {
    let rows = evaluation.models + (evaluation.ensemble.map { [$0] } ?? [])
    let paper = Dictionary(uniqueKeysWithValues: paperTable1.map { ($0.name, $0) })
    func cell(_ ours: MeanSD, _ theirs: (mean: Double, sd: Double)?) -> String {
        guard let theirs else { return ours.text }
        return "\(ours.text) / \(formatFixed(theirs.mean, decimals: 4))±\(formatFixed(theirs.sd, decimals: 4)) (\(signed(ours.mean - theirs.mean)))"
    }
    return [
        .heading(level: 2, text: "Table 1 — lung segmentation"),
        .paragraph("From `\(artifact)`: \(evaluation.images) images of split '\(evaluation.split)', mean ± SD per image, compared at "
                   + "\(evaluation.comparedAt); the top models by \(evaluation.selectionMetric.rawValue) are ANDed. The paper's Table 1 is "
                   + "internally inconsistent (its IoU and Dice do not correspond, SPEC §1.2): read the differences as orientation, not targets."),
        .table(header: ["loss / method", "IoU", "Dice", "accuracy"], rows: rows.map { row in
            let key = row.models.count > 1 ? "ensemble" : row.name
            let p = paper[key]
            return [p?.paperName ?? row.name, cell(row.iou, p?.iou), cell(row.dice, p?.dice), cell(row.accuracy, p?.accuracy)]
        }),
    ]
}

private func signed(_ x: Double) -> String { (x >= 0 ? "+" : "") + formatFixed(x, decimals: 4) }

private func classificationBlocks(_ table: ClassificationTable) -> [Block] {
    let paper = Dictionary(uniqueKeysWithValues: table.paper.map { ($0.name, $0) })
    let rows = table.reports.map { r -> [String] in
        let p = paper[r.name]
        let ci = "(\(formatFixed(r.mccPaperCI.lower, decimals: 4)), \(formatFixed(r.mccPaperCI.upper, decimals: 4)))"
        let paperCI = p.map { p -> String in
            let shown = p.correctedCI ?? p.printedCI
            return "(\(formatFixed(shown.0, decimals: 4)), \(formatFixed(shown.1, decimals: 4)))" + (p.correctedCI == nil ? "" : "✱")
        }
        let bca = r.bootstrap["mcc"].map { "(\(formatFixed($0.bca.lower, decimals: 4)), \(formatFixed($0.bca.upper, decimals: 4)))" } ?? "NA"
        return [p?.paperName ?? r.name, besidePaper(r.accuracy, p?.accuracy), besidePaper(r.aurocMicro, p?.auroc),
                besidePaper(r.auprcMicro, p?.auprc), besidePaper(r.precisionWeighted, p?.precision),
                besidePaper(r.recallWeighted, p?.recall), besidePaper(r.f1Weighted, p?.f1), besidePaper(r.mcc, p?.mcc),
                ci + (paperCI.map { " / " + $0 } ?? ""), bca]
    }
    var blocks: [Block] = [
        .heading(level: 2, text: table.title),
        .paragraph("From `\(table.artifact)`, scored on the \(table.split) split (\(table.reports.first?.images ?? 0) images; the paper's: \(paperTestImages) test images). "
                   + "AUROC is the micro average, AUPRC the trapezoid under the micro PR curve, P/R/F weighted by support; the MCC interval is "
                   + "the paper's rule (Wald with a t multiplier, SPEC §5.1 — not Clopper–Pearson), beside a stratified-bootstrap BCa interval."),
        .table(header: ["model", "accuracy", "AUROC", "AUPRC", "precision", "recall", "F1", "MCC", "MCC 95% CI (paper's rule) / paper", "MCC 95% BCa"],
               rows: rows),
    ]
    for figure in table.figures {
        blocks.append(.figure(file: figure.file, caption: figure.caption, svg: figure.svg, png: nil))
    }
    return blocks
}

private func table5Blocks(_ proposed: ModelReport) -> [Block] {
    let literature = paperLiteratureRow
    let paperProposed = paperTable4.first { $0.name == "proposed" }!
    func row(_ name: String, _ v: [Double?]) -> [String] {
        [name] + v.map { $0.map { formatFixed($0, decimals: 4) } ?? "NA" }
    }
    return [
        .heading(level: 2, text: "Table 5 — against the literature"),
        .paragraph("The literature row is the paper's (Rajaraman et al. [24], on the same test set); it cannot be recomputed here."),
        .table(header: ["model", "accuracy", "AUROC", "AUPRC", "precision", "recall", "F1", "MCC"], rows: [
            row("proposed (ours)", [proposed.accuracy, proposed.aurocMicro, proposed.auprcMicro, proposed.precisionWeighted,
                                    proposed.recallWeighted, proposed.f1Weighted, proposed.mcc]),
            row("proposed (paper)", [paperProposed.accuracy, paperProposed.auroc, paperProposed.auprc, paperProposed.precision,
                                     paperProposed.recall, paperProposed.f1, paperProposed.mcc]),
            row(literature.paperName, [literature.accuracy, literature.auroc, literature.auprc, literature.precision,
                                       literature.recall, literature.f1, literature.mcc]),
        ]),
    ]
}

/// One of the paper's claims checked on our numbers; nil fields where this run lacks a row.
public struct ClaimCheck: Sendable {
    public let claim: SignificanceClaim
    public let referenceMCC: Double?
    public let otherMCC: Double?
    /// The paper's inferred rule (SPEC §8).
    public let test: TestResult?
    /// McNemar on the paired predictions, where both rows' predictions are given.
    public let mcnemar: TestResult?

    /// Whether our numbers agree with the paper's verdict (nil: not run). For a claim of
    /// significance the reference must also be the better one.
    public var held: Bool? {
        guard let test, let referenceMCC, let otherMCC else { return nil }
        return claim.significant ? test.significant && referenceMCC > otherMCC : !test.significant
    }
}

/// The paper's 25 claims (SPEC §8) decided on the MCCs of `inputs`' tables, each reference's
/// standard error at its own image count; [24]'s row is the paper's.
public func checkClaims(_ inputs: ReproductionInputs) -> [ClaimCheck] {
    var mcc: [String: (value: Double, n: Int)] = [:]
    for table in inputs.tables { for r in table.reports where mcc[r.name] == nil { mcc[r.name] = (r.mcc, r.images) } }
    mcc[paperLiteratureRow.name] = (paperLiteratureRow.mcc, paperTestImages)
    return paperClaims.map { claim in
        let reference = mcc[claim.reference], other = mcc[claim.other]
        var paired: TestResult?
        if let a = inputs.predictions[claim.reference], let b = inputs.predictions[claim.other], a.ids == b.ids, a.labels == b.labels {
            paired = mcnemar(a, b)
        }
        let test = reference.flatMap { r in other.map { paperSignificance(reference: r.value, other: $0.value, n: r.n) } }
        return ClaimCheck(claim: claim, referenceMCC: reference?.value, otherMCC: other?.value, test: test, mcnemar: paired)
    }
}

/// The claims table: verdicts by the paper's rule, McNemar beside them.
private func claimBlocks(_ inputs: ReproductionInputs) -> [Block] {
    let checks = checkClaims(inputs)
    let f = { (x: Double?) in x.map { formatFixed($0, decimals: 4) } ?? "NA" }
    let rows = checks.map { c -> [String] in
        [c.claim.table, "\(c.claim.reference) vs \(c.claim.other)", c.claim.significant ? "significant" : "not significant",
         f(c.referenceMCC), f(c.otherMCC), f(c.test?.pValue), c.held.map { $0 ? "held" : "not held" } ?? "not run", f(c.mcnemar?.pValue)]
    }
    let checked = checks.filter { $0.held != nil }.count, held = checks.filter { $0.held == true }.count
    return [
        .heading(level: 2, text: "The paper's 25 significance claims, on our numbers"),
        .paragraph("\(held) of \(checked) claims that could be checked hold (\(paperClaims.count - checked) need rows this run did not produce). "
                   + "Test: the paper's rule as SPEC §8 infers it — a one-sample z-test of the other model's MCC against the reference's "
                   + "Wald standard error, p < 0.05 (it reproduces all 25 claims on the paper's own numbers); a claim that the reference is "
                   + "significantly better holds only when it is also the higher one. McNemar's test on the paired "
                   + "predictions is given beside it as the sound paired test."),
        .table(header: ["table", "reference vs other", "paper says", "MCC reference", "MCC other", "p (paper's rule)", "on our numbers", "McNemar p"],
               rows: rows),
    ]
}
