// Confidence intervals (SPEC §5.1). The paper calls its MCC interval "exact Clopper–Pearson", but
// every printed bound is the Wald interval of the MCC treated as a proportion of n = 624; `paperCI`
// reproduces the printed bounds exactly (rule (a)), `waldCI` is the plain formula, and the
// stratified bootstrap (percentile and BCa) gives sound intervals for any metric.

import Foundation

/// A two-sided interval with the method that produced it.
public struct Interval: Sendable, Equatable, Codable {
    public var lower: Double
    public var upper: Double
    public var method: String

    public init(lower: Double, upper: Double, method: String) {
        self.lower = lower
        self.upper = upper
        self.method = method
    }
}

/// p ± z·√(p(1−p)/n): the normal-approximation binomial interval (NaN bounds for p outside [0, 1],
/// e.g. a negative MCC, where it is undefined).
public func waldCI(_ p: Double, n: Int, z: Double = 1.96) -> Interval {
    let margin = z * (p * (1 - p) / Double(n)).squareRoot()
    return Interval(lower: p - margin, upper: p + margin, method: "wald")
}

/// The interval as the paper printed it (SPEC §5.1 rule (a)): on the 4-decimal value p, the margin
/// qt(0.975, n−1)·√(p(1−p)/n) rounded to 4 decimals, then p ± margin. It reproduces all 46 printed
/// bounds of Tables 2–5 except the two typos (0.9132 for 0.9232, 0.9157 for 0.9257). It is not a
/// Clopper–Pearson interval.
public func paperCI(_ p: Double, n: Int) -> Interval {
    let p4 = round4(p)
    let margin = round4(studentTQuantile(0.975, df: Double(n - 1)) * (p4 * (1 - p4) / Double(n)).squareRoot())
    return Interval(lower: round4(p4 - margin), upper: round4(p4 + margin), method: "paper (Wald, t multiplier, 4 dp)")
}

/// Rounds half away from zero at 4 decimals, as the paper's printed values are.
public func round4(_ x: Double) -> Double { (x * 10_000).rounded() / 10_000 }

/// Bootstrap intervals of one metric.
public struct BootstrapResult: Sendable, Equatable, Codable {
    public var estimate: Double
    public var percentile: Interval
    public var bca: Interval
    public var resamples: Int
}

/// Indices of a stratified resample: within each true class, as many draws with replacement as
/// the class has images, so every resample keeps the class counts (`Resampling.swift` draws the
/// same way without copying).
public func stratifiedResample<G: RandomNumberGenerator>(labels: [Int], classes: Int, generator: inout G) -> [Int] {
    var byClass = [[Int]](repeating: [], count: classes)
    for (i, label) in labels.enumerated() { byClass[label].append(i) }
    var out: [Int] = []
    out.reserveCapacity(labels.count)
    stratifiedDraws(byClass.map(\.count), generator: &generator) { out.append(byClass[$0][$1]) }
    return out
}

/// NumPy's default (linear, "type 7") quantile of sorted values.
public func quantile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let h = Double(sorted.count - 1) * min(max(q, 0), 1)
    let lo = Int(h.rounded(.down))
    let hi = min(lo + 1, sorted.count - 1)
    return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
}
