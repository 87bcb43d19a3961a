// The epoch loop every training stage shares: Keras-style callbacks on the validation loss (or accuracy)
// (ReduceLROnPlateau, EarlyStopping, best checkpoint), one JSON line per epoch in log.jsonl, and a
// training checkpoint after every epoch — and at the step where SIGINT or SIGTERM stopped it — so a
// killed run resumes where it stopped and ends byte-identical to an uninterrupted one. The stage
// supplies what an epoch's steps and a validation pass are.

import Artifacts
import Datasets
import Engine
import Foundation
import Imaging
import Report
import SeededRandom

/// Why training stopped with an error.
public enum TrainingError: Error, CustomStringConvertible {
    case notFinite(epoch: Int, step: Int, lastCheckpoint: String)
    /// Stopped on request; the checkpoint holds `epoch` whole epochs and `step` steps of the next
    /// (0: at an epoch boundary). Rerunning resumes from it.
    case interrupted(epoch: Int, step: Int, checkpoint: String)
    case emptySplit(dataset: String, split: String)
    case checkpoint(CheckpointError)
    case data(IngestError)
    case artifact(ArtifactError)

    public var description: String {
        switch self {
        case let .notFinite(epoch, step, checkpoint):
            "the loss became NaN or infinite at epoch \(epoch + 1), step \(step + 1); the last good state is \(checkpoint) "
                + "(lower the learning rate, or rerun: training resumes from it)"
        case let .interrupted(epoch, step, checkpoint):
            (step == 0 ? "stopped after epoch \(epoch)" : "stopped at epoch \(epoch + 1), step \(step)")
                + "; rerun to resume from \(checkpoint)"
        case let .emptySplit(dataset, split): "\(dataset): no \(split) images; prepare the dataset with a validation split"
        case let .checkpoint(error): error.description
        case let .data(error): error.description
        case let .artifact(error): error.description
        }
    }
}

/// timing.json: wall time per epoch and its parts, for the manifest (never in log.jsonl).
struct EpochTiming: Codable {
    var epochSeconds: [Double]
    var stepSeconds: [Double]
    var validationSeconds: [Double]
}

/// Seconds rounded to the millisecond.
private func milliseconds(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

/// One line of log.jsonl.
public struct EpochRecord: Codable, Sendable {
    public var epoch: Int
    public var loss: Double
    public var valLoss: Double
    /// Classification: top-1 accuracy. Segmentation: Keras binary accuracy at 0.5.
    public var valAccuracy: Double
    /// Segmentation only: batch-level Dice and IoU (SPEC §1.2), averaged over validation batches.
    public var valDice: Double?
    public var valIoU: Double?
    public var learningRate: Double
    public var best: Bool
}

/// What one validation pass measured.
public struct Validation: Sendable {
    public var loss: Float
    public var accuracy: Double
    public var dice: Double?
    public var iou: Double?

    public init(loss: Float, accuracy: Double, dice: Double? = nil, iou: Double? = nil) {
        self.loss = loss
        self.accuracy = accuracy
        self.dice = dice
        self.iou = iou
    }
}

/// What the callbacks watch. Every callback minimises: validation accuracy is watched as its
/// negative, so "improved by more than minDelta" means the same in both modes (Keras mode max).
public enum Monitor: String, Sendable, Codable {
    /// The paper's choice for every network (least validation loss).
    case valLoss
    /// The released code's for the classifiers and the ensembles' meta-learners (SPEC §6.1).
    case valAccuracy

    func value(_ validation: Validation) -> Float {
        switch self {
        case .valLoss: validation.loss
        case .valAccuracy: Float(-validation.accuracy)
        }
    }
}

/// The callbacks' settings (all watch one `Monitor`, minimising).
public struct CallbackSettings: Sendable {
    public var plateauFactor: Double
    public var plateauPatience: Int
    public var earlyStoppingPatience: Int
    public var minDelta: Double
    public var minLearningRate: Double

    public var monitor: Monitor

    public init(plateauFactor: Double, plateauPatience: Int, earlyStoppingPatience: Int, minDelta: Double, minLearningRate: Double,
                monitor: Monitor = .valLoss) {
        self.monitor = monitor
        self.plateauFactor = plateauFactor
        self.plateauPatience = plateauPatience
        self.earlyStoppingPatience = earlyStoppingPatience
        self.minDelta = minDelta
        self.minLearningRate = minLearningRate
    }
}

/// A training run of one model in its artifact folder.
public struct TrainingLoop<O: Optimizer> {
    let folder: String
    let parameters: ParameterStore
    let epochs: Int
    /// Shown in progress lines, e.g. the loss name.
    let label: String
    /// Written into the best weights' safetensors metadata.
    let weightsMetadata: [String: String]
    var optimizer: O
    private(set) var state: TrainingState
    private(set) var log: [EpochRecord] = []
    /// Epochs completed so far (those of a resumed run included): the next validation pass is
    /// epoch `epochsCompleted + 1`'s.
    public var epochsCompleted: Int { state.epoch }
    /// Wall time of each epoch in `log`, and the parts of it spent in training steps (batch assembly
    /// included) and in the validation pass (timing.json while training, the manifest's summary
    /// after: kept out of log.jsonl so that file is byte-identical between runs).
    private(set) var epochSeconds: [Double] = []
    private(set) var stepSeconds: [Double] = []
    private(set) var validationSeconds: [Double] = []
    private(set) var stopped = false
    /// Test hook: called after each write of an epoch ("model", "log", "timing", "checkpoint") with
    /// the epoch's number; throwing stops the run there, as a kill would.
    var afterWrite: ((_ file: String, _ epoch: Int) throws -> Void)?
    let monitor: Monitor

    var checkpointPath: String { folder + "/training.safetensors" }
    var timingPath: String { folder + "/timing.json" }

    /// A fresh run, or the run restored from `folder`'s checkpoint when `resuming`.
    public init(folder: String, parameters: ParameterStore, optimizer: O, epochs: Int, callbacks: CallbackSettings,
         generators: [String: SplitMix64], label: String, weightsMetadata: [String: String], resuming: Bool,
         sink: EventSink) throws(TrainingError) {
        self.folder = folder
        self.parameters = parameters
        self.optimizer = optimizer
        self.epochs = epochs
        self.label = label
        self.weightsMetadata = weightsMetadata
        monitor = callbacks.monitor
        state = TrainingState(
            epoch: 0, batchInEpoch: 0, learningRate: optimizer.learningRate,
            plateau: ReduceLROnPlateau(factor: Float(callbacks.plateauFactor), patience: callbacks.plateauPatience,
                                       minDelta: Float(callbacks.minDelta), minLearningRate: Float(callbacks.minLearningRate)),
            earlyStopping: EarlyStopping(patience: callbacks.earlyStoppingPatience, minDelta: Float(callbacks.minDelta)),
            best: BestCheckpoint(), generators: generators)
        guard resuming else { return }
        do {
            let restored = try TrainingCheckpoint.decode(try readFile(checkpointPath), source: checkpointPath, into: parameters)
            self.optimizer.state = restored.optimizer
            state = restored.state
            stopped = restored.metadata["stopped"] == "true"
            // The checkpoint is the point of truth: a run killed after writing an epoch's log line
            // but before its checkpoint reruns that epoch, so the line is dropped here.
            if let data = FileManager.default.contents(atPath: folder + "/log.jsonl") {
                log = Array(String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
                    try? JSONDecoder().decode(EpochRecord.self, from: Data($0.utf8))
                }.prefix(state.epoch))
            }
            if let data = FileManager.default.contents(atPath: timingPath) {
                if let timing = try? JSONDecoder().decode(EpochTiming.self, from: data) {
                    epochSeconds = Array(timing.epochSeconds.prefix(state.epoch))
                    stepSeconds = Array(timing.stepSeconds.prefix(state.epoch))
                    validationSeconds = Array(timing.validationSeconds.prefix(state.epoch))
                } else if let seconds = try? JSONDecoder().decode([Double].self, from: data) {
                    epochSeconds = Array(seconds.prefix(state.epoch))  // written before the parts were timed
                }
            }
            sink(.note("resuming from \(checkpointPath) " + (state.batchInEpoch > 0
                ? "at epoch \(state.epoch + 1), step \(state.batchInEpoch)" : "after epoch \(state.epoch)")))
        } catch {
            throw .wrapping(error, folder: checkpointPath)
        }
        self.optimizer.learningRate = state.learningRate
    }

    /// Trains until `epochs`, early stopping, an interruption (SIGINT or SIGTERM, or `continueAfter`
    /// returning false): the checkpoint is then written at that step and `.interrupted` thrown; the
    /// next run resumes from it.
    ///
    /// - Parameters:
    ///   - continueAfter: asked after every step with the position reached (epoch index, steps done
    ///     in it); false stops there as a signal would (tests).
    ///   - epoch: draws epoch `e`'s batch order from the run's random generators and returns its steps.
    ///   - validate: the validation pass of the current weights.
    public mutating func run(writer: inout ArtifactWriter, sink: EventSink, continueAfter: (TrainingPosition) -> Bool,
                             epoch: (Int, inout [String: SplitMix64]) -> EpochSteps<O>,
                             validate: () -> Validation) throws(TrainingError) {
        try Interruption.training { () throws(TrainingError) in
            try runEpochs(writer: &writer, sink: sink, continueAfter: continueAfter, epoch: epoch, validate: validate)
        }
    }

    private mutating func runEpochs(writer: inout ArtifactWriter, sink: EventSink, continueAfter: (TrainingPosition) -> Bool,
                                    epoch makeEpoch: (Int, inout [String: SplitMix64]) -> EpochSteps<O>,
                                    validate: () -> Validation) throws(TrainingError) {
        while state.epoch < epochs && !stopped {
            let started = Date()
            // The batch order is drawn from the streams as they were when the epoch began; a run
            // stopped inside the epoch then continues with the streams as they were at that step.
            let epochStart = state.epochStartGenerators ?? state.generators
            var generators = epochStart
            let steps = makeEpoch(state.epoch, &generators)
            var first = 0, lossSum = 0.0
            if state.batchInEpoch > 0 {
                first = state.batchInEpoch
                lossSum = state.epochLossSum ?? 0
                generators = state.generators
            }
            let task = "epoch \(state.epoch + 1)/\(epochs) [\(label)]"
            var inSteps = 0.0
            for step in first..<steps.count {
                let stepStarted = DispatchTime.now().uptimeNanoseconds
                let loss = try steps.step(step, &optimizer, &generators)
                inSteps += Double(DispatchTime.now().uptimeNanoseconds - stepStarted) / 1e9
                guard loss.isFinite else { throw .notFinite(epoch: state.epoch, step: step, lastCheckpoint: checkpointPath) }
                lossSum += loss
                sink(.progress(task: task, done: step + 1, total: steps.count))
                let position = TrainingPosition(epoch: state.epoch, step: step + 1)
                if step + 1 < steps.count && (Interruption.requested || !continueAfter(position)) {
                    state.batchInEpoch = step + 1
                    state.epochLossSum = lossSum
                    state.epochStartGenerators = epochStart
                    state.generators = generators
                    try writeCheckpoint()
                    throw .interrupted(epoch: state.epoch, step: step + 1, checkpoint: checkpointPath)
                }
            }
            state.generators = generators
            state.batchInEpoch = 0
            state.epochLossSum = nil
            state.epochStartGenerators = nil
            let trainLoss = lossSum / Double(max(steps.count, 1))
            let validationStarted = DispatchTime.now().uptimeNanoseconds
            let validation = validate()
            let inValidation = Double(DispatchTime.now().uptimeNanoseconds - validationStarted) / 1e9
            let watched = monitor.value(validation)
            let isBest = state.best.isBest(current: watched, epoch: state.epoch)
            do {
                let epoch = state.epoch + 1
                if isBest {
                    var metadata = weightsMetadata
                    metadata["epoch"] = String(epoch)
                    try writer.write(try Safetensors.encode(parameters.allTensors, metadata: metadata), to: "model.safetensors")
                    try afterWrite?("model", epoch)
                }
                let record = EpochRecord(epoch: epoch, loss: trainLoss, valLoss: Double(validation.loss),
                                         valAccuracy: validation.accuracy, valDice: validation.dice, valIoU: validation.iou,
                                         learningRate: Double(optimizer.learningRate), best: isBest)
                log.append(record)
                epochSeconds.append(milliseconds(Date().timeIntervalSince(started)))
                stepSeconds.append(milliseconds(inSteps))
                validationSeconds.append(milliseconds(inValidation))
                sink(.note(describe(record, seconds: epochSeconds.last ?? 0)))
                try writer.write(Array((log.map(jsonLine).joined(separator: "\n") + "\n").utf8), to: "log.jsonl")
                try afterWrite?("log", epoch)
                try writeFileAtomically(try canonicalJSON(EpochTiming(epochSeconds: epochSeconds, stepSeconds: stepSeconds,
                                                                      validationSeconds: validationSeconds)), to: timingPath)
                try afterWrite?("timing", epoch)
                state.learningRate = state.plateau.update(current: watched, learningRate: optimizer.learningRate)
                optimizer.learningRate = state.learningRate
                stopped = state.earlyStopping.shouldStop(current: watched)
                state.epoch += 1
            } catch {
                throw .wrapping(error, folder: folder)
            }
            // After the last epoch `finish` follows and drops the checkpoint: none is written (a run
            // killed before its manifest resumes from the previous one and redoes the last epoch).
            guard state.epoch < epochs && !stopped else { break }
            try writeCheckpoint()
            do { try afterWrite?("checkpoint", state.epoch) } catch { throw .wrapping(error, folder: folder) }
            let boundary = TrainingPosition(epoch: state.epoch, step: 0)
            if Interruption.requested || !continueAfter(boundary) {
                throw .interrupted(epoch: state.epoch, step: 0, checkpoint: checkpointPath)
            }
        }
    }

    /// Writes the training checkpoint (atomically) from the current weights, optimiser and state.
    private func writeCheckpoint() throws(TrainingError) {
        do {
            let checkpoint = try TrainingCheckpoint.encode(store: parameters, optimizer: optimizer.state, state: state,
                                                           metadata: ["stopped": stopped ? "true" : "false"])
            try writeFileAtomically(checkpoint, to: checkpointPath)
        } catch {
            throw .wrapping(error, folder: folder)
        }
    }

    /// Loads the best weights into `parameters`, drops the checkpoint (scaffolding of an incomplete
    /// run) and records the weights and the log as outputs of `writer`.
    ///
    /// - Returns: the best epoch's log line.
    public func finish(writer: inout ArtifactWriter) throws(TrainingError) -> EpochRecord? {
        let path = folder + "/model.safetensors"
        do {
            let bytes = try readFile(path)
            try parameters.load(try Safetensors.decode(bytes, source: path).tensors, source: path)
            try? FileManager.default.removeItem(atPath: checkpointPath)
            try? FileManager.default.removeItem(atPath: timingPath)
            // Both files are this run's, written atomically after the epochs that made them.
            writer.record(bytes, writtenTo: "model.safetensors")
            writer.record(try readFile(folder + "/log.jsonl"), writtenTo: "log.jsonl")
        } catch {
            throw .wrapping(error, folder: folder)
        }
        return log.first { $0.epoch == (state.best.bestEpoch ?? 0) + 1 }
    }

    /// The summary entries every training artifact has.
    public func summary(best: EpochRecord?) -> [String: JSONValue] {
        ["epochsRun": .number(Double(log.count)), "stoppedEarly": .bool(log.count < epochs),
         "bestEpoch": .number(Double((state.best.bestEpoch ?? 0) + 1)),
         "bestValLoss": .number(best?.valLoss ?? .nan), "bestValAccuracy": .number(best?.valAccuracy ?? .nan),
         "trainingSeconds": .number(epochSeconds.reduce(0, +)),
         "epochSeconds": .array(epochSeconds.map { .number($0) }),
         // Where the epochs' time went: training steps (batch assembly included), the validation
         // pass, and the rest (checkpoints, log, weights). Epochs resumed from an older timing file
         // have no parts and are left out of these.
         "epochStepSeconds": .array(stepSeconds.map { .number($0) }),
         "epochValidationSeconds": .array(validationSeconds.map { .number($0) })]
    }

    private func describe(_ record: EpochRecord, seconds: Double) -> String {
        var text = "epoch \(record.epoch) [\(label)]: loss \(formatFixed(record.loss, decimals: 4)), "
            + "val loss \(formatFixed(record.valLoss, decimals: 4)), val accuracy \(formatFixed(record.valAccuracy, decimals: 4))"
        if let dice = record.valDice { text += ", val Dice \(formatFixed(dice, decimals: 4))" }
        if let iou = record.valIoU { text += ", val IoU \(formatFixed(iou, decimals: 4))" }
        text += ", \(formatFixed(seconds, decimals: 0)) s"
        return text + (record.best ? " (best)" : "")
    }
}

/// Where a training run is: `step` steps done of epoch `epoch` (0-based; step 0 is the epoch boundary).
public struct TrainingPosition: Sendable, Equatable {
    public var epoch: Int
    public var step: Int

    public init(epoch: Int, step: Int) {
        self.epoch = epoch
        self.step = step
    }
}

/// One epoch's optimisation steps, its batch order already drawn: `step(i, optimizer, generators)`
/// runs step i (drawing augmentation and drop-connect from `generators`) and returns its loss.
public struct EpochSteps<O: Optimizer> {
    public let count: Int
    public let step: (Int, inout O, inout [String: SplitMix64]) throws(TrainingError) -> Double

    public init(count: Int, step: @escaping (Int, inout O, inout [String: SplitMix64]) throws(TrainingError) -> Double) {
        self.count = count
        self.step = step
    }
}

/// Keras' balanced class weights from the training labels: n / (K·n_c) over the K classes present
/// (scikit-learn `compute_class_weight('balanced')`), 0 for a class absent from the training split.
public func balancedClassWeights(_ labels: [Int], classes: Int = 3) -> [Float] {
    let counts = (0..<classes).map { c in labels.filter { $0 == c }.count }
    let present = counts.filter { $0 > 0 }.count
    return counts.map { $0 == 0 ? 0 : Float(Double(labels.count) / (Double(present) * Double($0))) }
}

/// The train and val rows of a dataset a training stage needs.
///
/// - Throws: `TrainingError.emptySplit` naming the dataset and the missing split.
public func trainingRows(_ dataset: Dataset) throws(TrainingError) -> (train: [DatasetRow], val: [DatasetRow]) {
    let train = dataset.rows.filter { $0.split == .train }, val = dataset.rows.filter { $0.split == .val }
    guard !train.isEmpty else { throw .emptySplit(dataset: dataset.folder, split: "training") }
    guard !val.isEmpty else { throw .emptySplit(dataset: dataset.folder, split: "validation") }
    return (train, val)
}

extension TrainingError {
    /// The typed error for anything thrown while writing a training artifact in `folder`.
    public static func wrapping(_ error: any Error, folder: String) -> TrainingError {
        switch error {
        case let error as TrainingError: error
        case let error as ArtifactError: .artifact(error)
        case let error as IngestError: .data(error)
        case let error as CheckpointError: .checkpoint(error)
        case let error as ImagingError: .data(.image(error))
        case let error as FileError: .artifact(.io(path: error.path, message: error.message))
        default: .artifact(.io(path: folder, message: "\(error)"))
        }
    }
}
