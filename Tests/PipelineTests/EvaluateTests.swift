// Prediction files: every malformed case names its row and column; the evaluate stage is
// reproducible and writes what it promises.

import Artifacts
import Datasets
import Foundation
import Metrics
import SeededRandom
import TestSupport
import XCTest
@testable import Pipeline

final class EvaluateTests: ScratchTestCase {
    func file(_ text: String, _ name: String = "p.csv") throws -> String {
        let path = scratch + "/" + name
        try writeFileAtomically(Array(text.utf8), to: path)
        return path
    }

    let header = "image,label,p_bacterial,p_normal,p_viral\n"

    func assertError(_ text: String, _ expected: PredictionFileError, line: UInt = #line) throws {
        let path = try file(text)
        XCTAssertThrowsError(try readPredictions(path: path), line: line) { error in
            XCTAssertEqual(error as? PredictionFileError, expected, line: line)
        }
    }

    func testMalformedFilesNameRowAndColumn() throws {
        let p = scratch + "/p.csv"
        try assertError("image,label,p_bacterial,p_normal\na,0,0.5,0.5\n", .missingColumn(path: p, column: "p_viral"))
        try assertError(header + "a,normal,0.2,0.3,0.5\nb,fungal,0.2,0.3,0.5\n",
                        .badValue(path: p, row: 3, column: "label", message: "'fungal' is not a class (bacterial, normal, viral or 0, 1, 2)"))
        try assertError(header + "a,1,0.2,0.3,0.6\n", .badValue(path: p, row: 2, column: "p_bacterial..p_viral",
                                                                message: "probabilities sum to 1.1, not 1 (±1e-4); --renormalize divides by the sum"))
        try assertError(header + "a,1,0.2,nan,0.8\n", .badValue(path: p, row: 2, column: "p_normal", message: "nan is not a probability in [0, 1]"))
        try assertError(header + "a,1,0.2,x,0.8\n", .badValue(path: p, row: 2, column: "p_normal", message: "'x' is not a number"))
        try assertError(header, .empty(path: p))
        try assertError("", .empty(path: p))
        try assertError(header + "a,1,0.2,0.3,0.5\na,2,0.2,0.3,0.5\n", .badValue(path: p, row: 3, column: "image", message: "'a' appears twice"))
    }

    func testRenormalizeCountsTheRowsItFixedAndLabelsMayBeIndices() throws {
        let path = try file(header + "a,2,0.2,0.3,0.6\nb,bacterial,0.5,0.25,0.25\n")
        let (predictions, fixed) = try readPredictions(path: path, renormalize: true)
        XCTAssertEqual(fixed, 1)
        XCTAssertEqual(predictions.labels, [2, 0])
        XCTAssertEqual(predictions.p(0, 2), 0.6 / 1.1, accuracy: 1e-15)
        // The writer's output reads back to the same values.
        let again = try readPredictions(path: try file(predictionCSV(predictions), "q.csv")).predictions
        XCTAssertEqual(again, predictions)
    }

    func testAByteOrderMarkBeforeTheHeaderIsAccepted() throws {
        let plain = try file(header + "a,normal,0.2,0.3,0.5\n", "plain.csv")
        let marked = scratch + "/bom.csv"
        try writeFileAtomically([0xEF, 0xBB, 0xBF] + Array((header + "a,normal,0.2,0.3,0.5\n").utf8), to: marked)
        XCTAssertEqual(try readPredictions(path: marked).predictions, try readPredictions(path: plain).predictions)
    }

    func testEvaluateIsByteIdenticalForASeedAndWritesEveryFigure() throws {
        var g = SplitMix64(seed: 3)
        var text = header
        for i in 0..<90 {
            let label = i % 3
            var p = (0..<3).map { _ in g.unit() + 0.05 }
            p[label] += g.unit()
            let sum = p.reduce(0, +)
            text += "img\(i),\(label),\(p[0] / sum),\(p[1] / sum),\(p[2] / sum)\n"
        }
        let a = try file(text, "a.csv"), b = try file(text.replacingOccurrences(of: "img1,", with: "img1,"), "b.csv")
        func run(_ root: String) throws -> StageResult {
            try runEvaluate(try context(root), paths: [a, b], validationPaths: [], variant: "v",
                            settings: EvaluateSettings(names: ["A", "B"], resamples: 50, level: 0.95, bins: 15, renormalize: false, seed: 9))
        }
        let first = try run(scratch + "/one"), second = try run(scratch + "/two")
        XCTAssertEqual(first.manifest.outputs, second.manifest.outputs)
        let paths = Set(first.manifest.outputs.map(\.path))
        for expected in ["metrics.json", "table.md", "plots/A-confusion.svg", "plots/A-roc.svg", "plots/A-pr.svg", "plots/B-reliability.svg"] {
            XCTAssertTrue(paths.contains(expected), expected)
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let decoded = try decoder.decode(EvaluationFile.self, from: Data(contentsOf: URL(fileURLWithPath: first.folder + "/metrics.json")))
        XCTAssertEqual(decoded.models.count, 2)
        XCTAssertEqual(decoded.comparisons.count, 1)
        XCTAssertEqual(decoded.models[0].bootstrap["mcc"]?.resamples, 50)
        XCTAssertEqual(decoded.comparisons[0].mcnemar.pValue, 1)  // identical predictions
        XCTAssertTrue(try run(scratch + "/one").reused)
    }
}
