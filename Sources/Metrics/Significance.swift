// Comparing two models on the same images (SPEC §8). The paper's rule is not stated; the one that
// reproduces all 25 of its claims is a one-sample z-test of the other model's MCC against the
// reference model's Wald standard error (`paperSignificance`, labelled inferred). Sound paired
// tests sit beside it: McNemar on the discordant pairs, a paired bootstrap of ΔMCC, and DeLong's
// test for correlated AUROCs.

import Artifacts
import Foundation
import SeededRandom

/// A test's outcome.
public struct TestResult: Sendable, Equatable, Codable {
    public var method: String
    public var statistic: Double
    public var pValue: Double
    /// p < 0.05.
    public var significant: Bool

    public init(method: String, statistic: Double, pValue: Double) {
        self.method = method
        self.statistic = statistic
        self.pValue = pValue
        significant = pValue < 0.05
    }
}

/// The paper's inferred rule: z = |m_ref − m_other| / √(m_ref(1 − m_ref)/n), two-sided normal p —
/// "the other model's MCC lies outside the reference model's 95 % Wald interval".
public func paperSignificance(reference: Double, other: Double, n: Int) -> TestResult {
    let z = abs(reference - other) / (reference * (1 - reference) / Double(n)).squareRoot()
    return TestResult(method: "paper rule (inferred): one-sample z against the reference's Wald SE",
                      statistic: z, pValue: erfc(z / 2.0.squareRoot()))
}

/// McNemar's test on the images one model gets right and the other wrong: the exact two-sided
/// binomial test when there are fewer than 25 discordant images, else χ² with continuity correction.
public func mcnemar(_ a: Predictions, _ b: Predictions) -> TestResult {
    precondition(a.labels == b.labels, "McNemar needs the same images with the same labels")
    let pa = a.predicted, pb = b.predicted
    var onlyA = 0, onlyB = 0
    for i in 0..<a.count {
        let ra = pa[i] == a.labels[i], rb = pb[i] == b.labels[i]
        if ra && !rb { onlyA += 1 }
        if rb && !ra { onlyB += 1 }
    }
    let discordant = onlyA + onlyB
    if discordant == 0 { return TestResult(method: "McNemar (no discordant images)", statistic: 0, pValue: 1) }
    if discordant < 25 {
        let p = min(1, 2 * binomialCDF(min(onlyA, onlyB), n: discordant, p: 0.5))
        return TestResult(method: "McNemar exact binomial (b=\(onlyA), c=\(onlyB))", statistic: Double(min(onlyA, onlyB)), pValue: p)
    }
    let chi2 = pow(Double(abs(onlyA - onlyB)) - 1, 2) / Double(discordant)
    return TestResult(method: "McNemar chi-square with continuity correction (b=\(onlyA), c=\(onlyB))",
                      statistic: chi2, pValue: erfc((chi2 / 2).squareRoot()))
}

/// Paired, stratified bootstrap of Δ = MCC(a) − MCC(b): the interval of Δ and the two-sided p-value
/// 2·min(P(Δ* ≤ 0), P(Δ* ≥ 0)). Each resample counts its draws in the K³ (true, a's, b's) cells,
/// so it costs one step per image; resamples are seeded in order from `generator`, the same for
/// any `threads`.
public func pairedBootstrapMCC<G: RandomNumberGenerator>(_ a: Predictions, _ b: Predictions, resamples: Int,
                                                         generator: inout G, threads: Int = 1)
    -> (delta: Double, interval: Interval, test: TestResult)
{
    precondition(a.labels == b.labels, "a paired bootstrap needs the same images")
    let k = a.classes
    let pa = a.predicted, pb = b.predicted
    let cells = a.labels.indices.map { (a.labels[$0] * k + pa[$0]) * k + pb[$0] }
    var byClass = [[Int]](repeating: [], count: k)
    for (i, label) in a.labels.enumerated() { byClass[label].append(i) }
    /// MCC(a) − MCC(b) from joint cell counts.
    func delta(_ joint: [Int]) -> Double {
        var ca = [[Int]](repeating: [Int](repeating: 0, count: k), count: k), cb = ca
        for (cell, n) in joint.enumerated() where n > 0 {
            let t = cell / (k * k), p = (cell / k) % k, q = cell % k
            ca[t][p] += n
            cb[t][q] += n
        }
        return ConfusionMatrix(classes: k, counts: ca).mcc - ConfusionMatrix(classes: k, counts: cb).mcc
    }
    var whole = [Int](repeating: 0, count: k * k * k)
    for cell in cells { whole[cell] += 1 }
    let seeds = (0..<resamples).map { _ in generator.next() }
    var deltas = parallelMap(seeds, threads: threads) { seed -> Double in
        var generator = SplitMix64(seed: seed)
        var joint = [Int](repeating: 0, count: k * k * k)
        stratifiedDraws(byClass.map(\.count), generator: &generator) { joint[cells[byClass[$0][$1]]] += 1 }
        return delta(joint)
    }
    deltas.sort()
    let atMost = Double(deltas.filter { $0 <= 0 }.count) / Double(resamples)
    let atLeast = Double(deltas.filter { $0 >= 0 }.count) / Double(resamples)
    return (delta(whole), Interval(lower: quantile(deltas, 0.025), upper: quantile(deltas, 0.975), method: "paired bootstrap percentile"),
            TestResult(method: "paired bootstrap of ΔMCC (\(resamples) resamples)", statistic: delta(whole),
                       pValue: min(1, 2 * min(atMost, atLeast))))
}

/// DeLong's test (DeLong, DeLong & Clarke-Pearson 1988) for two AUROCs on the same cases, with the
/// structural components from mid-ranks (Sun & Xu 2014).
///
/// - Returns: the two AUCs and the test; nil when a class is absent.
public func delong(truth: [Bool], scoresA: [Double], scoresB: [Double]) -> (aucA: Double, aucB: Double, test: TestResult)? {
    let positives = truth.indices.filter { truth[$0] }, negatives = truth.indices.filter { !truth[$0] }
    let m = Double(positives.count), n = Double(negatives.count)
    guard m > 1, n > 1 else { return nil }
    func components(_ scores: [Double]) -> (v10: [Double], v01: [Double], auc: Double) {
        let x = positives.map { scores[$0] }, y = negatives.map { scores[$0] }
        let rankAll = midranks(x + y), rankX = midranks(x), rankY = midranks(y)
        let v10 = x.indices.map { (rankAll[$0] - rankX[$0]) / n }
        let v01 = y.indices.map { 1 - (rankAll[x.count + $0] - rankY[$0]) / m }
        return (v10, v01, v10.reduce(0, +) / m)
    }
    let a = components(scoresA), b = components(scoresB)
    func covariance(_ u: [Double], _ v: [Double]) -> Double {
        let mu = u.reduce(0, +) / Double(u.count), mv = v.reduce(0, +) / Double(v.count)
        return zip(u, v).reduce(0) { $0 + ($1.0 - mu) * ($1.1 - mv) } / Double(u.count - 1)
    }
    let variance = (covariance(a.v10, a.v10) + covariance(b.v10, b.v10) - 2 * covariance(a.v10, b.v10)) / m
        + (covariance(a.v01, a.v01) + covariance(b.v01, b.v01) - 2 * covariance(a.v01, b.v01)) / n
    let z = variance > 0 ? (a.auc - b.auc) / variance.squareRoot() : 0
    return (a.auc, b.auc, TestResult(method: "DeLong", statistic: z, pValue: variance > 0 ? erfc(abs(z) / 2.0.squareRoot()) : 1))
}

/// 1-based mid-ranks (ties share the mean of their ranks).
func midranks(_ values: [Double]) -> [Double] {
    let order = values.indices.sorted { values[$0] < values[$1] }
    var ranks = [Double](repeating: 0, count: values.count)
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && values[order[j + 1]] == values[order[i]] { j += 1 }
        let rank = Double(i + j) / 2 + 1
        for k in i...j { ranks[order[k]] = rank }
        i = j + 1
    }
    return ranks
}
