// The trained parts of the paper's ensembles (SPEC §6): the stacking meta-learner over the members'
// concatenated probabilities, and the model-level head over their concatenated DCL maps. (Keras'
// default initialisation: glorot_uniform kernels, zero biases.)

import Engine

/// Stacking (SPEC §6.1): `Dense(3K, relu)` → `Dense(3)` on the K members' concatenated softmax
/// outputs [N, 3K]; the softmax is applied by the caller (losses read probabilities).
public enum StackingHead {
    public static let hidden = "stacking_hidden"
    public static let output = "stacking_output"

    /// Class logits [N, classes] for `x` [N, inputs].
    public static func forward(_ layers: Layers, _ x: Var, classes: Int = 3) -> Var {
        let inputs = layers.tape.shape(x)[1]
        let h = layers.tape.relu(layers.dense(x, hidden, units: inputs, initializer: .glorotUniform))
        return layers.dense(h, output, units: classes, initializer: .glorotUniform)
    }

    /// The meta-learner's parameters for `inputs` = 3K member probabilities, initialised from `seed`.
    public static func parameters(seed: UInt64, inputs: Int, classes: Int = 3) -> ParameterStore {
        declareParameters(seed: seed, input: [1, inputs]) { layers, x in _ = forward(layers, x, classes: classes) }
    }
}

/// The model-level ensemble's head (SPEC §6.2): the members' DCL maps concatenated along channels
/// [N, h, w, 512·K] → `Conv2D(512, 1×1, relu)` ("NewConv") → global average pooling → `Dense(3)`;
/// the softmax is applied by the caller. Keras defaults: glorot_uniform kernels, zero biases.
public enum ModelLevelHead {
    public static let newConv = "new_conv"
    public static let output = "merged_predictions"
    public static let filters = 512

    /// Class logits [N, classes] for the concatenated maps `x`.
    public static func forward(_ layers: Layers, _ x: Var, classes: Int = 3) -> Var {
        forwardWithNewConv(layers, x, classes: classes).logits
    }

    /// The logits and NewConv's activation (after its ReLU; Grad-CAM's layer for model-level ensembles).
    public static func forwardWithNewConv(_ layers: Layers, _ x: Var, classes: Int = 3) -> (logits: Var, newConv: Var) {
        let h = layers.tape.relu(layers.conv(x, newConv, filters: filters, kernel: 1, bias: true, initializer: .glorotUniform))
        return (layers.dense(layers.tape.globalAveragePool(h), output, units: classes, initializer: .glorotUniform), h)
    }

    /// The head's parameters for `channels` = 512·K concatenated channels, initialised from `seed`.
    public static func parameters(seed: UInt64, channels: Int, classes: Int = 3) -> ParameterStore {
        declareParameters(seed: seed, input: [1, 1, 1, channels]) { layers, x in _ = forward(layers, x, classes: classes) }
    }
}
