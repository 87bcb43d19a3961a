// One optimisation step of each network on a batch, shared by the training stages and `bench`.

import Engine
import SeededRandom

/// What a step reports.
public struct StepResult: Sendable {
    public var loss: Float
    /// Forward-pass floating-point operations of the step.
    public var forwardFlops: Double
}

/// Categorical cross-entropy of softmax(logits) against one-hot `labels`, mean over the batch.
public func categoricalCrossEntropy(_ tape: Tape, logits: Var, labels: Tensor) -> Var {
    let n = Float(labels.shape[0])
    return tape.scale(tape.sum(tape.multiply(tape.log(tape.softmax(logits)), tape.constant(labels))), -1 / n)
}

/// Binary cross-entropy of probabilities `p` against binary `masks`, mean over every pixel.
public func binaryCrossEntropy(_ tape: Tape, probabilities p: Var, masks: Tensor) -> Var {
    let y = tape.constant(masks)
    let notY = tape.constant(Tensor(shape: masks.shape, data: masks.data.map { 1 - $0 }))
    let oneMinusP = tape.add(tape.scale(p, -1), tape.constant(Tensor(shape: masks.shape, repeating: 1)))
    let ll = tape.add(tape.multiply(y, tape.log(p)), tape.multiply(notY, tape.log(oneMinusP)))
    return tape.scale(tape.mean(ll), -1)
}

/// A classifier training step with CCE and SGD.
public func classifierTrainStep(store: ParameterStore, optimizer: inout SGD, images: Tensor, labels: Tensor,
                                generator: inout SplitMix64) -> StepResult {
    let tape = Tape(recording: true, training: true, generator: SplitMix64(seed: generator.next()))
    let logits = Classifier.forward(Layers(tape: tape, store: store), tape.constant(images)).logits
    let loss = categoricalCrossEntropy(tape, logits: logits, labels: labels)
    tape.backward(from: loss)
    optimizer.step(store, gradients: tape.parameterGradients())
    return StepResult(loss: tape.value(loss).data[0], forwardFlops: tape.forwardFlops)
}

/// Classifier probabilities [N,3] without a tape for gradients.
public func classifierPredict(store: ParameterStore, images: Tensor) -> (probabilities: Tensor, forwardFlops: Double) {
    let tape = Tape(recording: false, training: false)
    let logits = Classifier.forward(Layers(tape: tape, store: store), tape.constant(images)).logits
    return (tape.value(tape.softmax(logits)), tape.forwardFlops)
}

/// A U-Net training step with BCE and Adam.
public func unetTrainStep(store: ParameterStore, optimizer: inout Adam, images: Tensor, masks: Tensor,
                          generator: inout SplitMix64) -> StepResult {
    let tape = Tape(recording: true, training: true, generator: SplitMix64(seed: generator.next()))
    let p = UNet.forward(Layers(tape: tape, store: store), tape.constant(images)).probabilities
    let loss = binaryCrossEntropy(tape, probabilities: p, masks: masks)
    tape.backward(from: loss)
    optimizer.step(store, gradients: tape.parameterGradients())
    return StepResult(loss: tape.value(loss).data[0], forwardFlops: tape.forwardFlops)
}
