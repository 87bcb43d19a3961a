// The classify-train stage on tiny synthetic data: what it writes, and that an interrupted run
// resumes to the same weights and predictions as an uninterrupted one.

import Foundation
import Losses
import Metrics
import XCTest
@testable import Pipeline

final class ClassifyStageTests: XCTestCase {
    var scratch = ""

    override func setUp() {
        scratch = NSTemporaryDirectory() + "classify-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func config() throws -> ClassifyConfig {
        var c = try PipelineConfig.load(path: ConfigTests.repositoryConfig, profile: "ci").classify
        c.size = 32
        c.epochs = 3
        c.batchSize = 6
        c.earlyStoppingPatience = 10
        return c
    }

    func dataset() throws -> (Dataset, String) {
        let settings = PrepareSettings(layout: .synthetic, validation: .auto, validationFraction: 0.2, testFraction: 0,
                                       allTest: false, splitSeed: 1, contactSheetImages: 0,
                                       synthetic: SyntheticConfig(size: 48, trainPerClass: 8, testPerClass: 2, lungImages: 1, seed: 3))
        let result = try prepareDataset(source: scratch + "/syn", name: "d", settings: settings, store: ArtifactStore(root: scratch + "/a"),
                                        seed: 1, threads: 2, blasProvider: "test", force: false, sink: { _ in })
        return (try Dataset(folder: result.folder, manifest: result.manifest), result.manifest.key)
    }

    func train(_ root: String, interruptAfter: Int? = nil) throws -> StageResult {
        let (data, key) = try dataset()
        let settings = ClassifySettings(loss: .calibratedCCE, config: try config(), seed: 5, initialization: "random")
        return try runClassifyTrain(dataset: data, datasetKey: key, variant: "v", settings: settings, store: ArtifactStore(root: root),
                                    threads: 2, blasProvider: "test", force: false, sink: { _ in },
                                    continueAfter: { epoch in interruptAfter.map { epoch < $0 } ?? true })
    }

    func testOutputsAndResumeAfterInterruption() throws {
        let straight = try train(scratch + "/one")
        let files = Set(straight.manifest.outputs.map(\.path))
        XCTAssertEqual(files, ["model.safetensors", "log.jsonl", "predictions-val.csv", "predictions-test.csv"])
        let log = try String(contentsOfFile: straight.folder + "/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 3)
        let test = try readPredictions(path: straight.folder + "/predictions-test.csv").predictions
        XCTAssertEqual(test.count, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: straight.folder + "/training.safetensors"))

        XCTAssertThrowsError(try train(scratch + "/two", interruptAfter: 1)) { error in
            guard case .interrupted(afterEpoch: 1, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        let resumed = try train(scratch + "/two")
        for file in ["model.safetensors", "predictions-val.csv", "predictions-test.csv"] {
            XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/" + file),
                           FileManager.default.contents(atPath: straight.folder + "/" + file), file)
        }
        XCTAssertTrue(try train(scratch + "/two").reused)

        // predict: every image of a dataset; the test rows agree with the training run's test predictions.
        let (data, key) = try dataset()
        let predicted = try runClassifyPredict(modelFolder: straight.folder, modelManifest: straight.manifest, dataset: data,
                                               datasetKey: key, variant: "p", store: ArtifactStore(root: scratch + "/one"),
                                               threads: 2, blasProvider: "test", force: false, sink: { _ in })
        let all = try readPredictions(path: predicted.folder + "/predictions.csv").predictions
        XCTAssertEqual(all.count, data.rows.count)
        for (i, id) in test.ids.enumerated() {
            let j = try XCTUnwrap(all.ids.firstIndex(of: id))
            for k in 0..<3 { XCTAssertEqual(all.p(j, k), test.p(i, k), accuracy: 1e-12) }
        }
    }
}
