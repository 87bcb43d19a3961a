// `classify-train` (SPEC §3, §4): the classifier of SPEC §3 trained with one of the twelve losses on
// a prepared dataset, with Keras SGD, balanced class weights, ReduceLROnPlateau, EarlyStopping and
// best-checkpoint selection on the validation loss. Every epoch appends a JSON line to log.jsonl
// and writes a training checkpoint, so a killed run resumes where it stopped and ends byte-identical
// to an uninterrupted one. Outputs: the best weights, the log, and prediction files (the `evaluate`
// format) for the validation split and, when there is one, the test split.

import Artifacts
import Datasets
import Engine
import Foundation
import Imaging
import Losses
import Metrics
import Models
import SeededRandom
import Training

/// Everything that decides a classifier artifact besides the dataset.
public struct ClassifySettings: Codable, Sendable, Equatable {
    public var loss: ClassificationLoss
    public var config: ClassifyConfig
    public var seed: UInt64
    /// "random"; "unet:" and the key of the `segment train` artifact whose encoder (up to block5c)
    /// the classifier starts from; or "weights:" and the SHA-256 of an encoder weights file.
    public var initialization: String

    public init(loss: ClassificationLoss, config: ClassifyConfig, seed: UInt64, initialization: String) {
        self.loss = loss
        self.config = config
        self.seed = seed
        self.initialization = initialization
    }
}

/// Version of the classifier artifact's files (part of its key).
public let classifierFormatVersion = 1

/// Trains (or resumes, or reuses) the classifier for `loss` on `data` with the context's `classify`
/// settings, starting from the encoder of `encoder` (random weights when nil).
///
/// - Parameter continueAfter: asked after every step and at each epoch's end; returning false writes the
///   checkpoint there and stops with `TrainingError.interrupted` (as a signal does; the next run resumes).
public func runClassifyTrain(_ context: StageContext, loss: ClassificationLoss, data: (dataset: Dataset, key: String),
                             encoder: EncoderSource? = nil, variant: String,
                             continueAfter: (TrainingPosition) -> Bool = { _ in true }) throws(TrainingError) -> StageResult {
    let settings = ClassifySettings(loss: loss, config: context.config.classify, seed: context.config.seed,
                                    initialization: encoder?.initialization ?? "random")
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "classify-train", variant: variant, settings: settings,
                                       inputKeys: [data.key] + (encoder.map { [$0.key] } ?? []),
                                       formatVersion: classifierFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    return try yieldingToAnotherRun(run, sink: context.sink) { () throws(TrainingError) in
        try trainClassifier(context, run: run, settings: settings, data: data, encoder: encoder, continueAfter: continueAfter)
    }
}

/// The training behind `runClassifyTrain`, into `run`'s folder.
private func trainClassifier(_ context: StageContext, run: ArtifactRun, settings: ClassifySettings, data: (dataset: Dataset, key: String),
                             encoder: EncoderSource?, continueAfter: (TrainingPosition) -> Bool) throws(TrainingError) -> StageResult {
    let (dataset, sink, threads) = (data.dataset, context.sink, context.threads)
    let folder = run.folder
    let resuming = !context.force && FileManager.default.fileExists(atPath: folder + "/training.safetensors")
    let config = settings.config
    let interpolation = config.interpolation
    let (trainRows, valRows) = try trainingRows(dataset)
    let testRows = dataset.rows.filter { $0.split == .test }
    let train: ClassificationImages, val: ClassificationImages
    let loadStarted = Date()
    do {
        train = try .load(dataset, rows: trainRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
        val = try .load(dataset, rows: valRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
    } catch { throw .data(error) }
    // Decoding and resizing every train and val image once, before the first epoch.
    let loadSeconds = (Date().timeIntervalSince(loadStarted) * 1000).rounded() / 1000

    var writer: ArtifactWriter
    do {
        writer = try run.begin(inputs: [ManifestInput(name: "dataset", path: dataset.folder, key: data.key)]
                                   + (encoder.map { [ManifestInput(name: "encoder", path: $0.folder, key: $0.key)] } ?? []),
                               seed: settings.seed, resume: resuming)
    } catch { throw .artifact(error) }

    // The model, optimiser and callbacks — fresh, or restored from the last epoch's checkpoint.
    let parameters = Classifier.parameters(seed: settings.seed)
    let options = ModelOptions(batchNormMomentum: Float(config.batchNormMomentum), dropConnect: Float(config.dropConnect))
    if let encoder, !resuming {
        let report = try initializeEncoder(parameters, from: encoder)
        sink(.note("encoder (stem to block5c) from \(encoder.described) (\(report))"))
    }
    let sgd = SGD(learningRate: Float(config.learningRate), momentum: Float(config.momentum), nesterov: config.nesterov, decay: Float(config.decay))
    var loop = try TrainingLoop(
        folder: folder, parameters: parameters, optimizer: sgd, epochs: config.epochs, callbacks: config.callbacks,
        generators: ["shuffle": SplitMix64(seed: settings.seed, stream: 1), "dropConnect": SplitMix64(seed: settings.seed, stream: 2)],
        label: settings.loss.rawValue, weightsMetadata: ["format": "multiloss-cxr/classifier", "loss": settings.loss.rawValue],
        resuming: resuming, sink: sink)

    let classWeights = config.classWeights ? balancedClassWeights(train.labels) : nil
    let lossSettings = config.codeCompat ? ClassificationLossSettings.codeCompat : ClassificationLossSettings()
    let stepsPerEpoch = max(1, train.count / config.batchSize)  // Keras: n // batch

    // This process's validation passes, epoch firstValidated + 1 onwards: the best epoch's are the
    // best weights' predictions of the validation split (the same weights, the same arithmetic).
    let firstValidated = loop.epochsCompleted
    var validations: [Predictions] = []
    try loop.run(writer: &writer, sink: sink, continueAfter: continueAfter, epoch: { _, generators in
        var order = Array(0..<train.count)
        seededShuffle(&order, &generators["shuffle", default: SplitMix64(seed: settings.seed, stream: 1)])
        return EpochSteps(count: stepsPerEpoch) { step, sgd, generators throws(TrainingError) in
            let (images, labels) = train.batch(Array(order[(step * config.batchSize)..<((step + 1) * config.batchSize)]))
            return Double(classifierTrainStep(store: parameters, optimizer: &sgd, images: images, labels: labels,
                                              generator: &generators["dropConnect", default: SplitMix64(seed: settings.seed, stream: 2)],
                                              loss: settings.loss, classWeights: classWeights, settings: lossSettings,
                                              options: options).loss)
        }
    }, validate: {
        // Unweighted loss, the mean of batch losses weighted by batch size.
        let (valLoss, predictions, _) = evaluateClassifier(parameters, images: val, loss: settings.loss, settings: lossSettings,
                                                        batchSize: config.batchSize)
        validations.append(predictions)
        return Validation(loss: valLoss, accuracy: Double(zip(predictions.predicted, val.labels).filter { $0 == $1 }.count) / Double(val.count))
    })

    // The best weights predict the validation and test splits (the validation split's predictions
    // are its pass in the best epoch unless that ran before a resume).
    let best = try loop.finish(writer: &writer)
    do {
        let bestPass = (best?.epoch ?? 0) - firstValidated - 1
        let valPredictions = validations.indices.contains(bestPass) ? validations[bestPass]
            : evaluateClassifier(parameters, images: val, loss: settings.loss, settings: lossSettings, batchSize: config.batchSize).predictions
        try writer.write(Array(predictionCSV(valPredictions).utf8), to: "predictions-val.csv")
        if !testRows.isEmpty {
            let test = try ClassificationImages.load(dataset, rows: testRows, size: config.size, interpolation: interpolation,
                                                     threads: threads, sink: sink)
            let predictions = evaluateClassifier(parameters, images: test, loss: settings.loss, settings: lossSettings,
                                                 batchSize: config.batchSize).predictions
            try writer.write(Array(predictionCSV(predictions).utf8), to: "predictions-test.csv")
        }
        var summary = loop.summary(best: best)
        summary["loadSeconds"] = .number(loadSeconds)
        summary["loss"] = .string(settings.loss.rawValue)
        summary["paperName"] = .string(settings.loss.paperName)
        summary["classWeights"] = .array((classWeights ?? []).map { .number(Double($0)) })
        summary["encoder"] = .string(encoder?.folder ?? "random")
        return writer.result(try writer.finish(summary: .object(summary)))
    } catch {
        throw .wrapping(error, folder: folder)
    }
}
