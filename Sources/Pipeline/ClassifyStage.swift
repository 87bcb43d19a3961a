// The `classify-train` stage (SPEC §3, §4): the classifier of SPEC §3 trained with one of the
// twelve losses on a prepared dataset, with Keras SGD, balanced class weights, ReduceLROnPlateau,
// EarlyStopping and best-checkpoint selection on the validation loss. Every epoch appends a JSON
// line to log.jsonl and writes a training checkpoint, so a killed run resumes where it stopped and
// ends byte-identical to an uninterrupted one. Outputs: the best weights, the log, and prediction
// files (the `evaluate` format) for the validation split and, when there is one, the test split.

import Engine
import Foundation
import Imaging
import Losses
import Metrics
import Models
import SeededRandom

/// Everything that decides a classifier artifact besides the dataset.
public struct ClassifySettings: Codable, Sendable, Equatable {
    public var loss: ClassificationLoss
    public var config: ClassifyConfig
    public var seed: UInt64
    /// "random", or "unet:" and the key of the `segment train` artifact whose encoder (up to
    /// block5c) the classifier starts from.
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

/// A trained U-Net whose encoder initialises a classifier (SPEC §3).
public struct EncoderSource: Sendable {
    public let folder: String
    public let key: String

    public init(folder: String, key: String) {
        self.folder = folder
        self.key = key
    }

    public var initialization: String { "unet:" + key }
}

/// Copies every classifier tensor outside the head (`extra_conv_eff0`, `predictions`) — the
/// EfficientNet-B0 encoder up to block5c, batch-norm statistics included — from the U-Net weights
/// in `source`.
///
/// - Throws: `CheckpointError.mismatch` naming the encoder tensors the U-Net file lacks or has
///   in another shape.
func initializeEncoder(_ parameters: ParameterStore, from source: EncoderSource) throws(TrainingError) {
    let path = source.folder + "/model.safetensors"
    do {
        let unet = try Safetensors.decode(try readFile(path), source: path).tensors
        var tensors = parameters.allTensors
        for name in tensors.keys where !name.hasPrefix(Classifier.dcl) && !name.hasPrefix("predictions") {
            tensors[name] = unet[name]
        }
        try parameters.load(tensors, source: path)
    } catch {
        throw trainingError(error, folder: source.folder)
    }
}

/// Trains (or resumes, or reuses) the classifier for `settings` on `dataset`, starting from the
/// encoder of `encoder` (random weights when nil).
///
/// - Parameter continueAfter: asked after each epoch's checkpoint is written; returning false stops
///   with `TrainingError.interrupted` (an interruption the next run resumes from).
public func runClassifyTrain(dataset: Dataset, datasetKey: String, variant: String, settings: ClassifySettings,
                             encoder: EncoderSource? = nil, store: ArtifactStore, threads: Int, blasProvider: String, force: Bool,
                             sink: EventSink, continueAfter: (Int) -> Bool = { _ in true }) throws(TrainingError) -> StageResult {
    precondition(settings.initialization == (encoder?.initialization ?? "random"), "settings.initialization must name the encoder")
    let (key, folder, existing): (String, String, StageResult?)
    do { (key, folder, existing) = try store.locate(stage: "classify-train", variant: variant, config: settings, inputKeys: [datasetKey] + (encoder.map { [$0.key] } ?? []), formatVersion: classifierFormatVersion, force: force) }
    catch { throw .artifact(error) }
    if let existing { return existing }
    let resuming = !force && FileManager.default.fileExists(atPath: folder + "/training.safetensors")
    let config = settings.config
    guard let interpolation = Interpolation(rawValue: config.interpolation) else {
        throw .artifact(.io(path: "pipeline.json", message: "classify.interpolation '\(config.interpolation)' is unknown"))
    }
    let (trainRows, valRows) = try trainingRows(dataset)
    let testRows = dataset.rows.filter { $0.split == .test }
    let train: ClassificationImages, val: ClassificationImages
    do {
        train = try .load(dataset, rows: trainRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
        val = try .load(dataset, rows: valRows, size: config.size, interpolation: interpolation, threads: threads, sink: sink)
    } catch { throw .data(error) }

    var writer: ArtifactWriter
    do {
        writer = try store.begin(stage: "classify-train", variant: variant, key: key, config: settings,
                                 inputs: [ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)]
                                     + (encoder.map { [ManifestInput(name: "encoder", path: $0.folder, key: $0.key)] } ?? []),
                                 seed: settings.seed, threads: threads, blasProvider: blasProvider,
                                 formatVersion: classifierFormatVersion, resume: resuming)
    } catch { throw .artifact(error) }

    // The model, optimiser and callbacks — fresh, or restored from the last epoch's checkpoint.
    let parameters = ParameterStore(seed: settings.seed)
    let probe = Tape(recording: false, training: false)
    _ = Classifier.forward(Layers(tape: probe, store: parameters), probe.constant(Tensor(zeros: [1, config.size, config.size, 3])))
    if let encoder, !resuming {
        try initializeEncoder(parameters, from: encoder)
        sink(.note("encoder (stem to block5c) from the U-Net \(encoder.folder)"))
    }
    let sgd = SGD(learningRate: Float(config.learningRate), momentum: Float(config.momentum), nesterov: config.nesterov, decay: Float(config.decay))
    var loop = try TrainingLoop(
        folder: folder, parameters: parameters, optimizer: sgd, epochs: config.epochs, callbacks: config.callbacks,
        generators: ["shuffle": SplitMix64(seed: settings.seed, stream: 1), "dropConnect": SplitMix64(seed: settings.seed, stream: 2)],
        label: settings.loss.rawValue, weightsMetadata: ["format": "multiloss-cxr/classifier", "loss": settings.loss.rawValue],
        resuming: resuming, sink: sink)

    // Keras' balanced class weights, or none.
    let counts = (0..<3).map { c in train.labels.filter { $0 == c }.count }
    let present = counts.filter { $0 > 0 }.count
    let classWeights: [Float]? = config.classWeights
        ? counts.map { $0 == 0 ? 0 : Float(Double(train.count) / (Double(present) * Double($0))) } : nil
    let lossSettings = config.codeCompat ? ClassificationLossSettings.codeCompat : ClassificationLossSettings()
    let stepsPerEpoch = max(1, train.count / config.batchSize)  // Keras: n // batch

    try loop.run(writer: &writer, sink: sink, continueAfter: continueAfter, trainEpoch: { epoch, sgd, generators throws(TrainingError) in
        var order = Array(0..<train.count)
        var shuffle = generators["shuffle"] ?? SplitMix64(seed: settings.seed, stream: 1)
        seededShuffle(&order, &shuffle)
        generators["shuffle"] = shuffle
        var dropConnect = generators["dropConnect"] ?? SplitMix64(seed: settings.seed, stream: 2)
        var lossSum = 0.0
        for step in 0..<stepsPerEpoch {
            let (images, labels) = train.batch(Array(order[(step * config.batchSize)..<((step + 1) * config.batchSize)]))
            let result = classifierTrainStep(store: parameters, optimizer: &sgd, images: images, labels: labels,
                                             generator: &dropConnect, loss: settings.loss, classWeights: classWeights,
                                             settings: lossSettings, dropConnect: Float(config.dropConnect),
                                             batchNormMomentum: Float(config.batchNormMomentum))
            guard result.loss.isFinite else { throw .notFinite(epoch: epoch, step: step, lastCheckpoint: folder + "/training.safetensors") }
            lossSum += Double(result.loss)
            sink(.progress(task: "epoch \(epoch + 1)/\(config.epochs) [\(settings.loss.rawValue)]", done: step + 1, total: stepsPerEpoch))
        }
        generators["dropConnect"] = dropConnect
        return lossSum / Double(stepsPerEpoch)
    }, validate: {
        // Unweighted loss, the mean of batch losses weighted by batch size.
        let (valLoss, predictions, _) = evaluateClassifier(parameters, images: val, loss: settings.loss, settings: lossSettings,
                                                        batchSize: config.batchSize)
        return Validation(loss: valLoss, accuracy: Double(zip(predictions.predicted, val.labels).filter { $0 == $1 }.count) / Double(val.count))
    })

    // The best weights predict the validation and test splits.
    let best = try loop.finish(writer: &writer)
    do {
        let valPredictions = evaluateClassifier(parameters, images: val, loss: settings.loss, settings: lossSettings,
                                                batchSize: config.batchSize).predictions
        try writer.write(Array(predictionCSV(valPredictions).utf8), to: "predictions-val.csv")
        if !testRows.isEmpty {
            let test = try ClassificationImages.load(dataset, rows: testRows, size: config.size, interpolation: interpolation,
                                                     threads: threads, sink: sink)
            let predictions = evaluateClassifier(parameters, images: test, loss: settings.loss, settings: lossSettings,
                                                 batchSize: config.batchSize).predictions
            try writer.write(Array(predictionCSV(predictions).utf8), to: "predictions-test.csv")
        }
        var summary = loop.summary(best: best)
        summary["loss"] = .string(settings.loss.rawValue)
        summary["paperName"] = .string(settings.loss.paperName)
        summary["classWeights"] = .array((classWeights ?? []).map { .number(Double($0)) })
        summary["encoder"] = .string(encoder?.folder ?? "random")
        let manifest = try writer.finish(summary: .object(summary))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch {
        throw trainingError(error, folder: folder)
    }
}

/// The unweighted validation loss (batch losses averaged by batch size) and the predictions, and
/// with `features` the DCL activations [N,h,w,512] (SPEC §3) the model-level ensembles combine.
public func evaluateClassifier(_ parameters: ParameterStore, images: ClassificationImages, loss: ClassificationLoss,
                               settings: ClassificationLossSettings, batchSize: Int,
                               features: Bool = false) -> (loss: Float, predictions: Predictions, features: Tensor?) {
    var total = 0.0
    var probabilities: [Double] = []
    var dcl: [Float] = [], dclShape: [Int] = []
    var start = 0
    while start < images.count {
        let indices = Array(start..<min(start + batchSize, images.count))
        let (x, y) = images.batch(indices)
        let tape = Tape(recording: false, training: false)
        let output = Classifier.forward(Layers(tape: tape, store: parameters), tape.constant(x))
        let p = tape.softmax(output.logits)
        let value = tape.value(classificationLoss(loss, tape: tape, probabilities: p, labels: y, classWeights: nil, settings: settings))
        total += Double(value.data[0]) * Double(indices.count)
        probabilities += tape.value(p).data.map(Double.init)
        if features {
            let maps = tape.value(output.dcl)
            dcl += maps.data
            dclShape = [images.count] + maps.shape.dropFirst()
        }
        start += batchSize
    }
    // Renormalise in Double so each row sums to 1 within the prediction file's tolerance.
    for i in 0..<images.count {
        let sum = probabilities[(3 * i)..<(3 * i + 3)].reduce(0, +)
        for k in 0..<3 { probabilities[3 * i + k] /= sum }
    }
    return (Float(total / Double(images.count)),
            Predictions(ids: images.ids, labels: images.labels, probabilities: probabilities, classes: 3),
            features ? Tensor(shape: dclShape, data: dcl) : nil)
}

/// What decides a prediction artifact besides the model and the dataset.
struct ClassifyPredictSettings: Codable, Equatable {
    var model: ClassifySettings
    var features: Bool
}

/// Predictions of a trained classifier artifact for every image of a dataset (any split), written
/// as `predictions.csv` in the evaluate format, so a model can be scored on data it never saw; with
/// `features`, also `features.safetensors`: the DCL maps as tensor `dcl` [N,h,w,512] in row order,
/// the image ids and labels in its metadata.
public func runClassifyPredict(modelFolder: String, modelManifest: Manifest, dataset: Dataset, datasetKey: String,
                               variant: String, features: Bool = false, store: ArtifactStore, threads: Int, blasProvider: String,
                               force: Bool, sink: EventSink) throws(TrainingError) -> StageResult {
    let settings: ClassifySettings
    do {
        settings = try JSONDecoder().decode(ClassifySettings.self, from: JSONEncoder().encode(modelManifest.config))
    } catch {
        throw .artifact(.invalidManifest(path: modelFolder + "/manifest.json", message: "not a classify-train artifact: \(error)"))
    }
    guard let interpolation = Interpolation(rawValue: settings.config.interpolation) else {
        throw .artifact(.invalidManifest(path: modelFolder + "/manifest.json", message: "unknown interpolation"))
    }
    let predictSettings = ClassifyPredictSettings(model: settings, features: features)
    let (key, folder, existing): (String, String, StageResult?)
    do { (key, folder, existing) = try store.locate(stage: "classify-predict", variant: variant, config: predictSettings, inputKeys: [modelManifest.key, datasetKey], formatVersion: classifierFormatVersion, force: force) }
    catch { throw .artifact(error) }
    if let existing { return existing }
    let parameters = ParameterStore(seed: settings.seed)
    let probe = Tape(recording: false, training: false)
    _ = Classifier.forward(Layers(tape: probe, store: parameters), probe.constant(Tensor(zeros: [1, settings.config.size, settings.config.size, 3])))
    do {
        let path = modelFolder + "/model.safetensors"
        try parameters.load(try Safetensors.decode(try readFile(path), source: path).tensors, source: path)
        let images = try ClassificationImages.load(dataset, rows: dataset.rows, size: settings.config.size, interpolation: interpolation,
                                                   threads: threads, sink: sink)
        let lossSettings = settings.config.codeCompat ? ClassificationLossSettings.codeCompat : ClassificationLossSettings()
        let (_, predictions, maps) = evaluateClassifier(parameters, images: images, loss: settings.loss, settings: lossSettings,
                                                        batchSize: settings.config.batchSize, features: features)
        var writer = try store.begin(stage: "classify-predict", variant: variant, key: key, config: predictSettings,
                                     inputs: [ManifestInput(name: "model", path: modelFolder, key: modelManifest.key),
                                              ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                                     seed: settings.seed, threads: threads, blasProvider: blasProvider, formatVersion: classifierFormatVersion)
        try writer.write(Array(predictionCSV(predictions).utf8), to: "predictions.csv")
        if let maps {
            let ids = String(decoding: try canonicalJSON(images.ids), as: UTF8.self)
            let labels = String(decoding: try canonicalJSON(images.labels), as: UTF8.self)
            try writer.write(Safetensors.encode(["dcl": maps], metadata: ["format": "multiloss-cxr/dcl-features", "layer": Classifier.dcl,
                                                                           "ids": ids, "labels": labels]), to: "features.safetensors")
        }
        let manifest = try writer.finish(summary: .object(["images": .number(Double(predictions.count)), "loss": .string(settings.loss.rawValue)]))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch {
        throw trainingError(error, folder: folder)
    }
}
