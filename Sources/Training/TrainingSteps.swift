// One optimisation step of each network on a batch, shared by the training stages and `bench`.

import Engine
import Losses
import Models
import SeededRandom

/// What a step reports.
public struct StepResult: Sendable {
    public var loss: Float
    /// Forward-pass floating-point operations of the step.
    public var forwardFlops: Double
}

/// A classifier training step: softmax, `loss` (with class weights per SPEC §4.0), backward, SGD.
/// A non-finite loss is returned without touching the weights, so the caller can stop on it.
public func classifierTrainStep(store: ParameterStore, optimizer: inout SGD, images: Tensor, labels: Tensor,
                                generator: inout SplitMix64, loss kind: ClassificationLoss = .cce,
                                classWeights: [Float]? = nil, settings: ClassificationLossSettings = ClassificationLossSettings(),
                                options: ModelOptions = ModelOptions()) -> StepResult {
    let tape = Tape(recording: true, training: true, generator: SplitMix64(seed: generator.next()))
    let logits = Classifier.forward(Layers(tape: tape, store: store, options: options), tape.constant(images)).logits
    let loss = classificationLoss(kind, tape: tape, probabilities: tape.softmax(logits), labels: labels,
                                  classWeights: classWeights, settings: settings)
    let value = tape.value(loss).data[0]
    if value.isFinite {
        tape.backward(from: loss)
        optimizer.step(store, gradients: tape.parameterGradients())
    }
    return StepResult(loss: value, forwardFlops: tape.forwardFlops)
}

/// Classifier probabilities [N,3] without a tape for gradients.
public func classifierPredict(store: ParameterStore, images: Tensor) -> (probabilities: Tensor, forwardFlops: Double) {
    let tape = Tape(recording: false, training: false)
    let logits = Classifier.forward(Layers(tape: tape, store: store), tape.constant(images)).logits
    return (tape.value(tape.softmax(logits)), tape.forwardFlops)
}

/// A U-Net training step: `loss` over the batch (SPEC §1.2), backward, Adam. A non-finite loss is
/// returned without touching the weights.
public func unetTrainStep(store: ParameterStore, optimizer: inout Adam, images: Tensor, masks: Tensor,
                          generator: inout SplitMix64, loss kind: SegmentationLoss = .bce,
                          options: ModelOptions = ModelOptions()) -> StepResult {
    let tape = Tape(recording: true, training: true, generator: SplitMix64(seed: generator.next()))
    let (probabilities, logits) = UNet.forward(Layers(tape: tape, store: store, options: options), tape.constant(images))
    let loss = segmentationLoss(kind, tape: tape, probabilities: probabilities, logits: logits, masks: masks)
    let value = tape.value(loss).data[0]
    if value.isFinite {
        tape.backward(from: loss)
        optimizer.step(store, gradients: tape.parameterGradients())
    }
    return StepResult(loss: value, forwardFlops: tape.forwardFlops)
}

/// U-Net lung probabilities [N,H,W,1] in inference mode, and `loss` on `masks` when given.
public func unetPredict(store: ParameterStore, images: Tensor, masks: Tensor? = nil,
                        loss kind: SegmentationLoss = .bce) -> (probabilities: Tensor, loss: Float?) {
    let tape = Tape(recording: false, training: false)
    let (probabilities, logits) = UNet.forward(Layers(tape: tape, store: store), tape.constant(images))
    let loss = masks.map { tape.value(segmentationLoss(kind, tape: tape, probabilities: probabilities, logits: logits, masks: $0)).data[0] }
    return (tape.value(probabilities), loss)
}
