// `import-weights`: foreign EfficientNet-B0 checkpoints into ours (docs/WEIGHTS.md), and the
// reverse export the import is proven with (Tests/EngineTests/Fixtures/make_timm_fixture.py).

import Artifacts
import Engine
import Foundation
import Models

/// Converts timm's `tf_efficientnet_b0` state dict at `input` into our encoder checkpoint (Keras
/// names, stem to top) at `output`, written atomically. Nothing is written unless every encoder
/// tensor is there in its shape.
///
/// - Returns: what was imported and skipped (`missing` and `misshaped` are empty on return).
/// - Throws: `CheckpointError.mismatch` naming every missing and mis-shaped tensor under timm's names;
///   `.malformed` for a file that is not safetensors or not timm's layout.
public func importTimmWeights(input: String, output: String) throws(StageError) -> WeightImport {
    do {
        let bytes = try readFile(input)
        let file = try Safetensors.decodeForeign(bytes, source: input)
        guard TimmEfficientNetB0.isTimm(file.tensors.keys) else {
            throw CheckpointError.malformed(source: input, message: "no conv_stem.weight: not a timm EfficientNet state dict")
        }
        let encoder = EfficientNetB0.parameters(seed: 0)
        var imported = TimmEfficientNetB0.importing(file.tensors,
                                                    expected: Dictionary(uniqueKeysWithValues: encoder.names.map { ($0, encoder.value($0).shape) }))
        imported.skipped = (imported.skipped + file.skipped).sorted()
        guard imported.missing.isEmpty, imported.misshaped.isEmpty else {
            throw CheckpointError.mismatch(source: input, missing: imported.missing, unused: [], misshaped: imported.misshaped)
        }
        let metadata = ["format": "multiloss-cxr/efficientnet-b0-encoder", "source": "timm " + TimmEfficientNetB0.modelName,
                        "sourceSHA256": SHA256.hex(bytes)]
        try writeFileAtomically(try Safetensors.encode(imported.tensors, metadata: metadata), to: output)
        return imported
    } catch {
        throw .wrapping(error, folder: input)
    }
}

/// `EfficientNetB0.fullyRandomParameters(seed:)` under timm's names and layouts, written atomically
/// to `output`: the file the timm fixture script loads into `timm.create_model("tf_efficientnet_b0")`.
///
/// - Returns: the same weights under our names.
@discardableResult
public func exportRandomTimmWeights(seed: UInt64, output: String) throws(StageError) -> [String: Tensor] {
    let ours = EfficientNetB0.fullyRandomParameters(seed: seed).allTensors
    do {
        let bytes = try Safetensors.encode(TimmEfficientNetB0.exporting(ours),
                                           metadata: ["format": "pt", "note": "random EfficientNet-B0 encoder, seed \(seed), timm names"])
        try writeFileAtomically(bytes, to: output)
    } catch {
        throw .wrapping(error, folder: output)
    }
    return ours
}
