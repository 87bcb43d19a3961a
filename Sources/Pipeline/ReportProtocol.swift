// The report's protocol section: what one reproduction did differently from the paper, read from
// the manifests of every artifact it was made from, one sentence per difference that moves numbers.

import Artifacts
import Report

/// The protocol notes of a reproduction whose artifacts are `graph`.
func protocolNotes(_ graph: [Manifest], tables: [ClassificationTable]) -> [String] {
    var notes: [String] = []
    for m in graph where m.stage == "prepare" {
        let counts = m.summary.objectValue?["counts"]?.objectValue ?? [:]
        let splits = ["train", "val", "test"].compactMap { split -> String? in
            guard let perClass = counts[split]?.objectValue else { return nil }
            let total = perClass.values.reduce(0.0) { if case let .number(x) = $1 { $0 + x } else { $0 } }
            return "\(split) \(Int(total))"
        }
        var note = "Data `\(m.variant)`: layout \(m.config.stringValue(of: "layout") ?? "?"), " + splits.joined(separator: " / ")
        if case let .number(fraction)? = m.config.objectValue?["testFraction"], fraction > 0 {
            note += "; the test split is held out patient-disjoint (\(Int(fraction * 100)) %), never seen in training or selection"
        }
        let layout = m.config.stringValue(of: "layout") ?? ""
        let paper = layout == "synthetic" ? "synthetic phantoms, not chest X-rays: only the plumbing is exercised"
            : ["kermany"].contains(layout) ? "the paper: Kermany's 5232 training and 624 test images"
            : "the paper: Montgomery's 138 image/mask pairs"
        notes.append(note + "; \(paper).")
    }
    let unets = graph.filter { $0.stage == "segment-train" }
    if let first = unets.first, let config = first.config.objectValue?["config"] {
        notes.append("\(unets.count) U-Net(s) at \(number(config, "size"))² for up to \(number(config, "epochs")) epochs, batch \(number(config, "batchSize")) "
                     + "(the paper: 512² inputs, SPEC §1.3), from random weights: the paper's encoder starts from ImageNet (SPEC §9 #30), "
                     + "which cannot be downloaded here; this alone is expected to lower every downstream number.")
    }
    let classifiers = graph.filter { $0.stage == "classify-train" }
    if let first = classifiers.first, let config = first.config.objectValue?["config"] {
        let initialization = first.config.stringValue(of: "initialization") ?? "?"
        let source = initialization.hasPrefix("unet:") ? "the encoder of our lung U-Net (\(initialization))" : initialization
        notes.append("\(classifiers.count) classifier(s) at \(number(config, "size"))² for up to \(number(config, "epochs")) epochs, batch "
                     + "\(number(config, "batchSize")), started from \(source) (the paper: 256² from the 512² crops, SPEC §9 #17, with its "
                     + "ImageNet-initialised U-Net encoder).")
        let compat = classifiers.filter { $0.config.objectValue?["config"]?.objectValue?["codeCompat"] == .bool(true) }
        if !compat.isEmpty {
            notes.append("\(compat.count) classifier(s) ran with `codeCompat` (the released code's behaviours, SPEC §9): "
                         + compat.map(\.variant).joined(separator: ", ") + ".")
        }
    }
    let ensembles = graph.filter { $0.stage == "ensemble" }
    let ranked = Set(ensembles.compactMap { $0.config.stringValue(of: "rankedOn") })
    let fitted = Set(ensembles.compactMap { $0.config.stringValue(of: "fittedOn") })
    let procedures = Set(ensembles.compactMap { $0.config.stringValue(of: "weights") })
    if !ensembles.isEmpty {
        var note = "\(ensembles.count) ensemble artifact(s): members ranked on \(listed(ranked)), weights fitted on \(listed(fitted)) "
            + "with the \(listed(procedures)) procedure"
        if ranked.contains("test") || fitted.contains("test") {
            note += "; selection on the test split is the paper's protocol (SPEC §9 #24) and flatters the very numbers it reports"
        }
        notes.append(note + ".")
        if ensembles.contains(where: { $0.config.objectValue?["modelLevelCodeCompat"] == .bool(true) }) {
            notes.append("Model-level ensembles ran with the released code's trainable layers (SPEC §9 #21).")
        }
    }
    for table in tables where table.split != "test" {
        notes.append("\(table.title.prefix(7)) is scored on the \(table.split) split, not a held-out test split: validation numbers "
                     + "flatter (a classifier at validation MCC 0.80 scored about 0.67 on an independent test set).")
    }
    return notes
}

private func number(_ value: JSONValue, _ key: String) -> String {
    if case let .number(x)? = value.objectValue?[key] { return x == x.rounded() ? "\(Int(x))" : "\(x)" }
    return "?"
}

private func listed(_ values: Set<String>) -> String { values.isEmpty ? "—" : values.sorted().joined(separator: " and ") }
