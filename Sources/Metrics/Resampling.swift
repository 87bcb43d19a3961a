// The stratified bootstrap and the jackknife of every reported metric, in time linear in the images
// per resample. A resample is a multiplicity per image, never a copied file: the confusion metrics
// come from the K² (true, predicted) cell counts, updated as each image is drawn; the micro AUROC
// and AUPRC from one pass over the pooled scores, sorted once per file. Resamples draw from their
// own generators, seeded in order from the caller's, so the intervals are the same for any number
// of threads.
//
// The BCa acceleration needs leave-one-out values. For the confusion metrics they are exact at any
// size: leaving out an image only decrements its cell, so there are at most K² distinct values. For
// the two curve areas an exact leave-one-out costs one pass per image; it is used up to
// `exactJackknifeLimit` images, and above that a grouped (delete-d) jackknife over
// `jackknifeGroups` groups (the image at position p, images ordered by class, in group p mod G;
// Efron & Tibshirani 1993, §11.5).

import Artifacts
import Foundation
import SeededRandom

/// Metrics with bootstrap intervals in every evaluation, in report order.
public enum BootstrappedMetric: String, CaseIterable, Sendable {
    case accuracy, aurocMicro, auprcMicro, precisionWeighted, recallWeighted, f1Weighted, mcc, kappa

    /// The metric from a (re)sample's confusion matrix and its micro curve areas.
    func value(_ cm: ConfusionMatrix, _ areas: CurveAreas) -> Double {
        switch self {
        case .accuracy: cm.accuracy
        case .aurocMicro: areas.auroc
        case .auprcMicro: areas.auprc
        case .precisionWeighted: cm.weighted(cm.precision)
        case .recallWeighted: cm.weighted(cm.recall)
        case .f1Weighted: cm.weighted(cm.f1)
        case .mcc: cm.mcc
        case .kappa: cm.kappa
        }
    }

    var usesCurves: Bool { self == .aurocMicro || self == .auprcMicro }
}

/// The micro AUROC and the trapezoid AUPRC of one weighting of the images.
struct CurveAreas {
    var auroc: Double
    var auprc: Double

    /// No areas (a resample without curve metrics, or no images).
    static let undefined = CurveAreas(auroc: .nan, auprc: .nan)
}

/// Up to this many images, the curve metrics' jackknife leaves out one image at a time.
public let exactJackknifeLimit = 5000
/// Above `exactJackknifeLimit`, the curve metrics' jackknife leaves out one of this many groups.
public let jackknifeGroups = 100

/// What every resample of one prediction file shares, computed once. Images are numbered by
/// *position*: the images of class 0 in file order, then class 1, …, so a draw within a class is an
/// offset from the class's first position, with no table to look up.
public struct ResamplingPlan: Sendable {
    let classes: Int
    let count: Int
    /// The first position and the number of images of each true class.
    let classStart: [Int]
    let classSize: [Int]
    /// Cell index label·K + predicted at each position.
    let cells: [UInt8]
    /// The pooled entries (one per image and class) by descending score, packed for the curve pass:
    /// the image's position, `positiveBit` when the class is the image's true class, and
    /// `groupEndBit` when the next entry's score differs (the entry closes a run of equal scores).
    let entries: [UInt32]
    static let positiveBit: UInt32 = 1 << 31
    static let groupEndBit: UInt32 = 1 << 30
    static let positionMask: UInt32 = (1 << 30) - 1

    public init(_ predictions: Predictions) {
        let k = predictions.classes, n = predictions.count
        precondition(n <= Int(Self.positionMask) && k * k <= Int(UInt8.max), "too many images or classes for the resampling plan")
        classes = k
        count = n
        let byClass = (0..<k).map { c in predictions.labels.indices.filter { predictions.labels[$0] == c } }
        classSize = byClass.map(\.count)
        classStart = byClass.indices.map { c in byClass[..<c].reduce(0) { $0 + $1.count } }
        let images = byClass.flatMap { $0 }
        var position = [Int](repeating: 0, count: n)
        for (p, image) in images.enumerated() { position[image] = p }
        let predicted = predictions.predicted
        cells = images.map { UInt8(predictions.labels[$0] * k + predicted[$0]) }
        let scores = predictions.probabilities
        let sorted = (0..<(n * k)).sorted { scores[$0] > scores[$1] }
        entries = sorted.indices.map { e in
            let entry = sorted[e], image = entry / k
            var packed = UInt32(position[image])
            if predictions.labels[image] == entry % k { packed |= Self.positiveBit }
            if e == sorted.count - 1 || scores[sorted[e + 1]] != scores[entry] { packed |= Self.groupEndBit }
            return packed
        }
    }

    /// Images per (true, predicted) cell.
    var cellCounts: [Int] {
        var counts = [Int](repeating: 0, count: classes * classes)
        for cell in cells { counts[Int(cell)] += 1 }
        return counts
    }

    /// The confusion matrix of flat cell counts.
    func confusion(_ counts: [Int]) -> ConfusionMatrix {
        ConfusionMatrix(classes: classes, counts: (0..<classes).map { Array(counts[($0 * classes)..<(($0 + 1) * classes)]) })
    }

    /// The curve areas with the image at position p counted `weights[p]` times (`total` = Σ weights),
    /// in one pass over the sorted entries, in integer counts. A point closes each run of equal
    /// scores (scikit-learn's `roc_curve` and `precision_recall_curve`; a point that repeats the
    /// last one adds no area, so images of weight 0 need no special case). ROC: twice the
    /// trapezoid sum is Σ Δfp·(tp + tp′), exact in integers. PR: trapezoids from (recall 0,
    /// precision 1) over the points, as `auc(recall, precision)`; after full recall Δtp is 0.
    /// The loop has no data-dependent branch (true class and weight 0 are both unpredictable).
    func areas<T: WeightTable>(_ weights: T, total: Int) -> CurveAreas {
        guard total > 0 else { return .undefined }
        let positives = total, negatives = (classes - 1) * total
        var tp = 0, fp = 0, lastTP = 0, lastFP = 0
        var rocTwice = 0, prTwice = 0.0, lastPrecision = 1.0
        entries.withUnsafeBufferPointer { entries in
            for entry in entries {
                let w = weights.weight(Int(entry & Self.positionMask))
                let positive = Int(entry >> 31)
                tp &+= w & -positive
                fp &+= w & (positive &- 1)
                guard entry & Self.groupEndBit != 0 else { continue }
                rocTwice &+= (fp &- lastFP) &* (tp &+ lastTP)
                let predicted = tp &+ fp
                let precision = predicted == 0 ? 1 : Double(tp) / Double(predicted)
                prTwice += Double(tp &- lastTP) * (precision + lastPrecision)
                lastTP = tp
                lastFP = fp
                lastPrecision = precision
            }
        }
        return CurveAreas(auroc: Double(rocTwice) / (2 * Double(positives) * Double(negatives)),
                          auprc: prTwice / (2 * Double(positives)))
    }

    /// The curve areas of the whole file.
    var wholeAreas: CurveAreas {
        [UInt8](repeating: 1, count: count).withUnsafeBufferPointer { areas($0, total: count) }
    }

    /// Leave-one-out (or grouped) jackknife values of `metric`, each with the number of images it
    /// stands for.
    func jackknife(_ metrics: [BootstrappedMetric], threads: Int, exactLimit: Int = exactJackknifeLimit,
                   groupCount: Int = jackknifeGroups) -> [BootstrappedMetric: [(value: Double, weight: Double)]] {
        let counts = cellCounts
        var out: [BootstrappedMetric: [(value: Double, weight: Double)]] = [:]
        var curveValues: [CurveAreas] = []
        if metrics.contains(where: \.usesCurves) {
            // Group g holds positions g, g + G, …: one image each when G = count.
            let groups = count <= exactLimit ? count : groupCount
            let chunk = max(1, min(64, groups / max(1, 4 * threads)))
            curveValues = parallelMap(Array(stride(from: 0, to: groups, by: chunk)), threads: threads) { start in
                var weights = [UInt8](repeating: 1, count: count)
                return (start..<min(start + chunk, groups)).map { g in
                    let left = stride(from: g, to: count, by: groups)
                    for p in left { weights[p] = 0 }
                    let values = weights.withUnsafeBufferPointer { areas($0, total: count - (count - g + groups - 1) / groups) }
                    for p in left { weights[p] = 1 }
                    return values
                }
            }.flatMap { $0 }
        }
        for metric in metrics {
            if metric.usesCurves {
                out[metric] = curveValues.map { (metric == .aurocMicro ? $0.auroc : $0.auprc, 1) }
                continue
            }
            var values: [(value: Double, weight: Double)] = []
            for cell in counts.indices where counts[cell] > 0 {
                var left = counts
                left[cell] -= 1
                values.append((metric.value(confusion(left), .undefined), Double(counts[cell])))
            }
            out[metric] = values
        }
        return out
    }
}

/// Image multiplicities by position, as the curve pass reads them.
protocol WeightTable {
    func weight(_ position: Int) -> Int
}

extension UnsafeBufferPointer: WeightTable where Element: FixedWidthInteger {
    @inline(__always) func weight(_ position: Int) -> Int { Int(self[position]) }
}

/// Four bits per image, two images per byte (position p in byte p/2, low nibble first): half a
/// megabyte for a million images, so a resample's weights stay in a core's L2 cache while the
/// sorted scores stream past.
struct NibbleWeights: WeightTable {
    let bytes: UnsafeBufferPointer<UInt8>
    @inline(__always) func weight(_ position: Int) -> Int { Int(bytes[position >> 1] >> UInt8((position & 1) << 2)) & 0xF }
}

/// BCa's acceleration from jackknife values with multiplicities: Σw(θ̄−θ)³ / (6 (Σw(θ̄−θ)²)^{3/2}).
func acceleration(_ values: [(value: Double, weight: Double)]) -> Double {
    let total = values.reduce(0) { $0 + $1.weight }
    let mean = values.reduce(0) { $0 + $1.weight * $1.value } / total
    let num = values.reduce(0) { $0 + $1.weight * pow(mean - $1.value, 3) }
    let den = 6 * pow(values.reduce(0) { $0 + $1.weight * pow(mean - $1.value, 2) }, 1.5)
    return den == 0 || !den.isFinite ? 0 : num / den
}

/// One stratified resample: within each true class of m images, m draws with replacement, draw
/// j picking member ⌊u·m / 2⁶⁴⌋ for the generator's next u (Lemire's multiply-shift).
/// `visit(class, member)` is called once per draw.
@inline(__always)
func stratifiedDraws<G: RandomNumberGenerator>(_ classSizes: [Int], generator: inout G, visit: (Int, Int) -> Void) {
    for (k, size) in classSizes.enumerated() where size > 0 {
        let m = UInt64(size)
        for _ in 0..<size { visit(k, Int(generator.next().multipliedFullWidth(by: m).high)) }
    }
}

/// Percentile and BCa intervals (Efron 1987) of every metric in `metrics`, over `resamples`
/// stratified resamples shared by all of them.
///
/// - Parameters:
///   - generator: seeds the resamples (one draw each, in order): the same seed gives byte-identical
///     intervals whatever `threads` is.
///   - sink: progress of the resamples, as `task`.
///   - weightLimit: the largest multiplicity kept in the four-bit weights, at most 15 (tests lower
///     it to exercise the wide path, which must give the same intervals).
public func bootstrapIntervals<G: RandomNumberGenerator>(_ predictions: Predictions, metrics: [BootstrappedMetric] = BootstrappedMetric.allCases,
                                                         resamples: Int, level: Double = 0.95, generator: inout G, threads: Int = 1,
                                                         sink: EventSink = { _ in }, task: String = "bootstrap",
                                                         weightLimit: Int = 15)
    -> [BootstrappedMetric: BootstrapResult]
{
    let plan = ResamplingPlan(predictions)
    let seeds = (0..<resamples).map { _ in generator.next() }
    let needsCurves = metrics.contains(where: \.usesCurves)
    // Chunks of consecutive resamples, one weight buffer each; values[r][m] is metric m on resample r.
    let chunk = max(1, min(64, resamples / max(1, 4 * threads)))
    let starts = Array(stride(from: 0, to: resamples, by: chunk))
    let values = parallelMap(starts, threads: threads, sink: sink, task: task) { start -> [[Double]] in
        // Four bits per image keep the weights in a core's L2 cache for the curve pass; a resample
        // that draws one image more than `weightLimit` (at most 15) times, in practice never, is
        // redone with wide weights.
        var weights = [UInt8](repeating: 0, count: needsCurves ? (plan.count + 1) / 2 : 0)
        let limit = UInt8(min(max(weightLimit, 1), 15))
        return (start..<min(start + chunk, resamples)).map { r in
            var generator = SplitMix64(seed: seeds[r])
            var counts = [Int](repeating: 0, count: plan.classes * plan.classes)
            var overflowed = false
            // Raw buffers: a draw costs a few nanoseconds, and array writes through a closure's
            // capture would check uniqueness on every one.
            weights.withUnsafeMutableBufferPointer { w in
                counts.withUnsafeMutableBufferPointer { c in
                    plan.cells.withUnsafeBufferPointer { cells in
                        stratifiedDraws(plan.classSize, generator: &generator) { k, u in
                            let p = plan.classStart[k] + u
                            c[Int(cells[p])] += 1
                            guard needsCurves else { return }
                            let shift = UInt8((p & 1) << 2)
                            if (w[p >> 1] >> shift) & 0xF == limit { overflowed = true } else { w[p >> 1] += 1 << shift }
                        }
                    }
                }
            }
            var areas = CurveAreas.undefined
            if overflowed {
                var wide = [UInt32](repeating: 0, count: plan.count)
                var generator = SplitMix64(seed: seeds[r])
                stratifiedDraws(plan.classSize, generator: &generator) { k, u in wide[plan.classStart[k] + u] += 1 }
                areas = wide.withUnsafeBufferPointer { plan.areas($0, total: plan.count) }
            } else if needsCurves {
                areas = weights.withUnsafeBufferPointer { plan.areas(NibbleWeights(bytes: $0), total: plan.count) }
            }
            if needsCurves { weights.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
            let cm = plan.confusion(counts)
            return metrics.map { $0.value(cm, areas) }
        }
    }.flatMap { $0 }
    let whole = needsCurves ? plan.wholeAreas : CurveAreas.undefined
    let cm = plan.confusion(plan.cellCounts)
    let jackknife = plan.jackknife(metrics, threads: threads)
    var out: [BootstrappedMetric: BootstrapResult] = [:]
    for (m, metric) in metrics.enumerated() {
        out[metric] = intervals(estimate: metric.value(cm, whole), values: values.map { $0[m] }, level: level,
                                acceleration: acceleration(jackknife[metric]!))
    }
    return out
}

/// Percentile and BCa intervals from resampled values. The bias correction is the share of
/// resamples strictly below the estimate (as R's boot.ci and SciPy's bootstrap compute it).
func intervals(estimate: Double, values: [Double], level: Double, acceleration a: Double) -> BootstrapResult {
    let finite = values.filter(\.isFinite).sorted()
    let alpha = (1 - level) / 2
    let percentile = Interval(lower: quantile(finite, alpha), upper: quantile(finite, 1 - alpha), method: "bootstrap percentile")
    let below = Double(finite.filter { $0 < estimate }.count)
    let share = min(max(below / Double(finite.count), 1e-12), 1 - 1e-12)
    let z0 = normalQuantile(share)
    func adjusted(_ q: Double) -> Double {
        let z = normalQuantile(q)
        return normalCDF(z0 + (z0 + z) / (1 - a * (z0 + z)))
    }
    let bca = Interval(lower: quantile(finite, adjusted(alpha)), upper: quantile(finite, adjusted(1 - alpha)),
                       method: "bootstrap BCa")
    return BootstrapResult(estimate: estimate, percentile: percentile, bca: bca, resamples: values.count)
}
