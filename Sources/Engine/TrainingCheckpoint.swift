// A training checkpoint: everything needed to resume a run so that it ends byte-identical to an
// uninterrupted one (DESIGN §4) — weights and batch-norm state, optimiser moments and step, the
// callbacks' state, every random stream and the data cursor — in one safetensors file. Tensors:
// the parameters by name, optimiser slots as "optimizer/<slot>/<parameter>"; the rest is JSON in
// the metadata under "training_state".

import Foundation
import SeededRandom

/// The scalar state of a training run.
public struct TrainingState: Codable, Sendable, Equatable {
    /// Epochs completed.
    public var epoch: Int
    /// Batches consumed in the current epoch (the data cursor).
    public var batchInEpoch: Int
    public var learningRate: Float
    public var plateau: ReduceLROnPlateau
    public var earlyStopping: EarlyStopping
    public var best: BestCheckpoint
    /// Every random stream of the run by purpose ("shuffle", "augment", "dropConnect").
    public var generators: [String: SplitMix64]
    /// Stopped inside an epoch (`batchInEpoch` > 0): the streams as they were when the epoch began
    /// (its batch order is drawn again from them) and the sum of its step losses so far.
    public var epochStartGenerators: [String: SplitMix64]?
    public var epochLossSum: Double?

    public init(epoch: Int, batchInEpoch: Int, learningRate: Float, plateau: ReduceLROnPlateau,
                earlyStopping: EarlyStopping, best: BestCheckpoint, generators: [String: SplitMix64]) {
        self.epoch = epoch
        self.batchInEpoch = batchInEpoch
        self.learningRate = learningRate
        self.plateau = plateau
        self.earlyStopping = earlyStopping
        self.best = best
        self.generators = generators
    }
}

public enum TrainingCheckpoint {
    /// Callbacks start with best = +∞, which JSON spells as a string here: "Infinity", "-Infinity"
    /// and "NaN" as in every other JSON the tool writes; checkpoints written before that spelt them
    /// "inf", "-inf", "nan" and still resume.
    private static func decodeState(_ json: String) -> TrainingState? {
        for (infinity, minus, nan) in [("Infinity", "-Infinity", "NaN"), ("inf", "-inf", "nan")] {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: infinity, negativeInfinity: minus, nan: nan)
            if let state = try? decoder.decode(TrainingState.self, from: Data(json.utf8)) { return state }
        }
        return nil
    }

    public static let format = "multiloss-cxr/training-checkpoint"
    public static let version = "1"

    /// The checkpoint bytes.
    public static func encode(store: ParameterStore, optimizer: OptimizerState, state: TrainingState,
                              metadata: [String: String] = [:]) throws -> [UInt8] {
        var tensors = store.allTensors
        for (slot, values) in optimizer.slots { tensors["optimizer/" + slot] = Tensor(shape: [values.count], data: values) }
        var meta = metadata
        meta["format"] = format
        meta["version"] = version
        meta["optimizer_iterations"] = String(optimizer.iterations)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        meta["training_state"] = String(decoding: try encoder.encode(state), as: UTF8.self)
        return try Safetensors.encode(tensors, metadata: meta)
    }

    /// Restores `store` from checkpoint bytes and returns the optimiser and training state.
    ///
    /// - Throws: `CheckpointError` naming `source`: not a training checkpoint, another version,
    ///   or tensors that do not fit the model.
    public static func decode(_ bytes: [UInt8], source: String, into store: ParameterStore)
        throws(CheckpointError) -> (optimizer: OptimizerState, state: TrainingState, metadata: [String: String])
    {
        let (tensors, metadata) = try Safetensors.decode(bytes, source: source)
        guard metadata["format"] == format else {
            throw .malformed(source: source, message: "not a training checkpoint (format '\(metadata["format"] ?? "none")'); "
                             + "weights-only files cannot resume training")
        }
        guard metadata["version"] == version else {
            throw .malformed(source: source, message: "checkpoint version \(metadata["version"] ?? "?"), this build reads \(version); "
                             + "restart the stage with --force")
        }
        guard let iterations = metadata["optimizer_iterations"].flatMap(Int.init),
              let json = metadata["training_state"],
              let state = decodeState(json) else {
            throw .malformed(source: source, message: "the training state in the metadata is missing or unreadable")
        }
        try store.load(tensors.filter { !$0.key.hasPrefix("optimizer/") }, source: source)
        var optimizer = OptimizerState()
        optimizer.iterations = iterations
        for (name, tensor) in tensors where name.hasPrefix("optimizer/") {
            optimizer.slots[String(name.dropFirst("optimizer/".count))] = tensor.data
        }
        return (optimizer, state, metadata)
    }
}
