// Stacking's meta-learner (SPEC §6.1): `Dense(3K, relu) → Dense(3, softmax)` on the K members'
// concatenated probabilities, the members frozen (their predictions computed once, in inference
// mode, by `classify-train predict`), trained on the training split with Keras SGD, balanced class
// weights and callbacks on validation accuracy, resumable like every training stage.

import Artifacts
import Datasets
import Engine
import Ensembles
import Foundation
import Losses
import Metrics
import Models
import SeededRandom
import Training

/// The members' probabilities of some images side by side: row i holds member 1's three classes,
/// then member 2's, … (the Concatenate of the released code).
struct StackingFeatures {
    let x: [Float]
    let width: Int
    let labels: [Int]
    let ids: [String]

    init(_ members: [Predictions], rows: [Int]) {
        width = 3 * members.count
        var x: [Float] = []
        x.reserveCapacity(rows.count * width)
        for i in rows {
            for member in members { for k in 0..<3 { x.append(Float(member.p(i, k))) } }
        }
        self.x = x
        labels = rows.map { members[0].labels[$0] }
        ids = rows.map { members[0].ids[$0] }
    }

    var count: Int { labels.count }

    /// Inputs [B, 3K] and one-hot labels [B, 3] of `indices`.
    func batch(_ indices: [Int]) -> (x: Tensor, y: Tensor) {
        var x: [Float] = [], y = [Float](repeating: 0, count: indices.count * 3)
        x.reserveCapacity(indices.count * width)
        for (b, i) in indices.enumerated() {
            x.append(contentsOf: self.x[(i * width)..<((i + 1) * width)])
            y[b * 3 + labels[i]] = 1
        }
        return (Tensor(shape: [indices.count, width], data: x), Tensor(shape: [indices.count, 3], data: y))
    }
}

/// The meta-learner's probabilities for `features`, and the mean unweighted cross-entropy.
func stackingPredict(_ parameters: ParameterStore, _ features: StackingFeatures) -> (predictions: Predictions, loss: Float) {
    let (x, y) = features.batch(Array(0..<features.count))
    let tape = Tape(recording: false, training: false)
    let p = tape.softmax(StackingHead.forward(Layers(tape: tape, store: parameters), tape.constant(x)))
    let loss = tape.value(classificationLoss(.cce, tape: tape, probabilities: p, labels: y, classWeights: nil)).data[0]
    var probabilities = tape.value(p).data.map(Double.init)
    for i in 0..<features.count {
        let sum = probabilities[(3 * i)..<(3 * i + 3)].reduce(0, +)
        for k in 0..<3 { probabilities[3 * i + k] /= sum }
    }
    return (Predictions(ids: features.ids, labels: features.labels, probabilities: probabilities, classes: 3), loss)
}

/// Every member's predictions for every image of `dataset` (its `classify-train predict`
/// artifacts, made or reused), aligned.
func memberPredictionsOnAllImages(_ context: StageContext, members: [EnsembleMember], data: (name: String, dataset: Dataset, key: String))
    throws(StageError) -> [Predictions] {
    var all: [Predictions] = []
    for member in members {
        guard let manifest = context.store.completeManifest(at: member.folder) else {
            throw .artifact(.incomplete(path: member.folder, message: "member '\(member.loss.rawValue)' is no longer complete"))
        }
        let predicted = try runClassifyPredict(context, model: (member.folder, manifest), data: (data.dataset, data.key),
                                               variant: "\(member.loss.rawValue)-on-\(data.name)")
        do { all.append(try readPredictions(path: predicted.folder + "/predictions.csv").predictions) } catch {
            throw .artifact(.missingInput(message: error.description))
        }
    }
    do { return try aligned(all, names: members.map(\.loss.rawValue)) } catch {
        throw .data(.invalidSource(path: data.dataset.folder, message: error.description))
    }
}

/// Trains the meta-learner into `writer`'s artifact (weights, epoch log) on the members' predictions
/// for the training split, and returns its predictions for the validation and test splits.
func trainStacking(_ context: StageContext, members: [EnsembleMember], data: (name: String, dataset: Dataset, key: String),
                   resuming: Bool, writer: inout ArtifactWriter) throws(StageError) -> (val: Predictions, test: Predictions?) {
    let all = try memberPredictionsOnAllImages(context, members: members, data: data)
    return try fitStacking(context, members: all, splits: data.dataset.rows.map(\.split), resuming: resuming, writer: &writer)
}

/// The meta-learner trained on `members` (every image's predictions by each member, aligned; image i
/// belongs to `splits[i]`).
///
/// - Parameter continueAfter: asked after every step and at each epoch's end; false writes the checkpoint
///   there and stops with an interruption the next run resumes from.
func fitStacking(_ context: StageContext, members all: [Predictions], splits: [Split], resuming: Bool, writer: inout ArtifactWriter,
                 continueAfter: (TrainingPosition) -> Bool = { _ in true }) throws(StageError) -> (val: Predictions, test: Predictions?) {
    let config = context.config.ensemble.stacking, seed = context.config.seed
    func features(_ split: Split) -> StackingFeatures { StackingFeatures(all, rows: splits.indices.filter { splits[$0] == split }) }
    let train = features(.train), val = features(.val), test = features(.test)
    guard train.count > 0 else { throw .emptySplit(dataset: writer.folder, split: "training") }
    guard val.count > 0 else { throw .emptySplit(dataset: writer.folder, split: "validation") }

    let parameters = StackingHead.parameters(seed: seed, inputs: train.width)
    let head = HeadTraining(label: "stacking", format: "multiloss-cxr/stacking", shuffleStream: 0x57AC,
                            inputs: { indices throws(StageError) in train.batch(indices).x },
                            logits: { layers, x in StackingHead.forward(layers, x) },
                            validate: {
                                let (predictions, loss) = stackingPredict(parameters, val)
                                return Validation(loss: loss, accuracy: Ensembles.accuracy(predictions))
                            })
    try trainHead(context, head, config: config, parameters: parameters, labels: train.labels, resuming: resuming, writer: &writer,
                  continueAfter: continueAfter)
    return (stackingPredict(parameters, val).predictions, test.count > 0 ? stackingPredict(parameters, test).predictions : nil)
}
