// The `segment` stage (SPEC §1): the EfficientNet-B0 U-Net trained with one of the five losses
// (Adam, [P]'s augmentation, ReduceLROnPlateau / EarlyStopping / best checkpoint on validation
// loss, resumable); the per-image evaluation of trained U-Nets and their bitwise-AND ensemble with
// the paper's Table 1 and the top-k choice; and binary lung masks for every image of a dataset.

import Engine
import Foundation
import Imaging
import Losses
import Metrics
import Models
import SeededRandom

/// Everything that decides a U-Net artifact besides the dataset.
public struct SegmentSettings: Codable, Sendable, Equatable {
    public var loss: SegmentationLoss
    public var config: SegmentConfig
    public var seed: UInt64

    public init(loss: SegmentationLoss, config: SegmentConfig, seed: UInt64) {
        self.loss = loss
        self.config = config
        self.seed = seed
    }
}

/// Version of the U-Net artifact's files (part of its key).
public let segmenterFormatVersion = 1

/// Trains (or resumes, or reuses) the U-Net for `settings` on the train split of `dataset`,
/// validating on its val split.
public func runSegmentTrain(dataset: Dataset, datasetKey: String, variant: String, settings: SegmentSettings,
                            store: ArtifactStore, threads: Int, blasProvider: String, force: Bool,
                            sink: EventSink, continueAfter: (Int) -> Bool = { _ in true }) throws(TrainingError) -> StageResult {
    let stage = "segment-train"
    let (key, folder, existing): (String, String, StageResult?)
    do { (key, folder, existing) = try store.locate(stage: stage, variant: variant, config: settings, inputKeys: [datasetKey], formatVersion: segmenterFormatVersion, force: force) }
    catch { throw .artifact(error) }
    if let existing { return existing }
    let resuming = !force && FileManager.default.fileExists(atPath: folder + "/training.safetensors")
    let config = settings.config
    let interpolation = Interpolation(rawValue: config.interpolation) ?? .cubic
    let (trainRows, valRows) = try trainingRows(dataset)
    let train: SegmentationImages, val: SegmentationImages
    do {
        train = try .load(dataset, rows: trainRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
        val = try .load(dataset, rows: valRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
    } catch { throw .data(error) }

    var writer: ArtifactWriter
    do {
        writer = try store.begin(stage: stage, variant: variant, key: key, config: settings,
                                 inputs: [ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                                 seed: settings.seed, threads: threads, blasProvider: blasProvider,
                                 formatVersion: segmenterFormatVersion, resume: resuming)
    } catch { throw .artifact(error) }

    let parameters = unetParameters(seed: settings.seed)
    var loop = try TrainingLoop(
        folder: folder, parameters: parameters, optimizer: Adam(learningRate: Float(config.learningRate)), epochs: config.epochs,
        callbacks: config.callbacks,
        generators: ["shuffle": SplitMix64(seed: settings.seed, stream: 1), "augment": SplitMix64(seed: settings.seed, stream: 2),
                     "dropConnect": SplitMix64(seed: settings.seed, stream: 3)],
        label: settings.loss.rawValue, weightsMetadata: ["format": "multiloss-cxr/unet", "loss": settings.loss.rawValue],
        resuming: resuming, sink: sink)
    let augmentation = config.augment
        ? Augmentation(shiftPixels: config.shiftPixels, rotationDegrees: config.rotationDegrees, horizontalFlip: true) : nil
    let batchSize = min(config.batchSize, train.count)
    let stepsPerEpoch = train.count / batchSize

    try loop.run(writer: &writer, sink: sink, continueAfter: continueAfter, trainEpoch: { epoch, adam, generators throws(TrainingError) in
        var order = Array(0..<train.count)
        var shuffle = generators["shuffle"] ?? SplitMix64(seed: settings.seed, stream: 1)
        seededShuffle(&order, &shuffle)
        generators["shuffle"] = shuffle
        var augment = generators["augment"] ?? SplitMix64(seed: settings.seed, stream: 2)
        var dropConnect = generators["dropConnect"] ?? SplitMix64(seed: settings.seed, stream: 3)
        var lossSum = 0.0
        for step in 0..<stepsPerEpoch {
            let (images, masks) = train.batch(Array(order[(step * batchSize)..<((step + 1) * batchSize)]),
                                              augment: augmentation, generator: &augment)
            let result = unetTrainStep(store: parameters, optimizer: &adam, images: images, masks: masks, generator: &dropConnect,
                                       loss: settings.loss, batchNormMomentum: Float(config.batchNormMomentum))
            guard result.loss.isFinite else { throw .notFinite(epoch: epoch, step: step, lastCheckpoint: folder + "/training.safetensors") }
            lossSum += Double(result.loss)
            sink(.progress(task: "epoch \(epoch + 1)/\(config.epochs) [\(settings.loss.rawValue)]", done: step + 1, total: stepsPerEpoch))
        }
        generators["augment"] = augment
        generators["dropConnect"] = dropConnect
        return lossSum / Double(stepsPerEpoch)
    }, validate: {
        validateSegmenter(parameters, images: val, loss: settings.loss, batchSize: batchSize)
    })

    let best = try loop.finish(writer: &writer)
    var summary = loop.summary(best: best)
    summary["loss"] = .string(settings.loss.rawValue)
    summary["size"] = .number(Double(config.size))
    summary["bestValDice"] = .number(best?.valDice ?? .nan)
    summary["bestValIoU"] = .number(best?.valIoU ?? .nan)
    do {
        let manifest = try writer.finish(summary: .object(summary))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch {
        throw .artifact(error)
    }
}

/// A U-Net's parameters, created under their Keras names from `seed`.
func unetParameters(seed: UInt64) -> ParameterStore {
    let parameters = ParameterStore(seed: seed)
    let probe = Tape(recording: false, training: false)
    _ = UNet.forward(Layers(tape: probe, store: parameters), probe.constant(Tensor(zeros: [1, 32, 32, 3])))
    return parameters
}

/// The validation pass as Keras reports it: the loss and the batch-level Dice, IoU and binary
/// accuracy of SPEC §1.2, each averaged over batches weighted by batch size.
func validateSegmenter(_ parameters: ParameterStore, images: SegmentationImages, loss: SegmentationLoss, batchSize: Int) -> Validation {
    var totals = (loss: 0.0, dice: 0.0, iou: 0.0, accuracy: 0.0)
    var unused = SplitMix64(seed: 0)
    var start = 0
    while start < images.count {
        let indices = Array(start..<min(start + batchSize, images.count))
        let (x, y) = images.batch(indices, generator: &unused)
        let (p, value) = unetPredict(store: parameters, images: x, masks: y, loss: loss)
        var intersection = 0.0, sumY = 0.0, sumP = 0.0, correct = 0.0
        for i in 0..<p.count {
            let pi = Double(p.data[i]), yi = Double(y.data[i])
            intersection += pi * yi
            sumY += yi
            sumP += pi
            correct += (pi > 0.5) == (yi > 0.5) ? 1 : 0
        }
        let n = Double(indices.count)
        totals.loss += Double(value ?? .nan) * n
        totals.dice += (2 * intersection + 1) / (sumY + sumP + 1) * n
        totals.iou += (intersection + 1) / (sumY + sumP - intersection + 1) * n
        totals.accuracy += correct / Double(p.count) * n
        start += batchSize
    }
    let n = Double(images.count)
    return Validation(loss: Float(totals.loss / n), accuracy: totals.accuracy / n, dice: totals.dice / n, iou: totals.iou / n)
}

/// A trained U-Net artifact, loaded for prediction.
public struct TrainedSegmenter {
    public let folder: String
    public let manifest: Manifest
    public let settings: SegmentSettings
    let parameters: ParameterStore

    /// The loss name, which names the model in tables.
    public var name: String { settings.loss.rawValue }

    /// Loads the `segment train` artifact in `folder`.
    ///
    /// - Throws: `TrainingError.artifact` when the folder holds no complete U-Net artifact, or
    ///   `.checkpoint` naming a missing or misshaped tensor.
    public init(folder: String, store: ArtifactStore) throws(TrainingError) {
        guard let manifest = store.completeManifest(at: folder) else {
            throw .artifact(.incomplete(path: folder, message: "no complete segment train artifact here (its manifest.json is missing)"))
        }
        guard manifest.stage == "segment-train",
              let settings = try? JSONDecoder().decode(SegmentSettings.self, from: JSONEncoder().encode(manifest.config)) else {
            throw .artifact(.invalidManifest(path: folder + "/manifest.json", message: "stage '\(manifest.stage)', not a segment train artifact"))
        }
        self.folder = folder
        self.manifest = manifest
        self.settings = settings
        parameters = unetParameters(seed: settings.seed)
        let path = folder + "/model.safetensors"
        do {
            try parameters.load(try Safetensors.decode(try readFile(path), source: path).tensors, source: path)
        } catch {
            throw trainingError(error, folder: folder)
        }
    }

    /// Lung probabilities at the model's input size for images of any size: each image is
    /// resampled to the input size with the model's training interpolation.
    func probabilities(_ images: [GrayImage]) -> [GrayImage] {
        let size = settings.config.size
        let method = Interpolation(rawValue: settings.config.interpolation) ?? .cubic
        let input = networkInput(images.map { $0.resized(width: size, height: size, method: method).bytes().map { Float($0) / 255 } }, size: size)
        let p = unetPredict(store: parameters, images: input).probabilities
        return (0..<images.count).map { b in
            GrayImage(width: size, height: size, bitDepth: 8, pixels: Array(p.data[(b * size * size)..<((b + 1) * size * size)]))
        }
    }

    /// Binary lung masks at each image's own size: probabilities resampled bilinearly from the
    /// input size, then p > threshold.
    public func masks(_ images: [GrayImage], threshold: Double) -> [Mask] {
        zip(images, probabilities(images)).map { image, p in
            Mask(probabilities: p.resized(width: image.width, height: image.height, method: .linear).pixels,
                 width: image.width, height: image.height, threshold: Float(threshold))
        }
    }
}

// MARK: - evaluate

/// Dice, IoU and pixel accuracy of one predicted mask against the ground truth (both empty:
/// Dice = IoU = 1).
public struct MaskScore: Codable, Sendable, Equatable {
    public var dice: Double
    public var iou: Double
    public var accuracy: Double

    public init(predicted: Mask, truth: Mask) {
        var both = 0, either = 0, equal = 0, predictedCount = 0, truthCount = 0
        for (p, t) in zip(predicted.bits, truth.bits) {
            if p && t { both += 1 }
            if p || t { either += 1 }
            if p == t { equal += 1 }
            if p { predictedCount += 1 }
            if t { truthCount += 1 }
        }
        dice = predictedCount + truthCount == 0 ? 1 : 2 * Double(both) / Double(predictedCount + truthCount)
        iou = either == 0 ? 1 : Double(both) / Double(either)
        accuracy = Double(equal) / Double(max(1, truth.bits.count))
    }
}

/// Mean and sample standard deviation.
public struct MeanSD: Codable, Sendable, Equatable {
    public var mean: Double
    public var sd: Double

    public init(_ values: [Double]) {
        let n = Double(values.count)
        let mean = values.reduce(0, +) / max(n, 1)
        self.mean = mean
        sd = n > 1 ? (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)).squareRoot() : 0
    }

    /// "0.9637±0.0271" as in the paper's tables.
    public var text: String { formatFixed(mean, decimals: 4) + "±" + formatFixed(sd, decimals: 4) }
}

/// One row of Table 1.
public struct SegmentationRow: Codable, Sendable {
    public var name: String
    /// The U-Net artifact folders (several for the ensemble).
    public var models: [String]
    public var dice: MeanSD
    public var iou: MeanSD
    public var accuracy: MeanSD

    init(name: String, models: [String], scores: [MaskScore]) {
        self.name = name
        self.models = models
        dice = MeanSD(scores.map(\.dice))
        iou = MeanSD(scores.map(\.iou))
        accuracy = MeanSD(scores.map(\.accuracy))
    }

    func value(of metric: String) -> Double {
        switch metric {
        case "iou": iou.mean
        case "accuracy": accuracy.mean
        default: dice.mean
        }
    }
}

/// metrics.json of a segmentation evaluation.
public struct SegmentationEvaluation: Codable, Sendable {
    public var formatVersion: Int
    public var dataset: String
    public var split: String
    public var images: Int
    public var comparedAt: String
    public var threshold: Double
    public var selectionMetric: String
    /// Individual models, in the order given.
    public var models: [SegmentationRow]
    /// The models ranked by `selectionMetric` (best first), as artifact folders.
    public var ranking: [String]
    /// The bitwise AND of the top `ensembleSize` (when more than one model was evaluated).
    public var ensemble: SegmentationRow?
}

/// What decides a segmentation evaluation besides the models and the dataset.
struct SegmentEvaluateSettings: Codable, Equatable {
    var split: String
    var threshold: Double
    var selectionMetric: String
    var ensembleSize: Int
}

/// Version of the segmentation evaluation's files.
public let segmentationEvaluationFormatVersion = 1

/// Scores `models` on the rows of `split` (nil: every row with a mask), ranks them by
/// `config.selectionMetric`, and scores the AND of the top `config.ensembleSize`.
public func runSegmentEvaluate(models: [TrainedSegmenter], dataset: Dataset, datasetKey: String, split: Split?, variant: String,
                               config: SegmentConfig, store: ArtifactStore, threads: Int, blasProvider: String, force: Bool,
                               sink: EventSink) throws(TrainingError) -> StageResult {
    let stage = "segment-evaluate"
    let settings = SegmentEvaluateSettings(split: split?.rawValue ?? "all", threshold: config.threshold,
                                           selectionMetric: config.selectionMetric, ensembleSize: config.ensembleSize)
    let (key, folder, existing): (String, String, StageResult?)
    do { (key, folder, existing) = try store.locate(stage: stage, variant: variant, config: settings, inputKeys: models.map(\.manifest.key) + [datasetKey], formatVersion: segmentationEvaluationFormatVersion, force: force) }
    catch { throw .artifact(error) }
    if let existing { return existing }
    let rows = dataset.rows.filter { split == nil || $0.split == split }
    guard !rows.isEmpty else { throw .emptySplit(dataset: dataset.folder, split: split?.rawValue ?? "any") }

    // Per image: every model's mask at the ground truth's size, and its score.
    var scores = [[MaskScore]](repeating: [], count: models.count)
    var predictedMasks: [[Mask]] = []
    var truths: [Mask] = []
    let chunk = 16
    for start in stride(from: 0, to: rows.count, by: chunk) {
        let part = Array(rows[start..<min(start + chunk, rows.count)])
        let pairs: [(GrayImage, Mask)]
        do {
            pairs = try parallelMap(part, threads: threads, sink: { _ in }, task: "") { (row: DatasetRow) throws(IngestError) -> (GrayImage, Mask) in
                guard let maskPath = dataset.maskPath(row) else {
                    throw .missingMask(image: dataset.imagePath(row), expected: "a ground-truth lung mask to score against")
                }
                do throws(ImagingError) {
                    let image = try GrayImage(contentsOf: dataset.imagePath(row))
                    let truth = Mask(thresholding: try GrayImage(contentsOf: maskPath))
                    guard truth.width == image.width, truth.height == image.height else {
                        throw .sizeMismatch(source: maskPath, expected: "\(image.width)×\(image.height) (the size of \(dataset.imagePath(row)))",
                                            actual: "\(truth.width)×\(truth.height)")
                    }
                    return (image, truth)
                } catch { throw .image(error) }
            }
        } catch { throw .data(error) }
        let perModel = models.map { $0.masks(pairs.map(\.0), threshold: config.threshold) }
        for (m, masks) in perModel.enumerated() {
            for (mask, pair) in zip(masks, pairs) { scores[m].append(MaskScore(predicted: mask, truth: pair.1)) }
        }
        for i in 0..<pairs.count { predictedMasks.append(perModel.map { $0[i] }) }
        truths += pairs.map(\.1)
        sink(.progress(task: "scoring \(models.count) U-Nets on \(rows.count) images", done: min(start + chunk, rows.count), total: rows.count))
    }

    let individual = models.enumerated().map { SegmentationRow(name: $1.name, models: [$1.folder], scores: scores[$0]) }
    let ranked = individual.indices.sorted {
        let a = individual[$0].value(of: config.selectionMetric), b = individual[$1].value(of: config.selectionMetric)
        return a != b ? a > b : $0 < $1
    }
    var ensemble: SegmentationRow?
    var ensembleScores: [MaskScore] = []
    if models.count > 1 {
        let members = Array(ranked.prefix(config.ensembleSize))
        ensembleScores = zip(predictedMasks, truths).map { masks, truth in
            let anded = members.dropFirst().reduce(masks[members[0]]) { (try? $0.and(masks[$1])) ?? $0 }
            return MaskScore(predicted: anded, truth: truth)
        }
        ensemble = SegmentationRow(name: "Ensemble (AND of " + members.map { models[$0].name }.joined(separator: ", ") + ")",
                                   models: members.map { models[$0].folder }, scores: ensembleScores)
    }
    let evaluation = SegmentationEvaluation(
        formatVersion: segmentationEvaluationFormatVersion, dataset: dataset.folder, split: settings.split, images: rows.count,
        comparedAt: "each ground-truth mask's own size: predicted at the U-Net's input size, probabilities resampled bilinearly, then p > threshold",
        threshold: config.threshold, selectionMetric: config.selectionMetric, models: individual,
        ranking: ranked.map { models[$0].folder }, ensemble: ensemble)

    var csvRows: [[String]] = []
    for (i, row) in rows.enumerated() {
        for (m, model) in models.enumerated() {
            let s = scores[m][i]
            csvRows.append([row.path, model.name, formatFixed(s.dice, decimals: 6), formatFixed(s.iou, decimals: 6), formatFixed(s.accuracy, decimals: 6)])
        }
        if let ensemble, !ensembleScores.isEmpty {
            let s = ensembleScores[i]
            csvRows.append([row.path, ensemble.name, formatFixed(s.dice, decimals: 6), formatFixed(s.iou, decimals: 6), formatFixed(s.accuracy, decimals: 6)])
        }
    }
    do {
        var writer = try store.begin(stage: stage, variant: variant, key: key, config: settings,
                                     inputs: models.map { ManifestInput(name: "model", path: $0.folder, key: $0.manifest.key) }
                                         + [ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                                     seed: 0, threads: threads, blasProvider: blasProvider, formatVersion: segmentationEvaluationFormatVersion)
        try writer.write(Array(csvText(header: ["image", "model", "dice", "iou", "accuracy"], rows: csvRows).utf8), to: "per-image.csv")
        try writer.write(try canonicalJSON(evaluation), to: "metrics.json")
        try writer.write(Array(table1(evaluation).utf8), to: "table1.md")
        let manifest = try writer.finish(summary: .object([
            "images": .number(Double(rows.count)), "split": .string(settings.split),
            "selectionMetric": .string(config.selectionMetric),
            "ranking": .array(ranked.map { .string(models[$0].folder) }),
            "ensemble": .array((ensemble?.models ?? ranked.prefix(1).map { models[$0].folder }).map { .string($0) }),
        ]))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch {
        throw trainingError(error, folder: folder)
    }
}

/// The paper's Table 1 layout: one row per loss and the ensemble, IoU, Dice and accuracy as
/// mean±SD, the best of each column in bold.
func table1(_ evaluation: SegmentationEvaluation) -> String {
    let rows = evaluation.models + (evaluation.ensemble.map { [$0] } ?? [])
    let columns: [(String, (SegmentationRow) -> MeanSD)] = [("IoU", \.iou), ("Dice", \.dice), ("Accuracy", \.accuracy)]
    var text = "Table 1. Segmentation performance of the individual U-Nets"
        + (evaluation.ensemble == nil ? "" : " and the bitwise-AND ensemble of the top \(evaluation.ensemble?.models.count ?? 0) by \(evaluation.selectionMetric)")
        + " (\(evaluation.images) images, split '\(evaluation.split)', mean ± sample SD per image; compared at \(evaluation.comparedAt)).\n\n"
    text += "| Loss/Method | " + columns.map(\.0).joined(separator: " | ") + " |\n|---|" + columns.map { _ in "---|" }.joined() + "\n"
    let best = columns.map { column in rows.map { column.1($0).mean }.max() ?? 0 }
    for row in rows {
        let cells = columns.enumerated().map { c, column in
            let value = column.1(row)
            return value.mean == best[c] ? "**\(value.text)**" : value.text
        }
        text += "| \(row.name) | " + cells.joined(separator: " | ") + " |\n"
    }
    return text
}

// MARK: - predict

/// What decides a mask prediction besides the models and the dataset.
struct SegmentPredictSettings: Codable, Equatable {
    var threshold: Double
}

/// Binary lung masks (8-bit PNG, 0/255, each image's own size) of every model for every image of
/// `dataset`, under masks/<k>-<loss>/<image path>.png. Empty predictions are counted and named.
public func runSegmentPredict(models: [TrainedSegmenter], dataset: Dataset, datasetKey: String, variant: String,
                              threshold: Double, store: ArtifactStore, threads: Int, blasProvider: String, force: Bool,
                              sink: EventSink) throws(TrainingError) -> StageResult {
    let stage = "segment-predict"
    let settings = SegmentPredictSettings(threshold: threshold)
    let (key, folder, existing): (String, String, StageResult?)
    do { (key, folder, existing) = try store.locate(stage: stage, variant: variant, config: settings, inputKeys: models.map(\.manifest.key) + [datasetKey], formatVersion: segmentationEvaluationFormatVersion, force: force) }
    catch { throw .artifact(error) }
    if let existing { return existing }
    let maskFolders = models.enumerated().map { "masks/\($0 + 1)-\($1.name)" }
    var empty = [[String]](repeating: [], count: models.count)
    do {
        var writer = try store.begin(stage: stage, variant: variant, key: key, config: settings,
                                     inputs: models.map { ManifestInput(name: "model", path: $0.folder, key: $0.manifest.key) }
                                         + [ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                                     seed: 0, threads: threads, blasProvider: blasProvider, formatVersion: segmentationEvaluationFormatVersion)
        let chunk = 16
        for start in stride(from: 0, to: dataset.rows.count, by: chunk) {
            let part = Array(dataset.rows[start..<min(start + chunk, dataset.rows.count)])
            let images = try parallelMap(part, threads: threads, sink: { _ in }, task: "") { (row: DatasetRow) throws(IngestError) -> GrayImage in
                do throws(ImagingError) { return try GrayImage(contentsOf: dataset.imagePath(row)) } catch { throw .image(error) }
            }
            for (m, model) in models.enumerated() {
                for (row, mask) in zip(part, model.masks(images, threshold: threshold)) {
                    if mask.count == 0 {
                        empty[m].append(row.path)
                        sink(.warning("\(model.name): empty lung mask for \(dataset.imagePath(row)) (mask-crop will use the whole image)"))
                    }
                    let path = maskFolders[m] + "/" + maskFileName(row.path)
                    try FileManager.default.createDirectory(atPath: folder + "/" + (path as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    try writer.write(try mask.image.pngData(), to: path)
                }
            }
            sink(.progress(task: "predicting lung masks with \(models.count) U-Nets", done: min(start + chunk, dataset.rows.count), total: dataset.rows.count))
        }
        let manifest = try writer.finish(summary: .object([
            "images": .number(Double(dataset.rows.count)), "threshold": .number(threshold),
            "models": .array(models.enumerated().map { m, model in
                .object(["loss": .string(model.name), "folder": .string(model.folder), "masks": .string(maskFolders[m]),
                         "emptyMasks": .number(Double(empty[m].count)), "emptyMaskImages": .array(empty[m].map { .string($0) })])
            }),
        ]))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch {
        throw trainingError(error, folder: folder)
    }
}

/// The mask file of an image path: the same relative path with a .png extension.
func maskFileName(_ imagePath: String) -> String {
    (imagePath as NSString).deletingPathExtension + ".png"
}
