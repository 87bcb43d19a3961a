// The ensemble stage on hand-made members: stacking learns to ignore a confident but useless member,
// resumes byte-identical after an interruption; weighted averaging and voting end to end with the
// ranking and its split recorded; members that are missing, of another dataset version or of other
// images are refused by name; a fitted ensemble predicts another dataset.

import Artifacts
import Datasets
import Ensembles
import Foundation
import Metrics
import SeededRandom
import Synthetic
import TestSupport
import XCTest
@testable import Pipeline

final class EnsembleStageTests: ScratchTestCase {
    /// Members on n images: an informative one (softmax of 2.5·onehot(label) + N(0, 1)) and a
    /// confident one that ignores the label.
    func members(n: Int, seed: UInt64) -> [Predictions] {
        var g = SplitMix64(seed: seed)
        let labels = (0..<n).map { _ in g.index(below: 3) }
        var informative: [Double] = [], noise: [Double] = []
        for label in labels {
            let logits = (0..<3).map { k in (k == label ? 2.5 : 0) + g.normal() }
            let e = logits.map { Foundation.exp($0) }
            informative += e.map { $0 / e.reduce(0, +) }
            let wrong = g.index(below: 3)
            let peaked = (0..<3).map { k in k == wrong ? 0.9 : 0.05 }
            noise += peaked
        }
        let ids = (0..<n).map { "img\($0)" }
        return [Predictions(ids: ids, labels: labels, probabilities: informative, classes: 3),
                Predictions(ids: ids, labels: labels, probabilities: noise, classes: 3)]
    }

    func stackingConfig() throws -> PipelineConfig {
        var config = try repositoryConfig()
        config.ensemble.stacking.learningRate = 0.05
        config.ensemble.stacking.epochs = 30
        config.ensemble.stacking.earlyStoppingPatience = 30
        config.ensemble.stacking.plateauPatience = 30
        return config
    }

    func stack(_ root: String, members: [Predictions], splits: [Split], interruptAfter: Int? = nil) throws -> (folder: String, test: Predictions?) {
        let context = try context(root, config: try stackingConfig())
        let run = try context.store.locate(stage: "ensemble", variant: "s", settings: ["test": "stacking"], inputKeys: [],
                                           formatVersion: 1, force: false)
        let resuming = FileManager.default.fileExists(atPath: run.folder + "/training.safetensors")
        var writer = try run.begin(inputs: [], seed: 1, resume: resuming)
        let (_, test) = try fitStacking(context, members: members, splits: splits, resuming: resuming, writer: &writer,
                                        continueAfter: { epoch in interruptAfter.map { epoch < $0 } ?? true })
        _ = try writer.finish(summary: .null)
        return (run.folder, test)
    }

    func splits(_ n: Int) -> [Split] { (0..<n).map { $0 < n * 2 / 3 ? .train : $0 < n * 5 / 6 ? .val : .test } }

    func testStackingLearnsToIgnoreAConfidentNoiseMember() throws {
        let all = members(n: 600, seed: 3)
        let testRows = splits(600).indices.filter { splits(600)[$0] == .test }
        let informative = accuracy(all[0].subset(testRows)), average = accuracy(averaged(all).subset(testRows))
        let stacked = try XCTUnwrap(try stack(scratch + "/a", members: all, splits: splits(600)).test)
        XCTAssertEqual(stacked.count, testRows.count)
        XCTAssertLessThan(average, informative - 0.1, "the noise member must hurt an average for this test to mean anything")
        XCTAssertGreaterThanOrEqual(accuracy(stacked), informative - 0.03, "stacking \(accuracy(stacked)), informative \(informative)")
    }

    func testStackingResumesByteIdenticalAndRepeatsForASeed() throws {
        let all = members(n: 240, seed: 5)
        let straight = try stack(scratch + "/one", members: all, splits: splits(240))
        let again = try stack(scratch + "/two", members: all, splits: splits(240))
        XCTAssertThrowsError(try stack(scratch + "/three", members: all, splits: splits(240), interruptAfter: 2)) { error in
            guard case .training(.interrupted(afterEpoch: 2, _)) = error as? StageError else { return XCTFail("\(error)") }
        }
        let resumed = try stack(scratch + "/three", members: all, splits: splits(240))
        let reference = FileManager.default.contents(atPath: straight.folder + "/model.safetensors")
        XCTAssertNotNil(reference)
        XCTAssertEqual(FileManager.default.contents(atPath: again.folder + "/model.safetensors"), reference)
        XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/model.safetensors"), reference)
        // The epoch log is the same but for each epoch's wall time.
        func log(_ folder: String) throws -> String {
            try String(contentsOfFile: folder + "/log.jsonl", encoding: .utf8)
                .replacingOccurrences(of: #""seconds":[0-9.e-]+"#, with: "", options: .regularExpression)
        }
        XCTAssertEqual(try log(resumed.folder), try log(straight.folder))
        XCTAssertEqual(try log(straight.folder).split(separator: "\n").count, 30)
        XCTAssertEqual(resumed.test, straight.test)
    }

    // MARK: the stage on hand-made classify-train artifacts

    /// A prepared dataset named "d" (tiny synthetic images; members below only need its key).
    func dataset(_ context: StageContext) throws -> StageResult {
        let settings = PrepareSettings(layout: .synthetic, validation: .auto, validationFraction: 0.2, testFraction: 0,
                                       allTest: false, splitSeed: 1, contactSheetImages: 0,
                                       synthetic: SyntheticConfig(size: 48, trainPerClass: 4, testPerClass: 2, lungImages: 1, seed: 3))
        return try runPrepare(context, source: scratch + "/syn", name: "d", settings: settings)
    }

    /// A classify-train artifact LOSS-d holding only prediction files.
    @discardableResult
    func member(_ context: StageContext, _ loss: String, val: Predictions, test: Predictions, datasetKey: String) throws -> StageResult {
        let run = try context.store.locate(stage: "classify-train", variant: "\(loss)-d", settings: ["loss": loss, "fake": "yes"],
                                           inputKeys: [datasetKey], formatVersion: 1, force: false)
        var writer = try run.begin(inputs: [ManifestInput(name: "dataset", path: "d", key: datasetKey)], seed: 1)
        try writer.write(Array(predictionCSV(val).utf8), to: "predictions-val.csv")
        try writer.write(Array(predictionCSV(test).utf8), to: "predictions-test.csv")
        return writer.result(try writer.finish(summary: .object(["loss": .string(loss)])))
    }

    func testWeightedAndVoteEndToEndWithTheRankingRecorded() throws {
        let context = try context(scratch + "/a")
        let key = try dataset(context).manifest.key
        let val = members(n: 90, seed: 7), test = members(n: 60, seed: 8)
        try member(context, "cce", val: val[1], test: test[1], datasetKey: key)  // the noise member
        try member(context, "kl", val: val[0], test: test[0], datasetKey: key)
        var shuffled = val[0].probabilities
        shuffled.swapAt(0, 1)
        try member(context, "focal", val: Predictions(ids: val[0].ids, labels: val[0].labels, probabilities: shuffled, classes: 3),
                   test: test[0], datasetKey: key)
        let weighted = try runEnsemble(context, method: .weighted, data: "d", choice: .top(2))
        let file = try JSONDecoder().decode(EnsembleFile.self, from: Data(contentsOf: URL(fileURLWithPath: weighted.folder + "/ensemble.json")))
        XCTAssertEqual(file.ranking.map(\.loss), [.kl, .focal, .cce])  // noise last; ties keep the losses' order
        XCTAssertEqual(try rankClassifiers(context, data: "d", rankOn: .val), file.ranking)
        XCTAssertEqual(file.members.map(\.loss), [.kl, .focal])
        XCTAssertEqual(file.rankedOn, .val)
        XCTAssertEqual(file.fittedOn, .val)
        let fit = try XCTUnwrap(file.weights)
        XCTAssertLessThanOrEqual(fit.kktResidual, 1e-8)
        XCTAssertEqual(fit.weights.reduce(0, +), 1, accuracy: 1e-12)
        // The written validation predictions are the weighted sum of the members' files.
        let written = try readPredictions(path: weighted.folder + "/predictions-val.csv").predictions
        let focalFolder = try context.store.current(stage: "classify-train", variant: "focal-d").folder
        let expected = weightedSum([val[0], try readPredictions(path: focalFolder + "/predictions-val.csv").predictions], weights: fit.weights)
        for (a, b) in zip(written.probabilities, expected.probabilities) { XCTAssertEqual(a, b, accuracy: 1e-9) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: weighted.folder + "/predictions-test.csv"))
        XCTAssertTrue(try runEnsemble(context, method: .weighted, data: "d", choice: .top(2)).reused)

        // Ranking on the test split is the paper's protocol, and the artifact says so.
        var paper = try repositoryConfig()
        paper.ensemble.rankOn = .test
        paper.ensemble.fitOn = .test
        let onTest = try runEnsemble(StageContext(config: paper, artifacts: scratch + "/a"), method: .weighted, data: "d", choice: .top(2))
        let label = try XCTUnwrap(onTest.manifest.summary.stringValue(of: "label"))
        XCTAssertTrue(label.contains("ranked on test") && label.contains("fitted on test"), label)
        let notes = try JSONDecoder().decode(EnsembleFile.self, from: Data(contentsOf: URL(fileURLWithPath: onTest.folder + "/ensemble.json"))).protocolNotes
        XCTAssertEqual(notes.count, 2)

        let vote = try runEnsemble(context, method: .vote, data: "d", choice: .named([.cce, .kl, .focal]))
        let votes = try readPredictions(path: vote.folder + "/predictions-test.csv").predictions
        XCTAssertEqual(votes, majorityVote([test[1], test[0], test[0]]))
    }

    func testMissingMembersOtherDatasetsAndOtherImagesAreRefusedByName() throws {
        let context = try context(scratch + "/a")
        let key = try dataset(context).manifest.key
        let val = members(n: 30, seed: 9), test = members(n: 30, seed: 10)
        try member(context, "cce", val: val[0], test: test[0], datasetKey: key)
        XCTAssertThrowsError(try runEnsemble(context, method: .average, data: "d", choice: .named([.cce, .hinge]))) { error in
            XCTAssertTrue("\(error)".contains("member 'hinge'") && "\(error)".contains("classify-train --loss hinge --data d"), "\(error)")
        }
        XCTAssertThrowsError(try runEnsemble(context, method: .average, data: "d", choice: .top(3))) { error in
            XCTAssertTrue("\(error)".contains("--top 3") && "\(error)".contains("found 1"), "\(error)")
        }
        try member(context, "kl", val: val[1], test: test[1], datasetKey: "another-version-of-d")
        XCTAssertThrowsError(try runEnsemble(context, method: .average, data: "d", choice: .named([.cce, .kl]))) { error in
            XCTAssertTrue("\(error)".contains("member 'kl'") && "\(error)".contains("another version"), "\(error)")
        }
        let fewer = members(n: 29, seed: 9)
        try member(context, "focal", val: fewer[0], test: test[0], datasetKey: key)
        XCTAssertThrowsError(try runEnsemble(context, method: .average, data: "d", choice: .named([.cce, .focal]))) { error in
            XCTAssertTrue("\(error)".contains("focal") && "\(error)".contains("29 images"), "\(error)")
        }
        XCTAssertThrowsError(try context.store.current(stage: "ensemble", variant: "average-2members-d"))
    }
}
