// `segment train` (SPEC §1): the EfficientNet-B0 U-Net trained with one of the five losses (Adam,
// [P]'s augmentation, ReduceLROnPlateau / EarlyStopping / best checkpoint on validation loss,
// resumable). Outputs the best weights and the epoch log.

import Artifacts
import Datasets
import Engine
import Foundation
import Losses
import Models
import SeededRandom
import Training

/// Everything that decides a U-Net artifact besides the dataset.
public struct SegmentSettings: Codable, Sendable, Equatable {
    public var loss: SegmentationLoss
    public var config: SegmentConfig
    public var seed: UInt64
    /// nil: random weights (and the key of every U-Net trained before encoder weights existed);
    /// "weights:" and the SHA-256 of the encoder weights file the U-Net starts from.
    public var initialization: String?

    public init(loss: SegmentationLoss, config: SegmentConfig, seed: UInt64, initialization: String? = nil) {
        self.loss = loss
        self.config = config
        self.seed = seed
        self.initialization = initialization
    }
}

/// Version of the U-Net artifact's files (part of its key).
public let segmenterFormatVersion = 1

/// Trains (or resumes, or reuses) the U-Net for `loss` on the train split of `data`, validating on
/// its val split, with the context's `segment` settings; its encoder starts from `encoder` (random
/// weights when nil).
///
/// - Parameter continueAfter: asked after every step and at each epoch's end; returning false writes the
///   checkpoint there and stops with `TrainingError.interrupted` (as a signal does; the next run resumes).
public func runSegmentTrain(_ context: StageContext, loss: SegmentationLoss, data: (dataset: Dataset, key: String),
                            encoder: EncoderSource? = nil, variant: String,
                            continueAfter: (TrainingPosition) -> Bool = { _ in true }) throws(TrainingError) -> StageResult {
    let settings = SegmentSettings(loss: loss, config: context.config.segment, seed: context.config.seed,
                                   initialization: encoder?.initialization)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "segment-train", variant: variant, settings: settings,
                                       inputKeys: [data.key] + (encoder.map { [$0.key] } ?? []),
                                       formatVersion: segmenterFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    return try yieldingToAnotherRun(run, sink: context.sink) { () throws(TrainingError) in
        try trainSegmenter(context, run: run, settings: settings, data: data, encoder: encoder, continueAfter: continueAfter)
    }
}

/// The training behind `runSegmentTrain`, into `run`'s folder.
private func trainSegmenter(_ context: StageContext, run: ArtifactRun, settings: SegmentSettings, data: (dataset: Dataset, key: String),
                            encoder: EncoderSource?, continueAfter: (TrainingPosition) -> Bool) throws(TrainingError) -> StageResult {
    let (dataset, sink, threads) = (data.dataset, context.sink, context.threads)
    let folder = run.folder
    let resuming = !context.force && FileManager.default.fileExists(atPath: folder + "/training.safetensors")
    let config = settings.config
    let (trainRows, valRows) = try trainingRows(dataset)
    let train: SegmentationImages, val: SegmentationImages
    let loadStarted = Date()
    do {
        train = try .load(dataset, rows: trainRows, size: config.size, interpolation: config.interpolation, threads: threads, sink: sink)
        val = try .load(dataset, rows: valRows, size: config.size, interpolation: config.interpolation, threads: threads, sink: sink)
    } catch { throw .data(error) }
    // Decoding and resizing every train and val image once, before the first epoch.
    let loadSeconds = (Date().timeIntervalSince(loadStarted) * 1000).rounded() / 1000

    var writer: ArtifactWriter
    do {
        writer = try run.begin(inputs: [ManifestInput(name: "dataset", path: dataset.folder, key: data.key)]
                                   + (encoder.map { [ManifestInput(name: "encoder", path: $0.folder, key: $0.key)] } ?? []),
                               seed: settings.seed, resume: resuming)
    } catch { throw .artifact(error) }

    let parameters = UNet.parameters(seed: settings.seed)
    if let encoder, !resuming {
        let report = try initializeEncoder(parameters, from: encoder)
        sink(.note("encoder (stem to top) from \(encoder.described) (\(report))"))
    }
    let options = ModelOptions(batchNormMomentum: Float(config.batchNormMomentum))
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

    try loop.run(writer: &writer, sink: sink, continueAfter: continueAfter, epoch: { _, generators in
        var order = Array(0..<train.count)
        seededShuffle(&order, &generators["shuffle", default: SplitMix64(seed: settings.seed, stream: 1)])
        return EpochSteps(count: stepsPerEpoch) { step, adam, generators throws(TrainingError) in
            let (images, masks) = train.batch(Array(order[(step * batchSize)..<((step + 1) * batchSize)]), augment: augmentation,
                                              generator: &generators["augment", default: SplitMix64(seed: settings.seed, stream: 2)])
            return Double(unetTrainStep(store: parameters, optimizer: &adam, images: images, masks: masks,
                                        generator: &generators["dropConnect", default: SplitMix64(seed: settings.seed, stream: 3)],
                                        loss: settings.loss, options: options).loss)
        }
    }, validate: {
        validateSegmenter(parameters, images: val, loss: settings.loss, batchSize: batchSize)
    })

    let best = try loop.finish(writer: &writer)
    var summary = loop.summary(best: best)
    summary["loadSeconds"] = .number(loadSeconds)
    summary["loss"] = .string(settings.loss.rawValue)
    summary["size"] = .number(Double(config.size))
    summary["bestValDice"] = .number(best?.valDice ?? .nan)
    summary["bestValIoU"] = .number(best?.valIoU ?? .nan)
    do {
        return writer.result(try writer.finish(summary: .object(summary)))
    } catch {
        throw .artifact(error)
    }
}
