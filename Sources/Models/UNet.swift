// The U-Net of qubvel `segmentation_models` 1.0.1 on the EfficientNet-B0 encoder (SPEC §1.1):
// skips at block6a/4a/3a/2a expand activations, five "upsampling" decoder stages (nearest ×2,
// concatenate, twice Conv3×3 (no bias, he_uniform) → BN → ReLU) with 256/128/64/32/16 filters, and
// a 3×3 `final_conv` with bias (glorot_uniform) → sigmoid, classes = 1.

import Engine

public enum UNet {
    public static let skips = ["block6a_expand_activation", "block4a_expand_activation",
                               "block3a_expand_activation", "block2a_expand_activation"]
    public static let decoderFilters = [256, 128, 64, 32, 16]

    /// Lung probabilities [N,H,W,1] for `x` [N,H,W,3] (H, W divisible by 32).
    ///
    /// - Returns: the sigmoid output and the logits before it (losses use the stable form).
    public static func forward(_ layers: Layers, _ x: Var) -> (probabilities: Var, logits: Var) {
        let tape = layers.tape
        let features = EfficientNetB0.encode(layers, x, outputs: Set(skips + ["top_activation"]))
        guard var h = features["top_activation"] else { preconditionFailure("encoder returned no top_activation") }
        for (stage, filters) in decoderFilters.enumerated() {
            let mark = tape.nodeCount, stageInput = h
            // The first convolution reads the upsampled map and the skip in place.
            var parts = [ConvPart.upsampled2x(h)]
            if stage < skips.count, let skip = features[skips[stage]] { parts.append(.node(skip)) }
            for part in ["a", "b"] {
                let name = "decoder_stage\(stage)\(part)"
                h = layers.conv(concatenating: part == "a" ? parts : [.node(h)], name + "_conv", filters: filters, kernel: 3,
                                bias: false, initializer: .heUniform)
                h = layers.batchNorm(h, name + "_bn", activation: .relu)
            }
            tape.releaseIntermediates(since: mark, keeping: [h])
            tape.release([stageInput])
            if stage < skips.count, let skip = features[skips[stage]] { tape.release([skip]) }
        }
        let logits = layers.conv(h, "final_conv", filters: 1, kernel: 3, bias: true, initializer: .glorotUniform)
        return (tape.sigmoid(logits), logits)
    }

    /// Every U-Net parameter and batch-norm statistic under its Keras name, initialised from `seed`.
    public static func parameters(seed: UInt64) -> ParameterStore {
        declareParameters(seed: seed) { layers, x in _ = forward(layers, x) }
    }
}

/// The classifier of SPEC §3: the encoder truncated at `block5c_add`, ZeroPadding2D, a 3×3 valid
/// Conv2D(512, ReLU, bias) named `extra_conv_eff0` (the "deepest convolutional layer"), global
/// average pooling and Dense(3) `predictions`.
public enum Classifier {
    public static let truncation = "block5c"
    public static let dcl = "extra_conv_eff0"

    /// Class logits [N,3], and the DCL activation (for Grad-CAM and model-level ensembles).
    public static func forward(_ layers: Layers, _ x: Var, classes: Int = 3) -> (logits: Var, dcl: Var) {
        let (logits, dcl, _) = forward(layers, x, classes: classes, capturing: [])
        return (logits, dcl)
    }

    /// Like `forward`, also handing back the encoder activations named in `capturing` (any of
    /// `layerNames` but the DCL, which is always returned).
    public static func forward(_ layers: Layers, _ x: Var, classes: Int = 3,
                               capturing names: Set<String>) -> (logits: Var, dcl: Var, captured: [String: Var]) {
        let tape = layers.tape
        let features = EfficientNetB0.encode(layers, x, outputs: names.union(["block5c_add"]), stopAfter: truncation,
                                             rebuildingExpanded: false)
        guard let trunk = features["block5c_add"] else { preconditionFailure("encoder returned no block5c_add") }
        let dcl = tape.relu(layers.conv(tape.zeroPad(trunk), dcl, filters: 512, kernel: 3, padding: .valid,
                                        bias: true, initializer: .glorotUniform))
        let logits = layers.dense(tape.globalAveragePool(dcl), "predictions", units: classes, initializer: .glorotUniform)
        return (logits, dcl, features.filter { names.contains($0.key) })
    }

    /// The classifier's named activations in order: the encoder's (Keras names, up to `block5c_add`)
    /// and the DCL `extra_conv_eff0` (after its ReLU).
    public static var layerNames: [String] {
        var names = ["stem_activation"]
        for (s, stage) in EfficientNetB0.stages.enumerated() {
            for r in 0..<stage.repeats {
                let block = EfficientNetB0.blockName(stage: s, index: r)
                if stage.expandRatio != 1 { names.append(block + "_expand_activation") }
                names.append(block + "_activation")
                if r > 0 { names.append(block + "_add") }
                if block == truncation { return names + [dcl] }
            }
        }
        return names + [dcl]
    }

    /// Every classifier parameter and batch-norm statistic under its Keras name, initialised from
    /// `seed` (the same values whatever the input size the classifier later runs at).
    public static func parameters(seed: UInt64, classes: Int = 3) -> ParameterStore {
        declareParameters(seed: seed) { layers, x in _ = forward(layers, x, classes: classes) }
    }
}

/// A store holding every parameter `model` declares. Layers declare their parameters as they are
/// applied (shapes follow the input channels), so the model is applied once, without a tape for
/// gradients, to the smallest input it accepts (one 32×32 image by default); the parameters'
/// values depend only on `seed` and their names, never on that input.
func declareParameters(seed: UInt64, input: [Int] = [1, 32, 32, 3], _ model: (Layers, Var) -> Void) -> ParameterStore {
    let store = ParameterStore(seed: seed)
    let tape = Tape(recording: false, training: false)
    model(Layers(tape: tape, store: store), tape.constant(Tensor(zeros: input)))
    return store
}
