// The linear-time bootstrap and jackknife (Resampling.swift) against the direct definitions: every
// resample's metrics equal the metrics of the copied rows (computed by the scikit-learn-checked
// functions), every jackknife value equals the metric with the rows really left out, and the
// intervals do not depend on threads or on the one-byte weight path.

import SeededRandom
import XCTest
@testable import Metrics

final class ResamplingTests: XCTestCase {
    /// n images with scores quantised to `levels` steps, so runs of tied scores are common.
    private func predictions(n: Int, levels: Double?, seed: UInt64) -> Predictions {
        var g = SplitMix64(seed: seed)
        var labels: [Int] = [], probabilities: [Double] = []
        for _ in 0..<n {
            let label = Int(g.next() % 3)
            var raw = (0..<3).map { k in Double(g.next() % 1000) / 1000 + (k == label ? 0.8 : 0) }
            if let levels { raw = raw.map { ($0 * levels).rounded() / levels + 0.001 } }
            let sum = raw.reduce(0, +)
            labels.append(label)
            probabilities += raw.map { $0 / sum }
        }
        return Predictions(ids: (0..<n).map { "i\($0)" }, labels: labels, probabilities: probabilities, classes: 3)
    }

    /// The metric values of a materialised resample, from the reference implementations.
    private func direct(_ p: Predictions, _ metric: BootstrappedMetric) -> Double {
        let cm = ConfusionMatrix(labels: p.labels, predicted: p.predicted, classes: p.classes)
        return metric.value(cm, CurveAreas(auroc: p.aurocMicro, auprc: p.auprcMicro))
    }

    /// Positions of the plan (images of class 0 in file order, then class 1, …) as file rows.
    private func rowsByPosition(_ p: Predictions) -> [Int] {
        (0..<p.classes).flatMap { k in p.labels.indices.filter { p.labels[$0] == k } }
    }

    func testEveryResampleEqualsTheMetricsOfItsCopiedRows() {
        for (levels, seed) in [(nil, 1), (Optional(8.0), 2)] as [(Double?, UInt64)] {
            let p = predictions(n: 157, levels: levels, seed: seed)
            let plan = ResamplingPlan(p)
            let rows = rowsByPosition(p)
            for r in 0..<25 {
                var g = SplitMix64(seed: 100 + UInt64(r))
                let copied = p.subset(stratifiedResample(labels: p.labels, classes: 3, generator: &g))
                var weights = [UInt16](repeating: 0, count: p.count)
                var h = SplitMix64(seed: 100 + UInt64(r))
                stratifiedDraws(plan.classSize, generator: &h) { k, u in weights[plan.classStart[k] + u] += 1 }
                // The same draws: position p's weight is its file row's multiplicity.
                for (position, row) in rows.enumerated() {
                    XCTAssertEqual(Int(weights[position]), copied.ids.filter { $0 == p.ids[row] }.count)
                }
                let areas = weights.withUnsafeBufferPointer { plan.areas($0, total: p.count) }
                XCTAssertEqual(areas.auroc, copied.aurocMicro, accuracy: 1e-12, "resample \(r), ties: \(levels != nil)")
                XCTAssertEqual(areas.auprc, copied.auprcMicro, accuracy: 1e-12, "resample \(r), ties: \(levels != nil)")
            }
            XCTAssertEqual(plan.wholeAreas.auroc, p.aurocMicro, accuracy: 1e-12)
            XCTAssertEqual(plan.wholeAreas.auprc, p.auprcMicro, accuracy: 1e-12)
        }
    }

    func testFourLanePassEqualsTheOneResamplePassBitForBit() {
        for (levels, seed) in [(nil, 11), (Optional(6.0), 12)] as [(Double?, UInt64)] {
            let p = predictions(n: 203, levels: levels, seed: seed)
            let plan = ResamplingPlan(p)
            // Four resamples' weights (up to 15 each), packed four bits apiece.
            var single = [[UInt16]](repeating: [UInt16](repeating: 0, count: p.count), count: 4)
            var packed = [UInt16](repeating: 0, count: p.count)
            for lane in 0..<4 {
                var g = SplitMix64(seed: 500 + UInt64(lane))
                stratifiedDraws(plan.classSize, generator: &g) { k, u in
                    let position = plan.classStart[k] + u
                    guard single[lane][position] < 15 else { return }
                    single[lane][position] += 1
                    packed[position] += 1 << (4 * lane)
                }
            }
            let lanes = packed.withUnsafeBufferPointer { plan.areas(lanes: $0, totals: [Int](repeating: p.count, count: 4)) }
            for lane in 0..<4 {
                let one = single[lane].withUnsafeBufferPointer { plan.areas($0, total: p.count) }
                XCTAssertEqual(lanes[lane].auroc.bitPattern, one.auroc.bitPattern, "lane \(lane), ties: \(levels != nil)")
                XCTAssertEqual(lanes[lane].auprc.bitPattern, one.auprc.bitPattern, "lane \(lane), ties: \(levels != nil)")
            }
        }
    }

    func testJackknifeValuesEqualTheMetricsWithTheRowsLeftOut() {
        let p = predictions(n: 61, levels: 10, seed: 3)
        let plan = ResamplingPlan(p)
        let rows = rowsByPosition(p)
        // Exact: one value per image (confusion metrics: one per cell, weighted by its count).
        let exact = plan.jackknife(BootstrappedMetric.allCases, threads: 2)
        for metric in BootstrappedMetric.allCases {
            var expected: [Double] = (0..<p.count).map { leave in direct(p.subset((0..<p.count).filter { $0 != leave }), metric) }
            var got = exact[metric]!.flatMap { [Double](repeating: $0.value, count: Int($0.weight)) }
            expected.sort()
            got.sort()
            XCTAssertEqual(got.count, expected.count, "\(metric)")
            for (a, b) in zip(got, expected) { XCTAssertEqual(a, b, accuracy: 1e-12, "\(metric)") }
        }
        // Grouped: group g leaves out positions g, g + G, ….
        let grouped = plan.jackknife([.aurocMicro, .auprcMicro], threads: 3, exactLimit: 10, groupCount: 7)
        for g in 0..<7 {
            let left = Set(stride(from: g, to: p.count, by: 7).map { rows[$0] })
            let kept = p.subset((0..<p.count).filter { !left.contains($0) })
            XCTAssertEqual(grouped[.aurocMicro]![g].value, kept.aurocMicro, accuracy: 1e-12)
            XCTAssertEqual(grouped[.auprcMicro]![g].value, kept.auprcMicro, accuracy: 1e-12)
        }
        XCTAssertEqual(grouped[.aurocMicro]!.count, 7)
    }

    func testIntervalsMatchAPercentileBootstrapOfCopiedRows() {
        let p = predictions(n: 90, levels: nil, seed: 4)
        var g = SplitMix64(seed: 9)
        let result = bootstrapIntervals(p, resamples: 200, level: 0.9, generator: &g, threads: 2)
        // The reference: the same seeds, copied resamples, NumPy-style quantiles.
        var seeds = SplitMix64(seed: 9)
        let resamples = (0..<200).map { _ -> Predictions in
            var generator = SplitMix64(seed: seeds.next())
            return p.subset(stratifiedResample(labels: p.labels, classes: 3, generator: &generator))
        }
        for metric in BootstrappedMetric.allCases {
            let values = resamples.map { direct($0, metric) }.sorted()
            XCTAssertEqual(result[metric]!.estimate, direct(p, metric), accuracy: 1e-12, "\(metric)")
            XCTAssertEqual(result[metric]!.percentile.lower, quantile(values, 0.05), accuracy: 1e-12, "\(metric)")
            XCTAssertEqual(result[metric]!.percentile.upper, quantile(values, 0.95), accuracy: 1e-12, "\(metric)")
            XCTAssertLessThanOrEqual(result[metric]!.bca.lower, result[metric]!.bca.upper)
        }
    }

    func testThreadsAndTheWideWeightPathGiveByteIdenticalIntervals() {
        let p = predictions(n: 300, levels: 20, seed: 5)
        func run(threads: Int, weightLimit: Int) -> [BootstrappedMetric: BootstrapResult] {
            var g = SplitMix64(seed: 77)
            return bootstrapIntervals(p, resamples: 150, generator: &g, threads: threads, weightLimit: weightLimit)
        }
        let reference = run(threads: 1, weightLimit: 15)
        XCTAssertEqual(run(threads: 3, weightLimit: 15), reference)
        // A limit of 1 sends every resample that draws an image twice down the wide path.
        XCTAssertEqual(run(threads: 2, weightLimit: 1), reference)
        var other = SplitMix64(seed: 78)
        XCTAssertNotEqual(bootstrapIntervals(p, resamples: 150, generator: &other)[.mcc]!.percentile, reference[.mcc]!.percentile)
    }

    func testAccelerationIsZeroForSymmetricValuesAndSignedBySkew() {
        XCTAssertEqual(acceleration([(1, 1), (2, 1), (3, 1)]), 0, accuracy: 1e-15)
        // θ̄ = 1.25 from values (1, 1, 1, 2): Σ(θ̄−θ)³ = 3·0.25³ − 0.75³, Σ(θ̄−θ)² = 3·0.25² + 0.75².
        let expected = (3 * pow(0.25, 3) - pow(0.75, 3)) / (6 * pow(3 * 0.0625 + 0.5625, 1.5))
        XCTAssertEqual(acceleration([(1, 3), (2, 1)]), expected, accuracy: 1e-15)
    }

    func testThinnedCurvesKeepTheirEndsAndAtMostAboutMaxPoints() {
        let x = (0...10_000).map { Double($0) / 10_000 }
        let curve = Curve(x: x, y: x.map { $0 * $0 })
        let thin = curve.thinned(maxPoints: 100)
        XCTAssertLessThanOrEqual(thin.x.count, 102)
        XCTAssertGreaterThan(thin.x.count, 50)
        XCTAssertEqual(thin.x.first, 0)
        XCTAssertEqual(thin.x.last, 1)
        XCTAssertEqual(thin.area, curve.area, accuracy: 1e-3)
        XCTAssertEqual(Curve(x: [0, 1], y: [0, 1]).thinned(maxPoints: 100), Curve(x: [0, 1], y: [0, 1]))
    }
}
