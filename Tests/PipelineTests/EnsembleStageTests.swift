// The ensemble stage on hand-made members: stacking learns to ignore a confident but useless member,
// resumes byte-identical after an interruption; weighted averaging and voting end to end with the
// ranking and its split recorded; members that are missing, of another dataset version or of other
// images are refused by name; a fitted ensemble predicts another dataset.

import Artifacts
import Datasets
import Engine
import Ensembles
import Foundation
import Metrics
import Models
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
                                        continueAfter: { p in p.step > 0 || (interruptAfter.map { p.epoch < $0 } ?? true) })
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
            guard case .training(.interrupted(epoch: 2, step: 0, _)) = error as? StageError else { return XCTFail("\(error)") }
        }
        let resumed = try stack(scratch + "/three", members: all, splits: splits(240))
        let reference = FileManager.default.contents(atPath: straight.folder + "/model.safetensors")
        XCTAssertNotNil(reference)
        XCTAssertEqual(FileManager.default.contents(atPath: again.folder + "/model.safetensors"), reference)
        XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/model.safetensors"), reference)
        // The epoch log holds no wall times, so it is byte-identical too.
        func log(_ folder: String) throws -> String { try String(contentsOfFile: folder + "/log.jsonl", encoding: .utf8) }
        XCTAssertEqual(try log(resumed.folder), try log(straight.folder))
        XCTAssertEqual(try log(again.folder), try log(straight.folder))
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

    // MARK: model level

    /// Two members' maps (2×2 pixels, 8 channels each) for `n` images: the first carries the label
    /// (channel c is 1 where c % 3 is the label, plus noise), the second is noise; written as the
    /// float16 cache the stage reads, and returned in Float32.
    func modelLevelCache(_ folder: String, n: Int, seed: UInt64) throws -> (cache: DCLCache, maps: [[Float]]) {
        var g = SplitMix64(seed: seed)
        let labels = (0..<n).map { _ in g.index(below: 3) }
        var maps: [[Float]] = [[], []]
        for label in labels {
            for _ in 0..<4 {
                maps[0] += (0..<8).map { c in max(0, (c % 3 == label ? 1 : 0) + Float(0.3 * g.normal())) }
                maps[1] += (0..<8).map { _ in max(0, Float(g.normal())) }
            }
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var files: [DCLCacheFile] = []
        for (m, values) in maps.enumerated() {
            let path = folder + "/dcl-\(m + 1).f16"
            try Data(values.map { Float16($0) }.withUnsafeBytes { Array($0) }).write(to: URL(fileURLWithPath: path))
            files.append(DCLCacheFile(path: path, rows: n, h: 2, w: 2, channels: 8))
        }
        return (DCLCache(files: files, labels: labels, ids: (0..<n).map { "img\($0)" }), maps)
    }

    func modelLevelConfig(codeCompat: Bool = false) throws -> PipelineConfig {
        var config = try repositoryConfig()
        config.ensemble.modelLevel.learningRate = 0.05
        config.ensemble.modelLevel.epochs = 12
        config.ensemble.modelLevel.earlyStoppingPatience = 12
        config.ensemble.modelLevel.plateauPatience = 12
        config.ensemble.modelLevelCodeCompat = codeCompat
        return config
    }

    func trainHead(_ root: String, cache: DCLCache, codeCompat: Bool = false, interruptAfter: Int? = nil) throws -> (folder: String, test: Predictions?) {
        let context = try context(root, config: try modelLevelConfig(codeCompat: codeCompat))
        let run = try context.store.locate(stage: "ensemble", variant: "m", settings: ["test": "model-level"], inputKeys: [],
                                           formatVersion: 1, force: false)
        let resuming = FileManager.default.fileExists(atPath: run.folder + "/training.safetensors")
        var writer = try run.begin(inputs: [], seed: 1, resume: resuming)
        let (_, test) = try trainModelLevel(context, cache: cache, splits: splits(cache.ids.count), resuming: resuming, writer: &writer,
                                            continueAfter: { p in p.step > 0 || (interruptAfter.map { p.epoch < $0 } ?? true) })
        _ = try writer.finish(summary: .null)
        return (run.folder, test)
    }

    func testModelLevelHeadLearnsAndTheFloat16CacheChangesNothingBeyond1e3() throws {
        let (cache, maps) = try modelLevelCache(scratch + "/cache", n: 240, seed: 11)
        let trained = try trainHead(scratch + "/a", cache: cache)
        let test = try XCTUnwrap(trained.test)
        XCTAssertGreaterThanOrEqual(accuracy(test), 0.9)
        // The same head on the Float32 maps, concatenated here independently of the cache reader.
        let parameters = ModelLevelHead.parameters(seed: 0, channels: 16)
        try parameters.load(try Safetensors.decode(try readFile(trained.folder + "/model.safetensors"), source: "m").tensors, source: "m")
        let rows = splits(240).indices.filter { splits(240)[$0] == .test }
        var x: [Float] = []
        for i in rows { for p in 0..<4 { for m in 0..<2 { x += maps[m][((i * 4 + p) * 8)..<((i * 4 + p + 1) * 8)] } } }
        let tape = Tape(recording: false, training: false)
        let exact = tape.value(tape.softmax(ModelLevelHead.forward(Layers(tape: tape, store: parameters),
                                                                    tape.constant(Tensor(shape: [rows.count, 2, 2, 16], data: x)))))
        XCTAssertEqual(exact.count, test.probabilities.count)
        let worst = zip(exact.data, test.probabilities).map { abs(Double($0) - $1) }.max() ?? 1
        XCTAssertLessThanOrEqual(worst, 1e-3)
        XCTAssertGreaterThan(worst, 0, "float16 rounding should show somewhere")
    }

    func testModelLevelResumesByteIdenticalAndCodeCompatFreezesNewConv() throws {
        let (cache, _) = try modelLevelCache(scratch + "/cache", n: 120, seed: 12)
        let straight = try trainHead(scratch + "/one", cache: cache)
        XCTAssertThrowsError(try trainHead(scratch + "/two", cache: cache, interruptAfter: 2))
        let resumed = try trainHead(scratch + "/two", cache: cache)
        XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/model.safetensors"),
                       FileManager.default.contents(atPath: straight.folder + "/model.safetensors"))
        let frozen = try trainHead(scratch + "/three", cache: cache, codeCompat: true)
        let initial = ModelLevelHead.parameters(seed: try repositoryConfig().seed, channels: 16).allTensors
        let weights = try Safetensors.decode(try readFile(frozen.folder + "/model.safetensors"), source: "m").tensors
        let trained = try Safetensors.decode(try readFile(straight.folder + "/model.safetensors"), source: "m").tensors
        XCTAssertEqual(weights["new_conv/kernel"], initial["new_conv/kernel"])
        XCTAssertNotEqual(trained["new_conv/kernel"], initial["new_conv/kernel"])
        XCTAssertNotEqual(weights["merged_predictions/kernel"], initial["merged_predictions/kernel"])
    }
}
