// The five segmentation losses of SPEC §1.2, over the whole mini-batch flattened (batch-level, not
// per image), on the U-Net's sigmoid output p (and its logits z for the stable BCE), masks y ∈ {0,1}.

import Engine
import Foundation

/// The losses by their stable command-line names.
public enum SegmentationLoss: String, CaseIterable, Sendable, Codable {
    case bce
    case weightedBCEDice = "weighted-bce-dice"
    case focal
    case tversky
    case focalTversky = "focal-tversky"
}

/// Constants of SPEC §1.2 ([C]'s values).
public enum SegmentationConstants {
    public static let diceSmooth: Float = 1
    public static let focalAlpha: Float = 0.25
    public static let focalGamma: Float = 2
    /// Tversky α weights false negatives, β = 1 − α false positives.
    public static let tverskyAlpha: Float = 0.7
    public static let tverskySmooth: Float = 1e-10
    public static let focalTverskyGamma: Float = 0.75
}

/// Binary cross-entropy from logits, mean over every pixel: max(z,0) − z·y + log(1 + e^−|z|)
/// (TensorFlow's stable path, which Keras takes for a Sigmoid output in graph mode); dz = σ(z) − y.
public func binaryCrossEntropyFromLogits(_ tape: Tape, logits z: Var, masks: Tensor) -> Var {
    let zv = tape.value(z)
    let m = Float(zv.count)
    var total = 0.0
    for i in 0..<zv.count {
        let x = zv.data[i]
        total += Double(max(x, 0) - x * masks.data[i] + log1pf(expf(-Swift.abs(x))))
    }
    let out = Tensor(shape: [1], data: [Float(total / Double(m))])
    return tape.record(out) { tape, dy in
        let scale = dy.data[0] / m
        tape.accumulate(z) { dz in
            for i in 0..<zv.count { dz[i] += scale * (1 / (1 + expf(-zv.data[i])) - masks.data[i]) }
        }
    }
}

/// Σy·p, Σy·(1−p), Σ(1−y)·p: true positives, false negatives, false positives (soft).
private func softCounts(_ tape: Tape, _ p: Var, _ masks: Tensor) -> (tp: Var, fn: Var, fp: Var) {
    let y = tape.constant(masks), notY = tape.constant(Tensor(shape: masks.shape, data: masks.data.map { 1 - $0 }))
    let tp = tape.sum(tape.multiply(y, p))
    let fn = tape.sum(tape.multiply(y, tape.addScalar(tape.scale(p, -1), 1)))
    let fp = tape.sum(tape.multiply(notY, p))
    return (tp, fn, fp)
}

/// a / b for [1] tensors.
private func ratio(_ tape: Tape, _ a: Var, _ b: Var) -> Var {
    let av = tape.value(a).data[0], bv = tape.value(b).data[0]
    return tape.record(Tensor(shape: [1], data: [av / bv])) { tape, dy in
        tape.accumulate(a) { da in da[0] += dy.data[0] / bv }
        tape.accumulate(b) { db in db[0] -= dy.data[0] * av / (bv * bv) }
    }
}

/// Dice coefficient (2Σyp + 1)/(Σy + Σp + 1) over the batch.
public func diceCoefficient(_ tape: Tape, probabilities p: Var, masks: Tensor) -> Var {
    let y = tape.constant(masks)
    let numerator = tape.addScalar(tape.scale(tape.sum(tape.multiply(y, p)), 2), SegmentationConstants.diceSmooth)
    let denominator = tape.addScalar(tape.add(tape.sum(y), tape.sum(p)), SegmentationConstants.diceSmooth)
    return ratio(tape, numerator, denominator)
}

/// Tversky index (TP + s)/(TP + α·FN + (1−α)·FP + s).
public func tverskyIndex(_ tape: Tape, probabilities p: Var, masks: Tensor) -> Var {
    let (tp, fn, fp) = softCounts(tape, p, masks)
    let a = SegmentationConstants.tverskyAlpha, s = SegmentationConstants.tverskySmooth
    let denominator = tape.addScalar(tape.add(tp, tape.add(tape.scale(fn, a), tape.scale(fp, 1 - a))), s)
    return ratio(tape, tape.addScalar(tp, s), denominator)
}

/// The batch loss (a [1] tensor) of `loss`.
public func segmentationLoss(_ loss: SegmentationLoss, tape: Tape, probabilities p: Var, logits: Var, masks: Tensor) -> Var {
    switch loss {
    case .bce:
        return binaryCrossEntropyFromLogits(tape, logits: logits, masks: masks)
    case .weightedBCEDice:
        let dice = diceCoefficient(tape, probabilities: p, masks: masks)
        return tape.add(binaryCrossEntropyFromLogits(tape, logits: logits, masks: masks), tape.addScalar(tape.scale(dice, -1), 1))
    case .focal:
        // −mean[α(1−pt₁)^γ·log(pt₁+ε)] − mean[(1−α)·pt₀^γ·log(1−pt₀+ε)], pt₁ = p where y = 1 else 1,
        // pt₀ = p where y = 0 else 0; both means over all pixels.
        let a = SegmentationConstants.focalAlpha, g = SegmentationConstants.focalGamma
        let y = tape.constant(masks), notY = tape.constant(Tensor(shape: masks.shape, data: masks.data.map { 1 - $0 }))
        let pt1 = tape.add(tape.multiply(y, p), notY)      // p on lung, 1 elsewhere
        let pt0 = tape.multiply(notY, p)                   // p off lung, 0 on it
        let positive = tape.multiply(tape.pow(tape.addScalar(tape.scale(pt1, -1), 1), g), tape.log(tape.addScalar(pt1, kerasEpsilon), floor: 0))
        let negative = tape.multiply(tape.pow(pt0, g), tape.log(tape.addScalar(tape.scale(pt0, -1), 1 + kerasEpsilon), floor: 0))
        return tape.add(tape.scale(tape.mean(positive), -a), tape.scale(tape.mean(negative), -(1 - a)))
    case .tversky:
        return tape.addScalar(tape.scale(tverskyIndex(tape, probabilities: p, masks: masks), -1), 1)
    case .focalTversky:
        let complement = tape.addScalar(tape.scale(tverskyIndex(tape, probabilities: p, masks: masks), -1), 1)
        return tape.pow(complement, SegmentationConstants.focalTverskyGamma)
    }
}
