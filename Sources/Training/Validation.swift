// Validation passes of both networks in inference mode: the loss as Keras reports it (batch
// losses averaged by batch size) and the numbers the epoch log records; the classifier's also hands
// back its predictions and, on request, its DCL maps.

import Engine
import Losses
import Metrics
import Models
import SeededRandom

/// The unweighted validation loss (batch losses averaged by batch size) and the predictions, and
/// with `features` the DCL activations [N,h,w,512] (SPEC §3) the model-level ensembles combine.
public func evaluateClassifier(_ parameters: ParameterStore, images: ClassificationImages, loss: ClassificationLoss,
                               settings: ClassificationLossSettings, batchSize: Int,
                               features: Bool = false) -> (loss: Float, predictions: Predictions, features: Tensor?) {
    var total = 0.0
    var probabilities: [Double] = []
    var dcl: [Float] = [], dclShape: [Int] = []
    var start = 0
    while start < images.count {
        let indices = Array(start..<min(start + batchSize, images.count))
        let (x, y) = images.batch(indices)
        let tape = Tape(recording: false, training: false)
        let output = Classifier.forward(Layers(tape: tape, store: parameters), tape.constant(x))
        let p = tape.softmax(output.logits)
        let value = tape.value(classificationLoss(loss, tape: tape, probabilities: p, labels: y, classWeights: nil, settings: settings))
        total += Double(value.data[0]) * Double(indices.count)
        probabilities += tape.value(p).data.map(Double.init)
        if features {
            let maps = tape.value(output.dcl)
            dcl += maps.data
            dclShape = [images.count] + maps.shape.dropFirst()
        }
        start += batchSize
    }
    // Renormalise in Double so each row sums to 1 within the prediction file's tolerance.
    for i in 0..<images.count {
        let sum = probabilities[(3 * i)..<(3 * i + 3)].reduce(0, +)
        for k in 0..<3 { probabilities[3 * i + k] /= sum }
    }
    return (Float(total / Double(images.count)),
            Predictions(ids: images.ids, labels: images.labels, probabilities: probabilities, classes: 3),
            features ? Tensor(shape: dclShape, data: dcl) : nil)
}

/// The validation pass as Keras reports it: the loss and the batch-level Dice, IoU and binary
/// accuracy of SPEC §1.2, each averaged over batches weighted by batch size.
public func validateSegmenter(_ parameters: ParameterStore, images: SegmentationImages, loss: SegmentationLoss, batchSize: Int) -> Validation {
    var totals = (loss: 0.0, dice: 0.0, iou: 0.0, accuracy: 0.0)
    var unused = SplitMix64(seed: 0)
    var start = 0
    while start < images.count {
        let indices = Array(start..<min(start + batchSize, images.count))
        let (x, y) = images.batch(indices, generator: &unused)
        let (p, value) = unetPredict(store: parameters, images: x, masks: y, loss: loss)
        var intersection = 0.0, sumY = 0.0, sumP = 0.0, correct = 0.0
        for i in 0..<p.count {
            let pi = Double(p.data[i]), yi = Double(y.data[i])
            intersection += pi * yi
            sumY += yi
            sumP += pi
            correct += (pi > 0.5) == (yi > 0.5) ? 1 : 0
        }
        let n = Double(indices.count)
        totals.loss += Double(value ?? .nan) * n
        totals.dice += (2 * intersection + 1) / (sumY + sumP + 1) * n
        totals.iou += (intersection + 1) / (sumY + sumP - intersection + 1) * n
        totals.accuracy += correct / Double(p.count) * n
        start += batchSize
    }
    let n = Double(images.count)
    return Validation(loss: Float(totals.loss / n), accuracy: totals.accuracy / n, dice: totals.dice / n, iou: totals.iou / n)
}
