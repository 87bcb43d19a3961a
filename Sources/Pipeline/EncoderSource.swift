// Where a training's EfficientNet-B0 encoder starts (SPEC §3, docs/WEIGHTS.md): a trained U-Net
// (the classifier's default), or a weights file — ours, with Keras names, or timm's
// `tf_efficientnet_b0` state dict as distributed, converted on loading.

import Artifacts
import Engine
import Foundation
import Models
import Training

/// The weights a training's encoder starts from.
public struct EncoderSource: Sendable {
    public enum Kind: Sendable { case unet, weights }
    public let kind: Kind
    /// The U-Net artifact folder, or the weights file.
    public let folder: String
    /// The U-Net's artifact key, or the weights file's SHA-256.
    public let key: String

    /// The U-Net artifact in `folder` (its model.safetensors).
    public init(folder: String, key: String) {
        self.kind = .unet
        self.folder = folder
        self.key = key
    }

    /// The weights file at `path`, keyed by its contents.
    ///
    /// - Throws: `ArtifactError.missingInput` naming the file when it cannot be read.
    public init(weightsFile path: String) throws(ArtifactError) {
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { throw .missingInput(message: "encoder weights \(error.path): \(error.message)") }
        self.kind = .weights
        self.folder = path
        self.key = SHA256.hex(bytes)
    }

    /// The settings' record of this start.
    public var initialization: String { (kind == .unet ? "unet:" : "weights:") + key }

    /// The file holding the weights.
    var path: String { kind == .unet ? folder + "/model.safetensors" : folder }

    /// How a log line names this start.
    var described: String { kind == .unet ? "the U-Net \(folder)" : "the weights \(folder)" }
}

/// Sets every EfficientNet-B0 encoder tensor `parameters` holds — stem to block5c for a classifier,
/// stem to top for a U-Net, batch-norm statistics included — from `source`; the rest (decoder,
/// head) keeps its initialisation.
///
/// - Returns: a line saying what was imported and skipped.
/// - Throws: `CheckpointError.mismatch` naming every encoder tensor the file lacks or holds in
///   another shape (under the file's own names).
@discardableResult
func initializeEncoder(_ parameters: ParameterStore, from source: EncoderSource) throws(TrainingError) -> String {
    let path = source.path
    do {
        let file = try Safetensors.decodeForeign(try readFile(path), source: path)
        let encoderNames = Set(TimmEfficientNetB0.mapping.map(\.ours)).intersection(parameters.names)
        var tensors = parameters.allTensors
        let report: String
        if TimmEfficientNetB0.isTimm(file.tensors.keys) {
            let imported = TimmEfficientNetB0.importing(file.tensors,
                                                        expected: Dictionary(uniqueKeysWithValues: encoderNames.map { ($0, parameters.value($0).shape) }))
            guard imported.missing.isEmpty, imported.misshaped.isEmpty else {
                throw CheckpointError.mismatch(source: path, missing: imported.missing, unused: [], misshaped: imported.misshaped)
            }
            tensors.merge(imported.tensors) { $1 }
            let skipped = file.skipped + imported.skipped
            report = "timm \(TimmEfficientNetB0.modelName) layout: \(imported.tensors.count) tensors imported, \(skipped.count) skipped"
        } else {
            let missing = encoderNames.filter { file.tensors[$0] == nil }.sorted()
            guard missing.isEmpty else { throw CheckpointError.mismatch(source: path, missing: missing, unused: [], misshaped: []) }
            for name in encoderNames { tensors[name] = file.tensors[name] }
            report = "\(encoderNames.count) tensors"
        }
        try parameters.load(tensors, source: path)
        return report
    } catch {
        throw .wrapping(error, folder: source.folder)
    }
}
