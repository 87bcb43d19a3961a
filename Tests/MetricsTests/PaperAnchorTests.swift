// The paper's own numbers (SPEC §5, §5.1, §8, §10, §11): confusion matrices that reproduce table
// rows, every printed MCC interval, the hard-prediction AUROC/AUPRC, and all 25 significance claims.

import SeededRandom
import XCTest
@testable import Metrics
import Datasets
import Report

final class PaperAnchorTests: XCTestCase {
    func testSPECConfusionMatricesReproduceTheirTableRows() {
        // (matrix, accuracy, weighted precision, weighted F1, MCC) from SPEC §5 / Tables 2 and 4.
        let rows: [([[Int]], Double, Double, Double, Double)] = [
            ([[237, 0, 5], [0, 221, 13], [0, 20, 128]], 0.9391, 0.9396, 0.9392, 0.9068),  // proposed
            ([[239, 0, 3], [14, 214, 6], [4, 14, 130]], 0.9343, 0.9345, 0.9338, 0.8996),  // calibrated CCE
        ]
        for (counts, accuracy, precision, f1, mcc) in rows {
            let cm = ConfusionMatrix(classes: 3, counts: counts)
            XCTAssertEqual(cm.support, [242, 234, 148])
            XCTAssertEqual(round4(cm.accuracy), accuracy)
            XCTAssertEqual(round4(cm.weighted(cm.precision)), precision)
            XCTAssertEqual(round4(cm.weighted(cm.recall)), accuracy)  // weighted recall is accuracy
            XCTAssertEqual(round4(cm.weighted(cm.f1)), f1)
            XCTAssertEqual(round4(cm.mcc), mcc)
        }
    }

    func testPaperCIReproducesEveryPrintedIntervalAndFlagsTheTypos() {
        XCTAssertEqual(paperCI(0.8899, n: 624), Interval(lower: 0.8653, upper: 0.9145, method: paperCI(0.8899, n: 624).method))
        XCTAssertEqual(paperCI(0.9068, n: 624).lower, 0.8839)
        XCTAssertEqual(paperCI(0.9068, n: 624).upper, 0.9297)
        // SPEC §10: (MCC, printed lower, printed upper) for all 24 rows.
        let printed: [(Double, Double, Double)] = [
            (0.8899, 0.8653, 0.9145), (0.8953, 0.8712, 0.9194), (0.8831, 0.8578, 0.9084), (0.8562, 0.8286, 0.8838),
            (0.8858, 0.8608, 0.9108), (0.8829, 0.8576, 0.9082), (0.8909, 0.8664, 0.9154), (0.8996, 0.8760, 0.9132),
            (0.8807, 0.8552, 0.9062), (0.8734, 0.8473, 0.8995), (0.8903, 0.8657, 0.9149), (0.8947, 0.8706, 0.9188),
            (0.8923, 0.8679, 0.9167), (0.8898, 0.8652, 0.9144), (0.8996, 0.8760, 0.9232), (0.8877, 0.8629, 0.9125),
            (0.8972, 0.8733, 0.9211), (0.8926, 0.8683, 0.9169), (0.9024, 0.8791, 0.9157), (0.8903, 0.8657, 0.9149),
            (0.8970, 0.8731, 0.9209), (0.9019, 0.8785, 0.9253), (0.9068, 0.8839, 0.9297), (0.87, 0.8436, 0.8964),
        ]
        var typos: [Double] = []
        for (mcc, lower, upper) in printed {
            let ci = paperCI(mcc, n: 624)
            XCTAssertEqual(ci.lower, lower, "lower bound of \(mcc)")
            if ci.upper != upper { typos.append(upper) }
            // The plain Wald interval is within 1e-4 of every printed bound.
            XCTAssertEqual(waldCI(mcc, n: 624).lower, lower, accuracy: 1.0001e-4)
        }
        XCTAssertEqual(typos, [0.9132, 0.9157])  // SPEC §5.1: typos for 0.9232 and 0.9257
    }

    func testHardPredictionMicroAreasAtAccuracy9295() {
        // 580 of 624 right (0.9295), scored on the one-hot of the voted label.
        let cm = [[230, 5, 7], [4, 220, 10], [3, 15, 130]]
        var labels: [Int] = [], votes: [Int] = []
        for t in 0..<3 { for p in 0..<3 { for _ in 0..<cm[t][p] { labels.append(t); votes.append(p) } } }
        let base = Predictions(ids: labels.indices.map(String.init), labels: labels,
                               probabilities: [Double](repeating: 1.0 / 3, count: labels.count * 3), classes: 3)
        let hard = base.hardened(votes)
        let a = 580.0 / 624
        XCTAssertEqual(round4(a), 0.9295)
        XCTAssertEqual(hard.aurocMicro, (1 + a - (1 - a) / 2) / 2, accuracy: 1e-12)
        XCTAssertEqual(round4(hard.aurocMicro), 0.9471)
        XCTAssertEqual(round4(hard.auprcMicro), 0.9412)
        XCTAssertEqual(round4(hard.averagePrecisionMicro), 0.8875)  // SPEC §5: what AP would have said
    }

    func testTheInferredSignificanceRuleReproducesAll25Claims() {
        let mcc: [String: Double] = [
            "CCE": 0.8899, "CCE+entropy": 0.8953, "KL": 0.8831, "focal": 0.8562, "hinge": 0.8858,
            "smoothed CCE": 0.8829, "smoothed focal": 0.8909, "calibrated CCE": 0.8996, "calibrated KL": 0.8807,
            "calibrated focal": 0.8734, "calibrated hinge": 0.8903, "calibrated negative entropy": 0.8947,
        ]
        var claims: [(reference: Double, other: Double, significant: Bool, what: String)] = []
        // Calibrated CCE beats focal and calibrated focal, and no other loss (11 claims).
        for (name, value) in mcc where name != "calibrated CCE" {
            claims.append((0.8996, value, name == "focal" || name == "calibrated focal", "calibrated CCE vs \(name)"))
        }
        // No difference among the ensemble methods of top-3, nor of top-5 (6 + 6 claims).
        for group in [[0.8923, 0.8898, 0.8996, 0.8877], [0.8972, 0.8926, 0.9024, 0.8903]] {
            for i in 0..<4 { for j in (i + 1)..<4 { claims.append((group[i], group[j], false, "ensembles \(group[i]) vs \(group[j])")) } }
        }
        claims.append((0.8970, 0.9019, false, "model-level top-3 vs top-5"))
        claims.append((0.9068, 0.87, true, "proposed vs Rajaraman et al. [24]"))
        XCTAssertEqual(claims.count, 25)
        for claim in claims {
            XCTAssertEqual(paperSignificance(reference: claim.reference, other: claim.other, n: 624).significant,
                           claim.significant, claim.what)
        }
        // An unpaired two-proportion z-test would miss calibrated CCE vs calibrated focal (SPEC §8).
        let pooledSE = (0.8996 * 0.1004 / 624 + 0.8734 * 0.1266 / 624).squareRoot()
        XCTAssertGreaterThan(2 * (1 - normalCDF((0.8996 - 0.8734) / pooledSE)), 0.05)
    }

    func testBootstrapIsByteIdenticalForASeedAndBracketsTheEstimate() {
        let set = MetricFixtures.shared.sets[2].predictions
        var g1 = SplitMix64(seed: 11), g2 = SplitMix64(seed: 11), g3 = SplitMix64(seed: 12)
        let a = bootstrapIntervals(set, metrics: [.mcc], resamples: 300, generator: &g1)[.mcc]!
        let b = bootstrapIntervals(set, metrics: [.mcc], resamples: 300, generator: &g2)[.mcc]!
        let c = bootstrapIntervals(set, metrics: [.mcc], resamples: 300, generator: &g3)[.mcc]!
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a.percentile, c.percentile)
        for interval in [a.percentile, a.bca] {
            XCTAssertLessThan(interval.lower, a.estimate)
            XCTAssertGreaterThan(interval.upper, a.estimate)
        }
        // The resample keeps each class's count.
        var g = SplitMix64(seed: 1)
        let rows = stratifiedResample(labels: set.labels, classes: 3, generator: &g)
        XCTAssertEqual((0..<3).map { k in rows.filter { set.labels[$0] == k }.count },
                       (0..<3).map { k in set.labels.filter { $0 == k }.count })
    }
}
