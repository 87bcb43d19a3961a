// ROC and precision–recall curves as scikit-learn builds them, and the areas of SPEC §5:
// AUROC micro (the paper's: all n·K one-vs-rest scores pooled), macro one-vs-rest, and the
// "macro" of scikit-learn's ROC tutorial that the paper's code follows (per-class curves
// interpolated onto the union of their false-positive rates, then averaged); AUPRC as the
// trapezoid under the micro PR curve (the paper's) and average precision (a step sum).

/// Cumulative counts at each distinct score, highest score first (`_binary_clf_curve`).
struct BinaryCounts {
    var falsePositives: [Double] = []
    var truePositives: [Double] = []
    var thresholds: [Double] = []

    init(truth: [Bool], scores: [Double]) {
        precondition(truth.count == scores.count, "truth and scores differ in length")
        let order = descendingOrder(scores)
        var tp = 0.0, fp = 0.0
        for (position, index) in order.enumerated() {
            if truth[index] { tp += 1 } else { fp += 1 }
            let last = position == order.count - 1
            if last || scores[order[position + 1]] != scores[index] {
                truePositives.append(tp)
                falsePositives.append(fp)
                thresholds.append(scores[index])
            }
        }
    }
}

/// Indices of `scores` from the highest score down, equal scores by descending index (sorting
/// (score, index) pairs: several times faster than sorting indices through the array).
func descendingOrder(_ scores: [Double]) -> [Int] {
    var pairs = scores.enumerated().map { (score: $0.element, index: $0.offset) }
    pairs.sort { $0.score > $1.score || ($0.score == $1.score && $0.index > $1.index) }
    return pairs.map(\.index)
}

/// A curve as (x, y) points in drawing order.
public struct Curve: Sendable, Equatable, Codable {
    public var x: [Double]
    public var y: [Double]

    public init(x: [Double], y: [Double]) {
        self.x = x
        self.y = y
    }

    /// At most about `maxPoints` points, for storage and drawing: the first and last points, and each
    /// point at least 1/`maxPoints` of the curve's length (in |Δx| + |Δy|) from the last one kept.
    /// A curve with no more points is returned as it is.
    public func thinned(maxPoints: Int) -> Curve {
        guard x.count > maxPoints, maxPoints >= 2 else { return self }
        var length = 0.0
        for i in 1..<x.count { length += abs(x[i] - x[i - 1]) + abs(y[i] - y[i - 1]) }
        let step = length / Double(maxPoints - 1)
        var keptX = [x[0]], keptY = [y[0]]
        for i in 1..<(x.count - 1) where abs(x[i] - keptX[keptX.count - 1]) + abs(y[i] - keptY[keptY.count - 1]) >= step {
            keptX.append(x[i])
            keptY.append(y[i])
        }
        keptX.append(x[x.count - 1])
        keptY.append(y[y.count - 1])
        return Curve(x: keptX, y: keptY)
    }

    /// Trapezoidal area (`sklearn.metrics.auc`): positive whichever way x runs.
    ///
    /// - Precondition: x is monotonic.
    public var area: Double {
        var sum = 0.0
        for i in 1..<max(x.count, 1) { sum += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2 }
        return abs(sum)
    }
}

/// `roc_curve(truth, scores)` with `drop_intermediate=True`: (FPR, TPR) from (0, 0) upward.
public func rocCurve(truth: [Bool], scores: [Double]) -> Curve {
    rocCurve(BinaryCounts(truth: truth, scores: scores))
}

/// The ROC curve of counts already accumulated.
func rocCurve(_ counts: BinaryCounts) -> Curve {
    var fps = counts.falsePositives, tps = counts.truePositives
    if fps.count > 2 {
        var keep = [true]
        for i in 1..<(fps.count - 1) {
            keep.append(fps[i - 1] - 2 * fps[i] + fps[i + 1] != 0 || tps[i - 1] - 2 * tps[i] + tps[i + 1] != 0)
        }
        keep.append(true)
        fps = fps.indices.filter { keep[$0] }.map { fps[$0] }
        tps = tps.indices.filter { keep[$0] }.map { tps[$0] }
    }
    fps.insert(0, at: 0)
    tps.insert(0, at: 0)
    let negatives = fps.last ?? 0, positives = tps.last ?? 0
    return Curve(x: fps.map { negatives == 0 ? .nan : $0 / negatives },
                 y: tps.map { positives == 0 ? .nan : $0 / positives })
}

/// The precision–recall curve as (recall, precision), from full recall down to the appended
/// (0, 1): points per distinct threshold, stopping at the first that reaches full recall.
public func precisionRecallCurve(truth: [Bool], scores: [Double]) -> Curve {
    precisionRecallCurve(BinaryCounts(truth: truth, scores: scores))
}

/// The precision–recall curve of counts already accumulated.
func precisionRecallCurve(_ counts: BinaryCounts) -> Curve {
    let tps = counts.truePositives, fps = counts.falsePositives
    let positives = tps.last ?? 0
    let full = tps.firstIndex(of: positives) ?? (tps.count - 1)
    var recall: [Double] = [], precision: [Double] = []
    for i in stride(from: full, through: 0, by: -1) {
        recall.append(positives == 0 ? 1 : tps[i] / positives)
        let predicted = tps[i] + fps[i]
        precision.append(predicted == 0 ? 0 : tps[i] / predicted)
    }
    recall.append(0)
    precision.append(1)
    return Curve(x: recall, y: precision)
}

/// Average precision Σ (R_n − R_{n−1}) P_n (`average_precision_score`).
public func averagePrecision(truth: [Bool], scores: [Double]) -> Double {
    averagePrecision(precisionRecallCurve(truth: truth, scores: scores))
}

/// Average precision of a precision–recall curve.
func averagePrecision(_ curve: Curve) -> Double {
    var sum = 0.0
    for i in 0..<(curve.x.count - 1) { sum += (curve.x[i] - curve.x[i + 1]) * curve.y[i] }
    return sum
}

/// Area under the ROC curve (trapezoids; tied scores count one half).
public func auroc(truth: [Bool], scores: [Double]) -> Double {
    rocCurve(truth: truth, scores: scores).area
}

extension Predictions {
    /// Whether each pooled score (row-major n·K) belongs to the true class, and the scores.
    public var pooled: (truth: [Bool], scores: [Double]) {
        var truth = [Bool](repeating: false, count: count * classes)
        for (i, label) in labels.enumerated() { truth[i * classes + label] = true }
        return (truth, probabilities)
    }

    /// Class `k` against the rest.
    public func oneVsRest(_ k: Int) -> (truth: [Bool], scores: [Double]) {
        (labels.map { $0 == k }, (0..<count).map { p($0, k) })
    }

    /// The paper's AUROC: micro average over the pooled one-vs-rest scores.
    public var aurocMicro: Double { let s = pooled; return auroc(truth: s.truth, scores: s.scores) }

    /// Mean of the per-class one-vs-rest AUROCs.
    public var aurocMacro: Double {
        (0..<classes).map { let s = oneVsRest($0); return auroc(truth: s.truth, scores: s.scores) }
            .reduce(0, +) / Double(classes)
    }

    /// scikit-learn's ROC-tutorial "macro": the per-class curves interpolated (NumPy `interp`)
    /// onto the sorted union of their FPRs, TPRs averaged, then the trapezoid.
    public var aurocMacroInterpolated: Double {
        interpolatedMacroArea((0..<classes).map { k -> Curve in let s = oneVsRest(k); return rocCurve(truth: s.truth, scores: s.scores) })
    }

    /// The paper's AUPRC: trapezoid under the micro-averaged PR curve (not average precision).
    public var auprcMicro: Double { let s = pooled; return precisionRecallCurve(truth: s.truth, scores: s.scores).area }

    /// Average precision of the pooled scores.
    public var averagePrecisionMicro: Double { let s = pooled; return averagePrecision(truth: s.truth, scores: s.scores) }
}

/// The ROC tutorial's "macro" of per-class ROC curves: each interpolated (NumPy `interp`) onto the
/// sorted union of their FPRs, TPRs averaged, then the trapezoid.
func interpolatedMacroArea(_ curves: [Curve]) -> Double {
    let grid = Array(Set(curves.flatMap(\.x))).sorted()
    var mean = [Double](repeating: 0, count: grid.count)
    for curve in curves {
        for (g, x) in grid.enumerated() { mean[g] += interpolate(x, curve.x, curve.y) }
    }
    return Curve(x: grid, y: mean.map { $0 / Double(curves.count) }).area
}

/// NumPy `interp`: linear between the bracketing points; at a repeated x the last point's y.
func interpolate(_ x: Double, _ xs: [Double], _ ys: [Double]) -> Double {
    guard let first = xs.first, let last = xs.last else { return .nan }
    if x < first { return ys[0] }
    if x >= last { return ys[ys.count - 1] }
    // Last j with xs[j] <= x.
    var lo = 0, hi = xs.count - 1
    while hi - lo > 1 {
        let mid = (lo + hi) / 2
        if xs[mid] <= x { lo = mid } else { hi = mid }
    }
    if xs[lo] == x { return ys[lo] }
    return ys[lo] + (ys[lo + 1] - ys[lo]) * (x - xs[lo]) / (xs[lo + 1] - xs[lo])
}
