// Every metric against scikit-learn/SciPy values on random prediction sets (Fixtures/make_fixtures.py).

import Foundation
import XCTest
@testable import Metrics

struct MetricFixtures: Decodable {
    struct Set: Decodable {
        let labels: [Int]
        let probabilities: [Double]
        let confusion: [[Int]]
        let accuracy, precisionWeighted, recallWeighted, f1Weighted, precisionMacro, recallMacro, f1Macro: Double
        let mcc, kappa, aurocMicro, aurocMacro, aurocMacroInterpolated, auprcMicro, averagePrecisionMicro: Double
        let aurocPerClass: [Double]
        let brier, eceWidth, mceWidth, eceMass, mceMass, temperature: Double

        var predictions: Predictions {
            Predictions(ids: labels.indices.map(String.init), labels: labels, probabilities: probabilities, classes: 3)
        }
    }
    struct DeLong: Decodable {
        let truth: [Bool]
        let a, b: [Double]
        let aucA, aucB, z, p: Double
    }
    struct McNemar: Decodable { let b, c: Int; let p: Double }
    struct Distributions: Decodable {
        let tQuantiles: [[Double]]
        let normalQuantiles: [[Double]]
        let betaInc: [[Double]]
    }
    let sets: [Set]
    let delong: [DeLong]
    let mcnemar: [McNemar]
    let distributions: Distributions

    static let shared: MetricFixtures = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("metrics.json")
        return try! JSONDecoder().decode(MetricFixtures.self, from: Data(contentsOf: url))
    }()
}

final class ReferenceTests: XCTestCase {
    func testClosedFormMetricsMatchScikitLearnTo1e9() {
        XCTAssertEqual(MetricFixtures.shared.sets.count, 4)
        for (index, set) in MetricFixtures.shared.sets.enumerated() {
            let p = set.predictions
            let cm = ConfusionMatrix(labels: p.labels, predicted: p.predicted, classes: 3)
            let label = "set \(index) (n = \(p.count))"
            XCTAssertEqual(cm.counts, set.confusion, label)
            let pairs: [(String, Double, Double)] = [
                ("accuracy", cm.accuracy, set.accuracy),
                ("precision weighted", cm.weighted(cm.precision), set.precisionWeighted),
                ("recall weighted", cm.weighted(cm.recall), set.recallWeighted),
                ("F1 weighted", cm.weighted(cm.f1), set.f1Weighted),
                ("precision macro", cm.macro(cm.precision), set.precisionMacro),
                ("recall macro", cm.macro(cm.recall), set.recallMacro),
                ("F1 macro", cm.macro(cm.f1), set.f1Macro),
                ("MCC", cm.mcc, set.mcc),
                ("kappa", cm.kappa, set.kappa),
                ("AUROC micro", p.aurocMicro, set.aurocMicro),
                ("AUROC macro", p.aurocMacro, set.aurocMacro),
                ("AUROC macro interpolated", p.aurocMacroInterpolated, set.aurocMacroInterpolated),
                ("AUPRC micro trapezoid", p.auprcMicro, set.auprcMicro),
                ("average precision micro", p.averagePrecisionMicro, set.averagePrecisionMicro),
                ("Brier", p.brier, set.brier),
                ("ECE width", p.calibrationEqualWidth().ece, set.eceWidth),
                ("MCE width", p.calibrationEqualWidth().mce, set.mceWidth),
                ("ECE mass", p.calibrationEqualMass().ece, set.eceMass),
                ("MCE mass", p.calibrationEqualMass().mce, set.mceMass),
            ]
            for (name, got, want) in pairs { XCTAssertEqual(got, want, accuracy: 1e-9, "\(label) \(name)") }
            for k in 0..<3 {
                let s = p.oneVsRest(k)
                XCTAssertEqual(auroc(truth: s.truth, scores: s.scores), set.aurocPerClass[k], accuracy: 1e-9, "\(label) class \(k)")
            }
            XCTAssertEqual(p.fitTemperature(), set.temperature, accuracy: 1e-6 * set.temperature, "\(label) temperature")
        }
    }

    func testDeLongMatchesTheKernelDefinition() throws {
        for (i, c) in MetricFixtures.shared.delong.enumerated() {
            let result = try XCTUnwrap(delong(truth: c.truth, scoresA: c.a, scoresB: c.b))
            XCTAssertEqual(result.aucA, c.aucA, accuracy: 1e-12, "case \(i)")
            XCTAssertEqual(result.aucB, c.aucB, accuracy: 1e-12, "case \(i)")
            XCTAssertEqual(result.test.statistic, c.z, accuracy: 1e-9, "case \(i)")
            XCTAssertEqual(result.test.pValue, c.p, accuracy: 1e-9, "case \(i)")
        }
    }

    func testMcNemarMatchesSciPy() {
        for c in MetricFixtures.shared.mcnemar {
            // Build two prediction sets with b images only A gets right and c only B gets right.
            let n = c.b + c.c + 10
            let labels = [Int](repeating: 0, count: n)
            var a = [Double](), b = [Double]()
            for i in 0..<n {
                let aRight = i < c.b || i >= c.b + c.c, bRight = i >= c.b
                a += aRight ? [0.8, 0.1, 0.1] : [0.1, 0.8, 0.1]
                b += bRight ? [0.8, 0.1, 0.1] : [0.1, 0.8, 0.1]
            }
            let ids = labels.indices.map(String.init)
            let result = mcnemar(Predictions(ids: ids, labels: labels, probabilities: a, classes: 3),
                                 Predictions(ids: ids, labels: labels, probabilities: b, classes: 3))
            XCTAssertEqual(result.pValue, c.p, accuracy: 1e-12, "b=\(c.b) c=\(c.c)")
        }
    }

    func testDistributionFunctionsMatchSciPy() {
        let d = MetricFixtures.shared.distributions
        for row in d.tQuantiles { XCTAssertEqual(studentTQuantile(row[0], df: row[1]), row[2], accuracy: 1e-10, "\(row)") }
        for row in d.normalQuantiles { XCTAssertEqual(normalQuantile(row[0]), row[1], accuracy: 1e-12, "\(row)") }
        for row in d.betaInc { XCTAssertEqual(regularizedIncompleteBeta(row[0], row[1], row[2]), row[3], accuracy: 1e-13, "\(row)") }
    }
}
