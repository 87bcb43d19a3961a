// The paper's published numbers (Rajaraman, Zamzmi & Antani 2021; SPEC §10), keyed by the names
// our stages give the same rows, and its 25 significance claims (SPEC §8). The two printed MCC
// intervals that are typos (Table 2 calibrated CCE, Table 3 top-5 weighted average) carry their
// corrected bounds and are marked.

/// One classification row as the paper printed it.
public struct PaperClassificationRow: Sendable {
    public let name: String
    public let paperName: String
    public let accuracy, auroc: Double
    /// nil where the paper printed "NA".
    public let auprc: Double?
    public let precision, recall, f1, mcc: Double
    public let printedCI: (Double, Double)
    /// The interval recomputed with the paper's own rule (SPEC §5.1), where the print is a typo.
    public let correctedCI: (Double, Double)?
}

/// One segmentation row of Table 1 (mean ± SD).
public struct PaperSegmentationRow: Sendable {
    public let name: String
    public let paperName: String
    public let iou, dice, accuracy: (mean: Double, sd: Double)
}

/// The paper's test set size (Kermany's 624 test images).
public let paperTestImages = 624

/// Table 1, keyed by segmentation loss (and "ensemble" for the AND of the top 3). SPEC §1.2: the
/// table is internally inconsistent (IoU and Dice do not correspond), so no cell is a hard target.
public let paperTable1: [PaperSegmentationRow] = [
    .init(name: "bce", paperName: "BCE", iou: (0.8186, 0.0384), dice: (0.9571, 0.0361), accuracy: (0.9720, 0.0096)),
    .init(name: "weighted-bce-dice", paperName: "Weighted BCE-Dice", iou: (0.8465, 0.0401), dice: (0.9601, 0.0396), accuracy: (0.9732, 0.0104)),
    .init(name: "focal", paperName: "Focal", iou: (0.2601, 0.0621), dice: (0.9189, 0.0527), accuracy: (0.7788, 0.0485)),
    .init(name: "tversky", paperName: "Tversky", iou: (0.9360, 0.0368), dice: (0.9624, 0.0225), accuracy: (0.9912, 0.0102)),
    .init(name: "focal-tversky", paperName: "Focal Tversky", iou: (0.9510, 0.0415), dice: (0.9637, 0.0271), accuracy: (0.9925, 0.0130)),
    .init(name: "ensemble", paperName: "Ensemble (AND of top-3)", iou: (0.9518, 0.0462), dice: (0.9652, 0.0309), accuracy: (0.9927, 0.0117)),
]

private func row(_ name: String, _ paperName: String, _ v: [Double], _ ci: (Double, Double),
                 corrected: (Double, Double)? = nil) -> PaperClassificationRow {
    PaperClassificationRow(name: name, paperName: paperName, accuracy: v[0], auroc: v[1], auprc: v[2].isNaN ? nil : v[2],
                           precision: v[3], recall: v[4], f1: v[5], mcc: v[6], printedCI: ci, correctedCI: corrected)
}

/// Table 2, keyed by loss name.
public let paperTable2: [PaperClassificationRow] = [
    row("cce", "CCE", [0.9279, 0.9921, 0.9857, 0.9292, 0.9279, 0.9282, 0.8899], (0.8653, 0.9145)),
    row("cce-entropy", "CCE + entropy reg (β=2)", [0.9311, 0.9913, 0.9844, 0.9337, 0.9311, 0.9319, 0.8953], (0.8712, 0.9194)),
    row("kl", "KL", [0.9231, 0.9900, 0.9825, 0.9261, 0.9231, 0.9240, 0.8831], (0.8578, 0.9084)),
    row("focal", "Categorical focal (γ=1)", [0.9054, 0.9840, 0.9753, 0.9079, 0.9054, 0.9054, 0.8562], (0.8286, 0.8838)),
    row("hinge", "Categorical hinge", [0.9247, 0.9892, 0.9803, 0.9280, 0.9247, 0.9255, 0.8858], (0.8608, 0.9108)),
    row("smoothed-cce", "Smoothed CCE (0.2)", [0.9231, 0.9899, 0.9821, 0.9252, 0.9231, 0.9237, 0.8829], (0.8576, 0.9082)),
    row("smoothed-focal", "Smoothed focal (0.2)", [0.9279, 0.9847, 0.9744, 0.9317, 0.9279, 0.9287, 0.8909], (0.8664, 0.9154)),
    row("calibrated-cce", "Calibrated CCE (λ=10)", [0.9343, 0.9928, 0.9869, 0.9345, 0.9343, 0.9338, 0.8996], (0.8760, 0.9132),
        corrected: (0.8760, 0.9232)),
    row("calibrated-kl", "Calibrated KL (λ=1)", [0.9215, 0.9895, 0.9817, 0.9239, 0.9215, 0.9217, 0.8807], (0.8552, 0.9062)),
    row("calibrated-focal", "Calibrated focal (γ=λ=1)", [0.9167, 0.9860, 0.9777, 0.9187, 0.9167, 0.9164, 0.8734], (0.8473, 0.8995)),
    row("calibrated-hinge", "Calibrated hinge (λ=10)", [0.9279, 0.9894, 0.9803, 0.9292, 0.9279, 0.9275, 0.8903], (0.8657, 0.9149)),
    row("calibrated-negative-entropy", "Calibrated negative entropy (β=1e-3, λ=10)",
        [0.9311, 0.9917, 0.9851, 0.9316, 0.9311, 0.9308, 0.8947], (0.8706, 0.9188)),
]

/// Table 3, keyed as the Makefile names the ensemble rows (`top<K>-<method>`).
public let paperTable3: [PaperClassificationRow] = [
    row("top3-vote", "Top-3 max voting", [0.9295, 0.9471, 0.9412, 0.9305, 0.9295, 0.9297, 0.8923], (0.8679, 0.9167)),
    row("top3-average", "Top-3 simple averaging", [0.9279, 0.9924, 0.9863, 0.9287, 0.9279, 0.9281, 0.8898], (0.8652, 0.9144)),
    row("top3-weighted", "Top-3 weighted averaging", [0.9343, 0.9925, 0.9865, 0.9345, 0.9343, 0.9338, 0.8996], (0.8760, 0.9232)),
    row("top3-stacking", "Top-3 stacking", [0.9263, 0.9900, 0.9831, 0.9284, 0.9263, 0.9269, 0.8877], (0.8629, 0.9125)),
    row("top5-vote", "Top-5 max voting", [0.9327, 0.9495, 0.9439, 0.9334, 0.9327, 0.9327, 0.8972], (0.8733, 0.9211)),
    row("top5-average", "Top-5 simple averaging", [0.9295, 0.9923, 0.9863, 0.9311, 0.9295, 0.9298, 0.8926], (0.8683, 0.9169)),
    row("top5-weighted", "Top-5 weighted averaging", [0.9359, 0.9925, 0.9865, 0.9375, 0.9359, 0.9363, 0.9024], (0.8791, 0.9157),
        corrected: (0.8791, 0.9257)),
    row("top5-stacking", "Top-5 stacking", [0.9279, 0.9873, 0.9801, 0.9303, 0.9279, 0.9286, 0.8903], (0.8657, 0.9149)),
]

/// Table 4, keyed as the Makefile names its rows.
public let paperTable4: [PaperClassificationRow] = [
    row("model-level-top3", "Model-level top-3", [0.9327, 0.9933, 0.9881, 0.9334, 0.9327, 0.9330, 0.8970], (0.8731, 0.9209)),
    row("model-level-top5", "Model-level top-5", [0.9359, 0.9928, 0.9872, 0.9365, 0.9359, 0.9360, 0.9019], (0.8785, 0.9253)),
    row("proposed", "Weighted average of model-level top-3 and top-5 (proposed)",
        [0.9391, 0.9933, 0.9881, 0.9396, 0.9391, 0.9392, 0.9068], (0.8839, 0.9297)),
]

/// The paper's three classification tables, each with the title the report gives it.
public let paperClassificationTables: [(title: String, rows: [PaperClassificationRow])] = [
    ("Table 2 — twelve losses", paperTable2),
    ("Table 3 — prediction-level ensembles", paperTable3),
    ("Table 4 — model-level ensembles and the proposed model", paperTable4),
]

/// Table 5's literature row: Rajaraman et al. [24], the state of the art the paper compares with.
public let paperLiteratureRow = row("rajaraman-2018", "Rajaraman et al. [24]", [0.918, 0.939, .nan, 0.92, 0.90, 0.91, 0.87],
                                    (0.8436, 0.8964))

/// One of the paper's significance claims: `reference` against `other` (row names), and whether
/// the paper says the reference is significantly better (p < 0.05) or not significantly different.
public struct SignificanceClaim: Sendable {
    public let table: String
    public let reference: String
    public let other: String
    public let significant: Bool
}

/// The paper's 25 claims (SPEC §8): calibrated CCE beats focal and calibrated focal and no other
/// loss (11); no difference among the four ensemble methods of the top-3, nor of the top-5 (12);
/// none between model-level top-3 and top-5 (1); the proposed model beats [24] (1).
public let paperClaims: [SignificanceClaim] = {
    var claims = paperTable2.filter { $0.name != "calibrated-cce" }.map {
        SignificanceClaim(table: "Table 2", reference: "calibrated-cce", other: $0.name,
                          significant: $0.name == "focal" || $0.name == "calibrated-focal")
    }
    for k in [3, 5] {
        let methods = ["vote", "average", "weighted", "stacking"].map { "top\(k)-\($0)" }
        for i in 0..<4 { for j in (i + 1)..<4 {
            claims.append(SignificanceClaim(table: "Table 3", reference: methods[i], other: methods[j], significant: false))
        } }
    }
    claims.append(SignificanceClaim(table: "Table 4", reference: "model-level-top3", other: "model-level-top5", significant: false))
    claims.append(SignificanceClaim(table: "Table 5", reference: "proposed", other: "rajaraman-2018", significant: true))
    return claims
}()
