// Comparing a regression record with its baseline: keys (configuration or input drift), output
// bytes (numerical drift) and headline numbers, exactly between like builds — the engine is
// deterministic, so the tolerance is zero — with every difference traced to the first stage run
// that diverged.

import Foundation

/// Stages whose outputs involve no floating-point arithmetic of the engine or BLAS (decoding,
/// resampling and hashing are the same code on every build): compared in full across builds.
let buildIndependentStages: Set<String> = ["prepare"]
/// Stages whose keys follow from the configuration and build-independent inputs alone: their keys
/// are compared across builds. (Later keys depend on rankings by trained models' scores.)
let keyComparableStages: Set<String> = ["prepare", "segment-train"]

/// What differs in one stage run.
public struct RunDifference: Sendable, Equatable {
    public var id: String
    public var findings: [String]
    /// The earlier diverging run this one reads from (directly or not); nil for a root cause.
    public var consequenceOf: String?
}

/// The outcome of `compare`.
public struct Comparison: Sendable {
    /// Whether output bytes were compared (the builds agree).
    public var bytesCompared: Bool
    /// Runs left out because the builds differ and their results depend on the build's rounding.
    public var notCompared: [String]
    public var current: RegressionBuild
    public var baseline: RegressionBuild
    /// Differing runs in pipeline order.
    public var differences: [RunDifference]
    public var runs: Int

    public var passed: Bool { differences.isEmpty }
    /// The first run, in pipeline order, that diverged on its own.
    public var firstDiverging: String? { differences.first { $0.consequenceOf == nil }?.id }
}

/// Compares `current` with `baseline` run by run (matched by "stage/variant"). A like build must
/// reproduce every key, byte and headline number exactly. Between unlike builds (another BLAS, other
/// kernels, convolution or thread count) training diverges from the first rounded bit — on a subset
/// this small, BLIS and OpenBLAS end 0.3 apart in validation accuracy — so only what does not depend
/// on that rounding is compared: the datasets in full and the U-Nets' keys.
public func compare(_ current: RegressionRecord, baseline: RegressionRecord) -> Comparison {
    let bytes = current.build == baseline.build
    let old = Dictionary(baseline.runs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    let new = Dictionary(current.runs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    // Pipeline order: the current record's, then runs only the baseline has.
    let order = current.runs.map(\.id) + baseline.runs.map(\.id).filter { new[$0] == nil }
    var inputs: [String: Set<String>] = [:]
    for run in baseline.runs + current.runs { inputs[run.id, default: []].formUnion(run.inputs) }

    var findings: [String: [String]] = [:]
    var skipped: [String] = []
    for id in order {
        var found: [String] = []
        let stage = String(id.prefix { $0 != "/" })
        if !bytes && !keyComparableStages.contains(stage) {
            skipped.append(id)
            continue
        }
        let full = bytes || buildIndependentStages.contains(stage)
        switch (old[id], new[id]) {
        case (nil, _?): found.append("new stage run (not in the baseline)")
        case (_?, nil): found.append("missing (the baseline has this stage run)")
        case let (a?, b?):
            if a.key != b.key { found.append("key \(a.key) → \(b.key) (configuration or input drift)") }
            if full {
                let files = Set(a.outputs.keys).union(b.outputs.keys).sorted()
                let changed = files.filter { a.outputs[$0] != b.outputs[$0] }
                if !changed.isEmpty { found.append("bytes of " + changed.map { name in
                    a.outputs[name] == nil ? "\(name) (new)" : b.outputs[name] == nil ? "\(name) (gone)" : name
                }.joined(separator: ", ")) }
            }
            for path in Set(a.numbers.keys).union(b.numbers.keys).sorted() where full {
                switch (a.numbers[path], b.numbers[path]) {
                case let (x?, y?) where x != y:
                    // Six significant digits, or every digit when those would look equal.
                    let (p, q) = short(x) == short(y) ? ("\(x)", "\(y)") : (short(x), short(y))
                    found.append("\(path) \(p) → \(q)")
                case let (x?, nil): found.append("\(path) \(short(x)) → absent")
                case let (nil, y?): found.append("\(path) absent → \(short(y))")
                default: break
                }
            }
        case (nil, nil): break
        }
        if !found.isEmpty { findings[id] = found }
    }

    // A diverging run is a consequence when something it reads from (transitively) diverged.
    func divergedAncestor(of id: String) -> String? {
        var seen: Set<String> = [], stack = Array(inputs[id] ?? [])
        var hits: [String] = []
        while let next = stack.popLast() {
            guard seen.insert(next).inserted else { continue }
            if findings[next] != nil { hits.append(next) }
            stack += inputs[next] ?? []
        }
        return order.first { hits.contains($0) }
    }
    let differences = order.compactMap { id in
        findings[id].map { RunDifference(id: id, findings: $0, consequenceOf: divergedAncestor(of: id)) }
    }
    return Comparison(bytesCompared: bytes, notCompared: skipped, current: current.build, baseline: baseline.build,
                      differences: differences, runs: Set(order).count)
}

/// The comparison as text: what was compared, then a table of what differs, root causes named.
public func describe(_ comparison: Comparison, baselinePath: String) -> String {
    var lines: [String] = []
    if comparison.bytesCompared {
        lines.append("regress: baseline \(baselinePath), same build (\(comparison.current)): keys, output bytes and headline numbers compared exactly")
    } else {
        lines.append("regress: WARNING: baseline \(baselinePath) was made with \(comparison.baseline); this build is \(comparison.current). "
                     + "Training diverges from the first differently rounded bit, so only the datasets (keys, bytes, numbers) and the U-Nets' keys "
                     + "are compared; \(comparison.notCompared.count) stage runs are NOT compared. Make a baseline on a like build "
                     + "(make regress-update) to check them.")
    }
    if comparison.passed {
        lines.append("regress: all \(comparison.runs - comparison.notCompared.count) compared stage runs agree with the baseline")
        return lines.joined(separator: "\n")
    }
    lines.append("")
    lines.append("| stage run | what differs | cause |")
    lines.append("|---|---|---|")
    for d in comparison.differences {
        let shown = d.findings.prefix(6).joined(separator: "; ") + (d.findings.count > 6 ? "; … (\(d.findings.count - 6) more)" : "")
        let cause = d.consequenceOf.map { "consequence of \($0)" }
            ?? (d.id == comparison.firstDiverging ? "**first diverging stage**" : "diverged on its own")
        lines.append("| \(d.id) | \(shown.replacingOccurrences(of: "|", with: "\\|")) | \(cause) |")
    }
    lines.append("")
    let roots = comparison.differences.filter { $0.consequenceOf == nil }.map(\.id)
    lines.append("regress: \(comparison.differences.count) of \(comparison.runs) stage runs differ; first diverging stage: "
                 + "\(comparison.firstDiverging ?? "?")" + (roots.count > 1 ? " (runs that diverged on their own: \(roots.joined(separator: ", ")))" : ""))
    lines.append("regress: if the change is intended, `make regress-update` rewrites the baseline; say why in its commit")
    return lines.joined(separator: "\n")
}

private func short(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e9 ? String(Int(x)) : String(format: "%.6g", x)
}
