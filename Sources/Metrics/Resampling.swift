// The stratified bootstrap and the jackknife of every reported metric, in time linear in the images
// per resample. A resample is a multiplicity per image, never a copied file: the confusion metrics
// come from the K² (true, predicted) cell counts, updated as each image is drawn; the micro AUROC
// and AUPRC from one pass over the pooled scores, sorted once per file, four resamples side by side.
// Resamples draw from their own generators, seeded in order from the caller's, so the intervals are
// the same for any number of threads.
//
// The BCa acceleration needs leave-one-out values. For the confusion metrics they are exact at any
// size: leaving out an image only decrements its cell, so there are at most K² distinct values. For
// the two curve areas an exact leave-one-out costs one pass per image; it is used up to
// `exactJackknifeLimit` images, and above that a grouped (delete-d) jackknife over
// `jackknifeGroups` groups (the image at position p, images ordered by class, in group p mod G;
// Efron & Tibshirani 1993, §11.5).

import Artifacts
import CIntrinsics
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
        // Entry counts (n·K) fit the four-lane pass's 32-bit counters: 715 million images at K = 3.
        precondition(n * k <= Int(Int32.max) && k * k <= Int(UInt8.max), "too many images or classes for the resampling plan")
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
        let sorted = descendingOrder(scores)
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

    /// `areas` of four weightings at once: weighting j's weight of the image at position p is bits
    /// 4j..<4j+4 of `weights[p]`, and its weights sum to `totals[j]`. One 16-bit read per entry
    /// serves four resamples, whose counts and areas run in SIMD lanes; each lane does `areas`'s
    /// operations in its order, so it equals `areas` bit for bit. The weights are prefetched a few
    /// entries ahead (the entries are in score order, the weights in class order: every read is a
    /// cache miss the pass would otherwise wait for).
    func areas(lanes weights: UnsafeBufferPointer<UInt16>, totals: [Int]) -> [CurveAreas] {
        let shifts = SIMD4<UInt32>(0, 4, 8, 12)
        var tp = SIMD4<Int32>(), fp = SIMD4<Int32>(), lastTP = SIMD4<Int32>(), lastFP = SIMD4<Int32>()
        var rocTwice = SIMD4<Int64>(), prTwice = SIMD4<Double>(), lastPrecision = SIMD4<Double>(repeating: 1)
        entries.withUnsafeBufferPointer { entries in
            let base = weights.baseAddress!, last = entries.count - 1
            for i in entries.indices {
                cxr_prefetch(base + Int(entries[min(i + 16, last)] & Self.positionMask))
                let entry = entries[i]
                let word = SIMD4<UInt32>(repeating: UInt32(weights[Int(entry & Self.positionMask)]))
                let w = SIMD4<Int32>(truncatingIfNeeded: (word &>> shifts) & 0xF)
                let positive = Int32(bitPattern: entry >> 31)
                tp &+= w & SIMD4(repeating: -positive)
                fp &+= w & SIMD4(repeating: positive &- 1)
                guard entry & Self.groupEndBit != 0 else { continue }
                rocTwice &+= SIMD4<Int64>(truncatingIfNeeded: fp &- lastFP) &* SIMD4<Int64>(truncatingIfNeeded: tp &+ lastTP)
                let predicted = SIMD4<Double>(tp &+ fp)
                var precision = SIMD4<Double>(tp) / predicted
                precision.replace(with: 1, where: predicted .== 0)
                prTwice += SIMD4<Double>(tp &- lastTP) * (precision + lastPrecision)
                lastTP = tp
                lastFP = fp
                lastPrecision = precision
            }
        }
        return (0..<4).map { j in
            guard totals[j] > 0 else { return .undefined }
            let positives = Double(totals[j]), negatives = Double((classes - 1) * totals[j])
            return CurveAreas(auroc: Double(rocTwice[j]) / (2 * positives * negatives), auprc: prTwice[j] / (2 * positives))
        }
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
            // Group g holds positions g, g + G, …: one image each when G = count. Four groups share a
            // curve pass, one lane each (weight 1, or 0 for the lane's group).
            let groups = count <= exactLimit ? count : groupCount
            let chunk = 4 * max(1, min(16, groups / max(1, 16 * threads)))
            curveValues = parallelMap(Array(stride(from: 0, to: groups, by: chunk)), threads: threads) { start in
                var weights = [UInt16](repeating: 0x1111, count: count)
                var values: [CurveAreas] = []
                for first in stride(from: start, to: min(start + chunk, groups), by: 4) {
                    let members = first..<min(first + 4, groups)
                    for (lane, g) in members.enumerated() {
                        for p in stride(from: g, to: count, by: groups) { weights[p] &= ~(0xF << (4 * lane)) }
                    }
                    let totals = (0..<4).map { lane in count - (count - min(first + lane, groups - 1) + groups - 1) / groups }
                    values += weights.withUnsafeBufferPointer { areas(lanes: $0, totals: totals) }.prefix(members.count)
                    for (lane, g) in members.enumerated() {
                        for p in stride(from: g, to: count, by: groups) { weights[p] |= 1 << (4 * lane) }
                    }
                }
                return values
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
/// `visit(class, member)` is called once per draw, in draw order. The draws are made 32 at a time,
/// and `ahead(class, member)` sees each one before its batch is visited (to prefetch what the
/// visits will read: they land at random in tables larger than a core's cache).
@inline(__always)
func stratifiedDraws<G: RandomNumberGenerator>(_ classSizes: [Int], generator: inout G, ahead: (Int, Int) -> Void = { _, _ in },
                                               visit: (Int, Int) -> Void) {
    for (k, size) in classSizes.enumerated() where size > 0 {
        let m = UInt64(size)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 32) { batch in
            var done = 0
            while done < size {
                let count = min(32, size - done)
                for j in 0..<count {
                    batch[j] = Int(generator.next().multipliedFullWidth(by: m).high)
                    ahead(k, batch[j])
                }
                for j in 0..<count { visit(k, batch[j]) }
                done += count
            }
        }
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
    let limit = UInt16(min(max(weightLimit, 1), 15))
    // Chunks of consecutive resamples, in groups of four that share one weight buffer and one curve
    // pass; values[r][m] is metric m on resample r.
    let chunk = max(1, min(64, resamples / max(1, 4 * threads)))
    let starts = Array(stride(from: 0, to: resamples, by: chunk))
    let values = parallelMap(starts, threads: threads, sink: sink, task: task) { start -> [[Double]] in
        // Four bits per image and resample keep a group's weights in 2 MB for a million images; a
        // resample that draws one image more than `limit` (at most 15) times, in practice never,
        // is redone with wide weights.
        var weights = [UInt16](repeating: 0, count: needsCurves ? plan.count : 0)
        var out: [[Double]] = []
        for group in stride(from: start, to: min(start + chunk, resamples), by: 4) {
            let members = group..<min(group + 4, start + chunk, resamples)
            var counts = [[Int]](repeating: [], count: members.count)
            var overflowed = [Bool](repeating: false, count: members.count)
            for (lane, r) in members.enumerated() {
                var generator = SplitMix64(seed: seeds[r])
                var laneCounts = [Int](repeating: 0, count: plan.classes * plan.classes)
                let shift = UInt16(4 * lane)
                // Raw buffers: a draw costs a few nanoseconds, and array writes through a closure's
                // capture would check uniqueness on every one.
                weights.withUnsafeMutableBufferPointer { w in
                    laneCounts.withUnsafeMutableBufferPointer { c in
                        plan.cells.withUnsafeBufferPointer { cells in
                            stratifiedDraws(plan.classSize, generator: &generator, ahead: { k, u in
                                let p = plan.classStart[k] + u
                                cxr_prefetch(cells.baseAddress! + p)
                                if needsCurves { cxr_prefetch(w.baseAddress! + p) }
                            }) { k, u in
                                let p = plan.classStart[k] + u
                                c[Int(cells[p])] += 1
                                guard needsCurves else { return }
                                if (w[p] >> shift) & 0xF == limit { overflowed[lane] = true } else { w[p] += 1 << shift }
                            }
                        }
                    }
                }
                counts[lane] = laneCounts
            }
            var areas = [CurveAreas](repeating: .undefined, count: members.count)
            if needsCurves {
                let lanes = weights.withUnsafeBufferPointer { plan.areas(lanes: $0, totals: [Int](repeating: plan.count, count: 4)) }
                for (lane, r) in members.enumerated() {
                    guard overflowed[lane] else { areas[lane] = lanes[lane]; continue }
                    var wide = [UInt32](repeating: 0, count: plan.count)
                    var generator = SplitMix64(seed: seeds[r])
                    stratifiedDraws(plan.classSize, generator: &generator) { k, u in wide[plan.classStart[k] + u] += 1 }
                    areas[lane] = wide.withUnsafeBufferPointer { plan.areas($0, total: plan.count) }
                }
                weights.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            }
            for lane in members.indices.map({ $0 - group }) {
                let cm = plan.confusion(counts[lane])
                out.append(metrics.map { $0.value(cm, areas[lane]) })
            }
        }
        return out
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
