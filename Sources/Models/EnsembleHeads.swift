// The trained parts of the paper's ensembles (SPEC §6): the stacking meta-learner over the members'
// concatenated probabilities. (Keras' default Dense initialisation: glorot_uniform kernels, zero
// biases.)

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
