// The segment and mask-crop stages on tiny synthetic lungs: what they write, that an interrupted
// U-Net run resumes to the same weights, per-image scores by hand, the augmentation's geometry,
// and the named errors and counted warnings of mask-crop.

import Artifacts
import Datasets
import Foundation
import Imaging
import Losses
import Metrics
import Report
import SeededRandom
import Synthetic
import TestSupport
@testable import Training
import XCTest
@testable import Pipeline

final class SegmentStageTests: ScratchTestCase {
    func config() throws -> PipelineConfig {
        var c = try repositoryConfig()
        c.seed = 5
        c.segment.size = 32
        c.segment.epochs = 2
        c.segment.batchSize = 4
        c.crop.size = 40
        c.crop.contactSheetImages = 4
        return c
    }

    /// The synthetic generator's Montgomery-layout lungs, prepared with val and test splits.
    func lungs() throws -> (Dataset, String) {
        let prepare = try context(scratch + "/a")
        let synthetic = SyntheticConfig(size: 48, trainPerClass: 1, testPerClass: 0, lungImages: 16, seed: 3)
        _ = try runPrepare(prepare, source: scratch + "/syn", name: "syn",
                           settings: PrepareSettings(layout: .synthetic, validation: .auto, validationFraction: 0, testFraction: 0,
                                                     allTest: false, splitSeed: 1, contactSheetImages: 0, synthetic: synthetic))
        let result = try runPrepare(prepare, source: scratch + "/syn/montgomery", name: "lungs",
                                    settings: PrepareSettings(layout: .montgomery, validation: .auto, validationFraction: 0.2,
                                                              testFraction: 0.25, allTest: false, splitSeed: 1,
                                                              contactSheetImages: 0, synthetic: nil))
        return (try Dataset(folder: result.folder, manifest: result.manifest), result.manifest.key)
    }

    func train(_ loss: SegmentationLoss, root: String, interruptAt: (epoch: Int, step: Int)? = nil) throws -> StageResult {
        return try runSegmentTrain(try context(root, config: try config()), loss: loss, data: try lungs(), variant: loss.rawValue,
                                   continueAfter: { p in interruptAt.map { !(p.epoch == $0.epoch && p.step == $0.step) } ?? true })
    }

    func testTrainResumeEvaluatePredictAndCrop() throws {
        let root = scratch + "/one"
        let straight = try train(.focalTversky, root: root)
        XCTAssertEqual(Set(straight.manifest.outputs.map(\.path)), ["model.safetensors", "log.jsonl"])
        let log = try String(contentsOfFile: straight.folder + "/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 2)
        XCTAssertTrue(log[0].contains("\"valDice\"") && log[0].contains("\"valIoU\""), String(log[0]))

        XCTAssertThrowsError(try train(.focalTversky, root: scratch + "/two", interruptAt: (1, 0))) { error in
            guard case .interrupted(epoch: 1, step: 0, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        // Inside an epoch: the augmentation and drop-connect streams resume at that step.
        XCTAssertThrowsError(try train(.focalTversky, root: scratch + "/three", interruptAt: (1, 1))) { error in
            guard case .interrupted(epoch: 1, step: 1, _) = error as? TrainingError else { return XCTFail("\(error)") }
        }
        let midEpoch = try train(.focalTversky, root: scratch + "/three")
        XCTAssertEqual(FileManager.default.contents(atPath: midEpoch.folder + "/model.safetensors"),
                       FileManager.default.contents(atPath: straight.folder + "/model.safetensors"), "stopped mid-epoch")
        XCTAssertEqual(FileManager.default.contents(atPath: midEpoch.folder + "/log.jsonl"),
                       FileManager.default.contents(atPath: straight.folder + "/log.jsonl"), "stopped mid-epoch")
        let resumed = try train(.focalTversky, root: scratch + "/two")
        XCTAssertEqual(FileManager.default.contents(atPath: resumed.folder + "/model.safetensors"),
                       FileManager.default.contents(atPath: straight.folder + "/model.safetensors"))

        // Evaluate two U-Nets: per-image rows for each and for their AND; ranking by Dice.
        let second = try train(.bce, root: root)
        var evaluateConfig = try config()
        evaluateConfig.segment.ensembleSize = 2
        let stage = try context(root, config: evaluateConfig)
        let store = stage.store
        let models = try [straight.folder, second.folder].map { try TrainedSegmenter(folder: $0, store: store) }
        let (data, key) = try lungs()
        let evaluation = try runSegmentEvaluate(stage, models: models, data: (data, key), split: .test, variant: "lungs")
        let metrics = try JSONDecoder().decode(SegmentationEvaluation.self,
                                               from: Data(contentsOf: URL(fileURLWithPath: evaluation.folder + "/metrics.json")))
        let testRows = data.rows.filter { $0.split == .test }
        XCTAssertEqual(metrics.images, testRows.count)
        let csv = try parseCSV(String(contentsOfFile: evaluation.folder + "/per-image.csv", encoding: .utf8))
        XCTAssertEqual(csv.count, 1 + 3 * testRows.count)
        let rankedDice = metrics.ranking.map { folder in metrics.models.first { $0.models == [folder] }?.dice.mean ?? -1 }
        XCTAssertEqual(rankedDice, rankedDice.sorted(by: >))
        XCTAssertEqual(metrics.ensemble?.models, metrics.ranking)
        let table = try String(contentsOfFile: evaluation.folder + "/table1.md", encoding: .utf8)
        XCTAssertTrue(table.contains("| focal-tversky |") && table.contains("| bce |") && table.contains("Ensemble"), table)

        // Predict: one mask per image and model, at the image's own size.
        let predicted = try runSegmentPredict(stage, models: models, data: (data, key), variant: "lungs")
        for row in data.rows {
            for folder in ["masks/1-focal-tversky", "masks/2-bce"] {
                let mask = try GrayImage(contentsOf: predicted.folder + "/" + folder + "/" + maskFileName(row.path))
                XCTAssertEqual([mask.width, mask.height], [row.width, row.height], row.path)
                XCTAssertTrue(mask.pixels.allSatisfy { $0 == 0 || $0 == 255 })
            }
        }

        // Crop: a dataset of crop.size images with the source's rows, classes and splits.
        let crops = try runMaskCrop(stage, data: (data, key), masks: (predicted.folder, predicted.manifest), variant: "lungs-crops")
        let cropped = try Dataset.named("lungs-crops", in: store)
        XCTAssertEqual(cropped.folder, crops.folder)
        XCTAssertEqual(cropped.rows.map(\.split), data.rows.map(\.split))
        XCTAssertEqual(cropped.rows.map(\.patient), data.rows.map(\.patient))
        for row in cropped.rows {
            let image = try GrayImage(contentsOf: cropped.imagePath(row))
            XCTAssertEqual([image.width, image.height], [40, 40])
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: crops.folder + "/contact-sheet.png"))
    }

    /// A hand-made `segment predict` artifact whose masks are the ground truth, except one empty.
    func fakePredictions(_ data: Dataset, store: ArtifactStore, empty: Int, wrongSize: Int? = nil) throws -> StageResult {
        var writer = try store.locate(stage: "segment-predict", variant: "fake", settings: ["fake": UUID().uuidString], inputKeys: [],
                                      formatVersion: 1, force: false).begin(inputs: [], seed: 0)
        for (i, row) in data.rows.enumerated() {
            var mask = Mask(thresholding: try GrayImage(contentsOf: try XCTUnwrap(data.maskPath(row))))
            if i == empty { mask = Mask(width: mask.width, height: mask.height, bits: [Bool](repeating: false, count: mask.bits.count)) }
            if i == wrongSize { mask = Mask(width: mask.width + 3, height: mask.height, bits: [Bool](repeating: true, count: (mask.width + 3) * mask.height)) }
            let path = "masks/1-truth/" + maskFileName(row.path)
            try FileManager.default.createDirectory(atPath: writer.folder + "/" + (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try writer.write(try mask.image.pngData(), to: path)
        }
        let manifest = try writer.finish(summary: .object(["models": .array([.object(["loss": .string("truth"), "masks": .string("masks/1-truth")])])]))
        return StageResult(folder: writer.folder, manifest: manifest, reused: false)
    }

    func testCropBoxesHoldTheLungAndEmptyMasksAreCountedAndNamed() throws {
        let (data, key) = try lungs()
        let recorded = WarningRecorder()
        let stage = try context(scratch + "/a", config: try config(), sink: recorded.sink)
        let fake = try fakePredictions(data, store: stage.store, empty: 2)
        let crops = try runMaskCrop(stage, data: (data, key), masks: (fake.folder, fake.manifest), variant: "c")
        let warnings = recorded.warnings
        let summary = try XCTUnwrap(crops.manifest.summary.objectValue)
        XCTAssertEqual(summary["emptyMasks"], .number(1))
        XCTAssertEqual(summary["emptyMaskImages"], .array([.string(data.rows[2].path)]))
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains(data.rows[2].path), warnings[0])
        XCTAssertEqual(summary["truthInsideBox"], .number(Double(data.rows.count)))
        // The box of a true mask is its tight box relaxed by SPEC §2's margins; the empty one is the whole image.
        let table = try parseCSV(String(contentsOfFile: crops.folder + "/crops.csv", encoding: .utf8))
        let header = table[0]
        func field(_ row: [String], _ name: String) -> Int { Int(row[header.firstIndex(of: name)!])! }
        for (i, row) in data.rows.enumerated() {
            let line = table[i + 1]
            let box = PixelBox(x: field(line, "box_x"), y: field(line, "box_y"), width: field(line, "box_width"), height: field(line, "box_height"))
            let truth = Mask(thresholding: try GrayImage(contentsOf: try XCTUnwrap(data.maskPath(row))))
            let expected = i == 2 ? PixelBox(x: 0, y: 0, width: row.width, height: row.height) : try XCTUnwrap(truth.cropBox)
            XCTAssertEqual(box, expected, row.path)
        }
    }

    func testMaskOfTheWrongSizeIsNamed() throws {
        let (data, key) = try lungs()
        let stage = try context(scratch + "/a", config: try config())
        let store = stage.store
        let fake = try fakePredictions(data, store: store, empty: -1, wrongSize: 1)
        XCTAssertThrowsError(try runMaskCrop(stage, data: (data, key), masks: (fake.folder, fake.manifest), variant: "c")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(maskFileName(data.rows[1].path)) && text.contains("\(data.rows[1].width + 3)×"), text)
        }
        XCTAssertThrowsError(try store.current(stage: "mask-crop", variant: "c"))
    }

    func testMaskScoresByHand() {
        // 2×3 masks: truth has 3 pixels, prediction 2, overlap 1.
        let truth = Mask(width: 3, height: 2, bits: [true, true, false, true, false, false])
        let predicted = Mask(width: 3, height: 2, bits: [true, false, true, false, false, false])
        let score = MaskScore(predicted: predicted.bits, truth: truth.bits)
        XCTAssertEqual(score.dice, 2.0 * 1 / 5, accuracy: 1e-12)
        XCTAssertEqual(score.iou, 1.0 / 4, accuracy: 1e-12)
        XCTAssertEqual(score.accuracy, 3.0 / 6, accuracy: 1e-12)
        let none = Mask(width: 3, height: 2, bits: [Bool](repeating: false, count: 6))
        XCTAssertEqual(MaskScore(predicted: none.bits, truth: none.bits), MaskScore(predicted: truth.bits, truth: truth.bits))
        XCTAssertEqual(MeanSD([1, 2, 3, 4]).sd, (5.0 / 3).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(MeanSD([0.96371, 0.5]).text, "0.7319±0.3279")
    }

    func testAugmentationGeometry() {
        let size = 5
        let ramp = (0..<(size * size)).map { Float($0) }
        XCTAssertEqual(warp(ramp, size: size, .identity), ramp)
        // A flip mirrors columns; a shift of (1, 2) moves content right 1 and down 2 (edges repeat).
        let flipped = warp(ramp, size: size, .init(dx: 0, dy: 0, angle: 0, flip: true))
        XCTAssertEqual(Array(flipped[0..<5]), [4, 3, 2, 1, 0])
        let shifted = warp(ramp, size: size, .init(dx: 1, dy: 2, angle: 0, flip: false))
        XCTAssertEqual(shifted[3 * size + 3], ramp[1 * size + 2])
        XCTAssertEqual(shifted[0], ramp[0])
        // A quarter turn about the centre sends the top row to a side column.
        let turned = warp(ramp, size: size, .init(dx: 0, dy: 0, angle: .pi / 2, flip: false))
        XCTAssertEqual(turned[0 * size + 2], ramp[2 * size + 4], accuracy: 1e-4)
        XCTAssertEqual(turned[2 * size + 2], ramp[2 * size + 2], accuracy: 1e-4)
        // Draws stay in range and cover both signs.
        var g = SplitMix64(seed: 9)
        let augmentation = Augmentation(shiftPixels: 2, rotationDegrees: 5, horizontalFlip: true)
        let draws = (0..<400).map { _ in augmentation.draw(&g) }
        XCTAssertEqual(Set(draws.map(\.dx)), [-2, -1, 0, 1, 2])
        XCTAssertTrue(draws.allSatisfy { abs($0.angle) <= 5 * .pi / 180 })
        XCTAssertTrue(draws.contains { $0.flip } && draws.contains { !$0.flip })
    }

    func testImageAndMaskShareEachDraw() throws {
        // An image that is its own mask (255 on the lung) must stay equal to its mask after augmentation.
        let (data, _) = try lungs()
        let images = try SegmentationImages.load(data, rows: Array(data.rows.prefix(4)), size: 32, interpolation: .area,
                                                 threads: 2, sink: { _ in })
        let masksOnly = SegmentationImages(size: 32, ids: images.ids, pixels: images.masks.map { $0.map { $0 * 255 } }, masks: images.masks)
        var g = SplitMix64(seed: 4)
        let (x, y) = masksOnly.batch([0, 1, 2, 3], augment: Augmentation(shiftPixels: 2, rotationDegrees: 5, horizontalFlip: true), generator: &g)
        let area = 32 * 32
        for i in 0..<(4 * area) { XCTAssertEqual(x.data[3 * i] > 0.5 ? 1 : 0, y.data[i], "pixel \(i)") }
        XCTAssertNotEqual(y.data, try SegmentationImages.load(data, rows: Array(data.rows.prefix(4)), size: 32, interpolation: .area,
                                                              threads: 2, sink: { _ in }).batch([0, 1, 2, 3], generator: &g).masks.data)
    }
}

/// Collects the warnings a stage reports (sinks may be called from worker threads).
final class WarningRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [String] = []

    var warnings: [String] { lock.withLock { collected } }

    var sink: EventSink {
        { event in
            if case let .warning(text) = event { self.lock.withLock { self.collected.append(text) } }
        }
    }
}
