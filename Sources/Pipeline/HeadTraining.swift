// Training of an ensemble's own part on top of frozen members — stacking's meta-learner and the
// model-level head share it (SPEC §6.1, §6.2): Keras SGD, balanced class weights, cross-entropy,
// callbacks on validation accuracy, the epoch loop's checkpoints and resume.

import Artifacts
import Engine
import Ensembles
import Foundation
import Losses
import Metrics
import Models
import SeededRandom
import Training

/// What differs between the two heads.
struct HeadTraining {
    /// Shown in progress lines and the log ("stacking", "model-level").
    let label: String
    /// Names the weights file's format.
    let format: String
    /// The stream of the shuffle generator.
    let shuffleStream: UInt64
    /// The training inputs of positions `indices` in the training list.
    let inputs: (_ indices: [Int]) throws(StageError) -> Tensor
    /// The head on the tape: logits for the inputs.
    let logits: (Layers, Var) -> Var
    /// Whether a parameter is trained (the model level's code-compat freezes NewConv).
    var trains: (String) -> Bool = { _ in true }
    /// The validation pass of the current weights.
    let validate: () -> Validation
}

/// Trains `parameters` on the training images with labels `labels` into `writer`'s artifact.
func trainHead(_ context: StageContext, _ head: HeadTraining, config: MetaLearnerConfig, parameters: ParameterStore, labels: [Int],
               resuming: Bool, writer: inout ArtifactWriter, continueAfter: (TrainingPosition) -> Bool) throws(StageError) {
    let seed = context.config.seed
    let sgd = SGD(learningRate: Float(config.learningRate), momentum: Float(config.momentum), nesterov: config.nesterov,
                  decay: Float(config.decay))
    var callbacks = config.callbacks
    callbacks.monitor = .valAccuracy
    let classWeights = config.classWeights ? balancedClassWeights(labels) : nil
    let batchSize = min(config.batchSize, labels.count)
    let stepsPerEpoch = labels.count / batchSize
    let folder = writer.folder
    do {
        var loop = try TrainingLoop(
            folder: folder, parameters: parameters, optimizer: sgd, epochs: config.epochs, callbacks: callbacks,
            generators: ["shuffle": SplitMix64(seed: seed, stream: head.shuffleStream)], label: head.label,
            weightsMetadata: ["format": head.format], resuming: resuming, sink: context.sink)
        try loop.run(writer: &writer, sink: context.sink, continueAfter: continueAfter, epoch: { _, generators in
            var order = Array(0..<labels.count)
            seededShuffle(&order, &generators["shuffle", default: SplitMix64(seed: seed, stream: head.shuffleStream)])
            return EpochSteps(count: stepsPerEpoch) { step, sgd, _ throws(TrainingError) in
                let indices = Array(order[(step * batchSize)..<((step + 1) * batchSize)])
                let x: Tensor
                do throws(StageError) { x = try head.inputs(indices) } catch { throw .artifact(.io(path: folder, message: error.description)) }
                var y = [Float](repeating: 0, count: indices.count * 3)
                for (b, i) in indices.enumerated() { y[b * 3 + labels[i]] = 1 }
                let tape = Tape(recording: true, training: true)
                let p = tape.softmax(head.logits(Layers(tape: tape, store: parameters), tape.constant(x)))
                let loss = classificationLoss(.cce, tape: tape, probabilities: p, labels: Tensor(shape: [indices.count, 3], data: y),
                                              classWeights: classWeights)
                let value = tape.value(loss).data[0]
                // A non-finite loss is reported by the loop before these gradients could reach the weights.
                if value.isFinite {
                    tape.backward(from: loss)
                    sgd.step(parameters, gradients: tape.parameterGradients().filter { head.trains($0.key) })
                }
                return Double(value)
            }
        }, validate: head.validate)
        _ = try loop.finish(writer: &writer)
    } catch {
        throw .wrapping(error, folder: folder)
    }
}
