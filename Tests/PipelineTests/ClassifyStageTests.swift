// The classify-train stage on tiny synthetic data: what it writes, and that an interrupted run
// resumes to the same weights and predictions as an uninterrupted one.

import Artifacts
import Datasets
import Engine
import Foundation
import GradCAM
import Imaging
import Losses
import Metrics
import Models
import Synthetic
import TestSupport
@testable import Training
import XCTest
@testable import Pipeline

final class ClassifyStageTests: ScratchTestCase {
    func config() throws -> PipelineConfig {
        var c = try repositoryConfig()
        c.classify.size = 32
        c.classify.epochs = 3
        c.classify.batchSize = 6
        c.classify.earlyStoppingPatience = 10
        c.seed = 5
        return c
    }

    func dataset() throws -> (Dataset, String) {
        let settings = PrepareSettings(layout: .synthetic, validation: .auto, validationFraction: 0.2, testFraction: 0,
                                       allTest: false, splitSeed: 1, contactSheetImages: 0,
                                       synthetic: SyntheticConfig(size: 48, trainPerClass: 8, testPerClass: 2, lungImages: 1, seed: 3))
        let result = try runPrepare(try context(scratch + "/a"), source: scratch + "/syn", name: "d", settings: settings)
        return (try Dataset(folder: result.folder, manifest: result.manifest), result.manifest.key)
    }

    /// `interruptAt`: stop when this many epochs and steps of the next are done (step 0: at the epoch boundary).
    func train(_ root: String, interruptAt: (epoch: Int, step: Int)? = nil) throws -> StageResult {
        let data = try dataset()
        return try runClassifyTrain(try context(root, config: try config()), loss: .calibratedCCE, data: data, variant: "v",
                                    continueAfter: { p in interruptAt.map { !(p.epoch == $0.epoch && p.step == $0.step) } ?? true })
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

        XCTAssertThrowsError(try train(scratch + "/two", interruptAt: (1, 0))) { error in
            guard case .interrupted(epoch: 1, step: 0, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        let resumed = try train(scratch + "/two")
        // Stopped inside an epoch (as SIGTERM does: at the step), twice, then resumed to the end.
        XCTAssertThrowsError(try train(scratch + "/three", interruptAt: (1, 1))) { error in
            guard case .interrupted(epoch: 1, step: 1, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try train(scratch + "/three", interruptAt: (2, 1))) { error in
            guard case .interrupted(epoch: 2, step: 1, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        let midEpoch = try train(scratch + "/three")
        for file in ["model.safetensors", "log.jsonl", "predictions-val.csv", "predictions-test.csv"] {
            XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/" + file),
                           FileManager.default.contents(atPath: straight.folder + "/" + file), file)
            XCTAssertEqual(FileManager.default.contents(atPath: midEpoch.folder + "/" + file),
                           FileManager.default.contents(atPath: straight.folder + "/" + file), "stopped mid-epoch: " + file)
        }
        XCTAssertTrue(try train(scratch + "/two").reused)

        // predict: every image of a dataset; the test rows agree with the training run's test predictions.
        let (data, key) = try dataset()
        let predicted = try runClassifyPredict(try context(scratch + "/one"), model: (straight.folder, straight.manifest),
                                               data: (data, key), variant: "p")
        let all = try readPredictions(path: predicted.folder + "/predictions.csv").predictions
        XCTAssertEqual(all.count, data.rows.count)
        for (i, id) in test.ids.enumerated() {
            let j = try XCTUnwrap(all.ids.firstIndex(of: id))
            for k in 0..<3 { XCTAssertEqual(all.p(j, k), test.p(i, k), accuracy: 1e-12) }
        }
    }

    /// Two runs of one key: this one is resuming from the checkpoint when the other finishes the
    /// artifact and removes that checkpoint. It must use the finished artifact, not fail on the file.
    func testARunWhoseCheckpointVanishesBecauseAnotherRunFinishedUsesThatArtifact() throws {
        let finished = try train(scratch + "/finished")
        XCTAssertThrowsError(try train(scratch + "/shared", interruptAt: (1, 0)))
        let folder = finished.folder.replacingOccurrences(of: scratch + "/finished", with: scratch + "/shared")
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/training.safetensors"))
        // The other run finishes while this one loads its images: its files and manifest appear, the
        // checkpoint goes.
        let once = NSLock()
        nonisolated(unsafe) var done = false
        let sink: EventSink = { _ in
            once.lock()
            defer { once.unlock() }
            guard !done else { return }
            done = true
            for file in finished.manifest.outputs.map(\.path) + ["manifest.json"] {
                try? FileManager.default.removeItem(atPath: folder + "/" + file)
                try? FileManager.default.copyItem(atPath: finished.folder + "/" + file, toPath: folder + "/" + file)
            }
            try? FileManager.default.removeItem(atPath: folder + "/training.safetensors")
        }
        let result = try runClassifyTrain(try context(scratch + "/shared", config: try config(), sink: sink), loss: .calibratedCCE,
                                          data: try dataset(), variant: "v")
        XCTAssertTrue(done)
        XCTAssertTrue(result.reused)
        XCTAssertEqual(result.folder, folder)
        XCTAssertEqual(result.manifest.outputs, finished.manifest.outputs)
    }

    /// A dataset without lung masks: with a segment-predict artifact, the AND of its masks gives the
    /// lung share. Masks covering the whole image put all of a map's positive mass inside: share 1.
    func testGradCAMTakesTheLungShareFromPredictedMasksWhenTheDatasetHasNone() throws {
        let model = try train(scratch + "/one")
        _ = try dataset()  // generates scratch/syn
        let context = try context(scratch + "/a", config: try config())
        let plain = PrepareSettings(layout: .kermany, validation: .auto, validationFraction: 0.2, testFraction: 0, allTest: false,
                                    splitSeed: 1, contactSheetImages: 0, synthetic: nil)
        let prepared = try runPrepare(context, source: scratch + "/syn", name: "nomask", settings: plain)
        let data = try Dataset(folder: prepared.folder, manifest: prepared.manifest)
        let testRows = data.rows.filter { $0.split == .test }
        XCTAssertTrue(testRows.allSatisfy { data.maskPath($0) == nil })
        let run = try context.store.locate(stage: "segment-predict", variant: "nomask", settings: ["fake": true], inputKeys: [],
                                           formatVersion: 1, force: false)
        var writer = try run.begin(inputs: [], seed: 1)
        for folder in ["masks/1-a", "masks/2-b"] {
            for row in data.rows {
                let path = folder + "/" + maskFileName(row.path)
                try FileManager.default.createDirectory(atPath: run.folder + "/" + (path as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                try writer.write(try GrayImage(width: row.width, height: row.height, filledWith: 255).pngData(), to: path)
            }
        }
        let masks = writer.result(try writer.finish(summary: .object(["models": .array([
            .object(["masks": .string("masks/1-a")]), .object(["masks": .string("masks/2-b")]),
        ])])))
        let settings = GradCAMSettings(method: .gradcam, target: "predicted", layer: Classifier.dcl, split: "test",
                                       paperOverlay: false, sheetImagesPerClass: 0)
        func shares(_ result: StageResult) throws -> [String] {
            let table = try parseCSV(String(contentsOfFile: result.folder + "/gradcam.csv", encoding: .utf8))
            let column = try XCTUnwrap(table[0].firstIndex(of: "lung_share"))
            return table.dropFirst().map { $0[column] }
        }
        let without = try runGradCAM(context, model: (model.folder, model.manifest), data: "nomask", settings: settings)
        XCTAssertEqual(try shares(without), [String](repeating: "", count: testRows.count))
        let with = try runGradCAM(context, model: (model.folder, model.manifest), data: "nomask", settings: settings,
                                  masks: (masks.folder, masks.manifest))
        XCTAssertNotEqual(with.folder, without.folder)
        XCTAssertTrue(with.manifest.inputs.contains { $0.name == "masks" && $0.key == masks.manifest.key })
        let filled = try shares(with).filter { !$0.isEmpty }
        XCTAssertFalse(filled.isEmpty)
        XCTAssertTrue(filled.allSatisfy { Double($0) == 1 }, "\(filled)")
    }

    func testFeaturesAreTheDCLMapsOfEveryImage() throws {
        let model = try train(scratch + "/one")
        let (data, key) = try dataset()
        let predicted = try runClassifyPredict(try context(scratch + "/one"), model: (model.folder, model.manifest),
                                               data: (data, key), variant: "p", features: true)
        let (tensors, metadata) = try Safetensors.decode(try readFile(predicted.folder + "/features.safetensors"), source: "features")
        // 32² input: block5c_add is 2×2×112, the DCL 2×2×512.
        XCTAssertEqual(tensors["dcl"]?.shape, [data.rows.count, 2, 2, 512])
        let ids = try JSONDecoder().decode([String].self, from: Data(try XCTUnwrap(metadata["ids"]).utf8))
        XCTAssertEqual(ids, data.rows.map(\.path))
        // The maps are the ReLU output of extra_conv_eff0 for that image: recompute image 3 alone.
        let parameters = Classifier.parameters(seed: 0)
        let images = try ClassificationImages.load(data, rows: [data.rows[3]], size: 32, interpolation: .nearestPIL, threads: 1, sink: { _ in })
        try parameters.load(try Safetensors.decode(try readFile(model.folder + "/model.safetensors"), source: "m").tensors, source: "m")
        let again = Tape(recording: false, training: false)
        let dcl = again.value(Classifier.forward(Layers(tape: again, store: parameters), again.constant(images.batch([0]).images)).dcl)
        let stored = Array(try XCTUnwrap(tensors["dcl"]).data[(3 * 2048)..<(4 * 2048)])
        for (a, b) in zip(stored, dcl.data) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertTrue(stored.contains { $0 > 0 } && stored.allSatisfy { $0 >= 0 })
    }

    func testEncoderStartsFromTheUNetUpToBlock5c() throws {
        let unet = UNet.parameters(seed: 11)
        let folder = scratch + "/unet"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try writeFileAtomically(try Safetensors.encode(unet.allTensors, metadata: [:]), to: folder + "/model.safetensors")
        let classifier = Classifier.parameters(seed: 12)
        let before = classifier.allTensors
        try initializeEncoder(classifier, from: EncoderSource(folder: folder, key: "k"))
        var copied = 0
        for (name, tensor) in classifier.allTensors {
            if name.hasPrefix("extra_conv_eff0") || name.hasPrefix("predictions") {
                XCTAssertEqual(tensor.data, before[name]?.data, name)
            } else {
                XCTAssertEqual(tensor.data, unet.value(name).data, name)
                if name.hasSuffix("kernel") { XCTAssertNotEqual(tensor.data, before[name]?.data, name) }
                copied += 1
            }
        }
        XCTAssertTrue(classifier.allTensors.keys.contains("block5c_project_bn/moving_variance"))
        XCTAssertFalse(classifier.allTensors.keys.contains { $0.hasPrefix("block6a") })
        XCTAssertGreaterThan(copied, 200)

        // A U-Net file without one encoder tensor is refused, naming it.
        var partial = unet.allTensors
        partial["block3b_dwconv/depthwise_kernel"] = nil
        try writeFileAtomically(try Safetensors.encode(partial, metadata: [:]), to: folder + "/model.safetensors")
        XCTAssertThrowsError(try initializeEncoder(classifier, from: EncoderSource(folder: folder, key: "k"))) { error in
            XCTAssertTrue("\(error)".contains("block3b_dwconv/depthwise_kernel"), "\(error)")
        }
    }

    func testEncoderStartsFromTimmWeightsOrAnImportedFile() throws {
        let timm = scratch + "/timm.safetensors", ours = scratch + "/ours.safetensors"
        let random = try exportRandomTimmWeights(seed: 5, output: timm)
        // The classifier takes stem to block5c; the U-Net the whole encoder; decoder and head keep
        // their initialisation.
        for (model, head) in [(Classifier.parameters(seed: 12), ["extra_conv_eff0", "predictions"]), (UNet.parameters(seed: 13), ["decoder_", "final_conv"])] {
            let before = model.allTensors
            let report = try initializeEncoder(model, from: EncoderSource(weightsFile: timm))
            XCTAssertTrue(report.hasPrefix("timm tf_efficientnet_b0 layout"), report)
            for (name, tensor) in model.allTensors {
                if head.contains(where: name.hasPrefix) { XCTAssertEqual(tensor, before[name], name) } else { XCTAssertEqual(tensor, random[name], name) }
            }
        }
        // import-weights' output starts a model the same way, and the two files key differently.
        let imported = try importTimmWeights(input: timm, output: ours)
        XCTAssertEqual(imported.tensors.count, random.count)
        let model = UNet.parameters(seed: 13)
        try initializeEncoder(model, from: EncoderSource(weightsFile: ours))
        XCTAssertEqual(model.value("top_bn/moving_variance"), random["top_bn/moving_variance"])
        XCTAssertNotEqual(try EncoderSource(weightsFile: ours).initialization, try EncoderSource(weightsFile: timm).initialization)
        // A timm file without one tensor is refused under timm's name, and import-weights writes nothing.
        var foreign = try Safetensors.decode(try readFile(timm), source: timm).tensors
        foreign["blocks.2.1.bn2.running_var"] = nil
        try writeFileAtomically(try Safetensors.encode(foreign, metadata: [:]), to: timm)
        XCTAssertThrowsError(try initializeEncoder(UNet.parameters(seed: 1), from: EncoderSource(weightsFile: timm))) { error in
            XCTAssertTrue("\(error)".contains("blocks.2.1.bn2.running_var"), "\(error)")
        }
        XCTAssertThrowsError(try importTimmWeights(input: timm, output: scratch + "/none.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/none.safetensors"))
        XCTAssertThrowsError(try EncoderSource(weightsFile: scratch + "/absent.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("absent.safetensors"), "\(error)")
        }
    }

    func testGradCAMWritesMapsOverlaysAndLungSharesAndRefusesWhatHasNoLayer() throws {
        let model = try train(scratch + "/one")
        let context = try context(scratch + "/a", config: try config())  // where the dataset "d" is
        let settings = GradCAMSettings(method: .gradcamPaper, target: "predicted", layer: Classifier.dcl, split: "test",
                                       paperOverlay: false, sheetImagesPerClass: 1)
        let result = try runGradCAM(context, model: (model.folder, model.manifest), data: "d", settings: settings)
        let (data, _) = try dataset()
        let testRows = data.rows.filter { $0.split == .test }
        let (tensors, metadata) = try Safetensors.decode(try readFile(result.folder + "/maps.safetensors"), source: "maps")
        let maps = try XCTUnwrap(tensors["maps"])
        XCTAssertEqual(maps.shape, [testRows.count, 2, 2])  // the DCL of a 32² input
        XCTAssertEqual(try JSONDecoder().decode([String].self, from: Data(try XCTUnwrap(metadata["ids"]).utf8)), testRows.map(\.path))
        for i in 0..<testRows.count {  // gradcam-paper maps are divided by their maximum
            let slice = maps.data[(i * 4)..<((i + 1) * 4)]
            XCTAssertTrue(slice.max()! == 1 || slice.max()! == 0)
        }
        let table = try parseCSV(String(contentsOfFile: result.folder + "/gradcam.csv", encoding: .utf8))
        XCTAssertEqual(table.count, 1 + testRows.count)
        let shareColumn = try XCTUnwrap(table[0].firstIndex(of: "lung_share"))
        for row in table.dropFirst() where !row[shareColumn].isEmpty {
            XCTAssertTrue((0...1).contains(try XCTUnwrap(Double(row[shareColumn]))), row.joined(separator: ","))
        }
        for row in testRows {  // overlays at each image's own size
            let overlay = try GrayImage(contentsOf: result.folder + "/overlays/" + maskFileName(row.path))
            XCTAssertEqual([overlay.width, overlay.height], [row.width, row.height])
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: result.folder + "/sheet.png"))

        var wrongLayer = settings
        wrongLayer.layer = "block9z_add"
        XCTAssertThrowsError(try runGradCAM(context, model: (model.folder, model.manifest), data: "d", settings: wrongLayer)) { error in
            XCTAssertTrue("\(error)".contains("no layer 'block9z_add'") && "\(error)".contains("block5c_add"), "\(error)")
        }
        // A prediction-level ensemble has no layer: refused, naming its members.
        let run = try context.store.locate(stage: "ensemble", variant: "vote", settings: ["fake": true], inputKeys: [], formatVersion: 1, force: false)
        var writer = try run.begin(inputs: [], seed: 1)
        let file = EnsembleFile(formatVersion: 1, method: .vote, label: "vote", dataset: "d",
                                members: [EnsembleMember(loss: .cce, folder: model.folder, key: model.manifest.key)], selection: "named",
                                ranking: [], rankedOn: nil, fittedOn: nil, weightProcedure: nil, weights: nil, restarts: [], protocolNotes: [])
        try writer.write(try canonicalJSON(file), to: "ensemble.json")
        let vote = writer.result(try writer.finish(summary: .null))
        XCTAssertThrowsError(try runGradCAM(context, model: (vote.folder, vote.manifest), data: "d", settings: settings)) { error in
            XCTAssertTrue("\(error)".contains("prediction level") && "\(error)".contains(model.folder), "\(error)")
        }
    }
}
