// The twelve classification losses of SPEC §4 on softmax probabilities p [N,K] and one-hot labels
// y [N,K], as tape expressions (their gradients come from the ops' backward passes). Keras
// semantics: ε = 1e-7; "clip" is clip(·, ε, 1 − ε); CCE renormalises p by its row sum first.
// Class weights enter per SPEC §4.0: per-sample losses (CCE, KL, hinge, label-smoothed CCE) give
// L = Σ_i w_c(i)·ℓ_i / N; scalar losses (focal variants, the calibrated losses, the negative-entropy
// loss) give L = mean_i(w_c(i))·L; the entropy regulariser of loss 2 is added unweighted.

import Engine
import Foundation

/// Keras `K.epsilon()`.
public let kerasEpsilon: Float = 1e-7

/// The twelve losses, by their stable command-line names.
public enum ClassificationLoss: String, CaseIterable, Sendable, Codable {
    case cce
    case cceEntropy = "cce-entropy"
    case kl
    case focal
    case hinge
    case smoothedCCE = "smoothed-cce"
    case smoothedFocal = "smoothed-focal"
    case calibratedCCE = "calibrated-cce"
    case calibratedKL = "calibrated-kl"
    case calibratedFocal = "calibrated-focal"
    case calibratedHinge = "calibrated-hinge"
    case calibratedNegativeEntropy = "calibrated-negative-entropy"

    /// The paper's name for the loss (Table 2).
    public var paperName: String {
        switch self {
        case .cce: "CCE"
        case .cceEntropy: "CCE + entropy regularization (β = 2)"
        case .kl: "KL divergence"
        case .focal: "Categorical focal (γ = 1)"
        case .hinge: "Categorical hinge"
        case .smoothedCCE: "Label-smoothed CCE (0.2)"
        case .smoothedFocal: "Label-smoothed focal (0.2)"
        case .calibratedCCE: "Calibrated CCE (λ = 10)"
        case .calibratedKL: "Calibrated KL (λ = 1)"
        case .calibratedFocal: "Calibrated focal (γ = λ = 1)"
        case .calibratedHinge: "Calibrated hinge (λ = 10)"
        case .calibratedNegativeEntropy: "Calibrated negative entropy (β = 1e-3, λ = 10)"
        }
    }
}

/// Hyper-parameters: the paper's by default; `codeCompat` gives the released code's (SPEC §9 rows 1–6).
public struct ClassificationLossSettings: Sendable, Codable, Equatable {
    /// Sign and use of loss 2's entropy regulariser.
    public enum EntropySign: String, Sendable, Codable { case paper, code, off }

    public var entropyBeta: Float = 2
    public var entropySign: EntropySign = .paper
    public var focalGamma: Float = 1
    public var focalAlpha: Float = 1
    public var smoothing: Float = 0.2
    public var smoothedFocalGamma: Float = 2
    public var calibratedCCELambda: Float = 10
    public var calibratedKLLambda: Float = 1
    public var calibratedFocalGamma: Float = 1
    public var calibratedFocalLambda: Float = 1
    public var calibratedHingeLambda: Float = 10
    public var negativeEntropyBeta: Float = 1e-3
    public var negativeEntropyLambda: Float = 10
    /// The DCA term without gradient, as the released code computes it (`np.abs` on a tensor).
    public var stopCalibrationGradient = false

    public init() {}

    /// The released code's behaviour: DCA with zero gradient, its λ and γ values, no entropy term.
    public static var codeCompat: ClassificationLossSettings {
        var s = ClassificationLossSettings()
        s.entropySign = .off
        s.calibratedCCELambda = 1
        s.calibratedFocalGamma = 2
        s.calibratedHingeLambda = 1
        s.negativeEntropyLambda = 1
        s.stopCalibrationGradient = true
        return s
    }
}

/// Per-sample terms and scalar losses on one batch.
public struct ClassificationLossTerms {
    let tape: Tape
    let p: Var
    let y: Tensor
    let n: Int
    let k: Int

    public init(tape: Tape, probabilities: Var, labels: Tensor) {
        self.tape = tape
        p = probabilities
        y = labels
        n = labels.shape[0]
        k = labels.shape[1]
    }

    private var yVar: Var { tape.constant(y) }

    /// ℓ_i = −Σ_k t_ik·log clip(p_ik/Σp_i) for targets t (y or smoothed y) [N].
    public func crossEntropy(targets: Tensor) -> Var {
        let q = tape.clip(tape.normalizeLastAxis(p), kerasEpsilon, 1 - kerasEpsilon)
        return tape.scale(tape.sumLastAxis(tape.multiply(tape.constant(targets), tape.log(q))), -1)
    }

    /// Keras KLDivergence per sample: Σ ŷ·log(ŷ/q), ŷ = clip(y, ε, 1), q = clip(p, ε, 1) [N].
    public func klDivergence() -> Var {
        let yhat = Tensor(shape: y.shape, data: y.data.map { min(max($0, kerasEpsilon), 1) })
        let q = tape.clip(p, kerasEpsilon, 1)
        let logRatio = tape.subtract(tape.constant(Tensor(shape: y.shape, data: yhat.data.map { logf($0) })), tape.log(q))
        return tape.sumLastAxis(tape.multiply(tape.constant(yhat), logRatio))
    }

    /// Σ_k α·(1 − q)^γ·(−t·log q), q = clip(p) [N] (categorical focal; t = y or smoothed y).
    public func focal(targets: Tensor, gamma: Float, alpha: Float) -> Var {
        let q = tape.clip(p, kerasEpsilon, 1 - kerasEpsilon)
        let modulation = tape.pow(tape.addScalar(tape.scale(q, -1), 1), gamma)
        let ce = tape.scale(tape.multiply(tape.constant(targets), tape.log(q)), -alpha)
        return tape.sumLastAxis(tape.multiply(modulation, ce))
    }

    /// max(0, 1 + max_k((1 − y)·p) − Σ_k y·p) [N] (Keras CategoricalHinge).
    public func hinge() -> Var {
        let notY = tape.constant(Tensor(shape: y.shape, data: y.data.map { 1 - $0 }))
        let negative = tape.maxLastAxis(tape.multiply(notY, p)).max
        let positive = tape.sumLastAxis(tape.multiply(yVar, p))
        return tape.relu(tape.addScalar(tape.subtract(negative, positive), 1))
    }

    /// H̄ = (1/N)·Σ_i Σ_k −p·log clip(p/Σp): [C]'s `CategoricalCrossentropy()(p, p)`, gradient through both.
    public func meanEntropy() -> Var {
        tape.mean(tape.scale(tape.sumLastAxis(tape.multiply(p, tape.log(tape.clip(tape.normalizeLastAxis(p),
                                                                                      kerasEpsilon, 1 - kerasEpsilon)))), -1))
    }

    /// diff = |acc_B − conf_B| (SPEC §4.1, the DCA term): acc_B is piecewise constant; the gradient
    /// flows through conf_B = mean_i max_k p_ik, unless `stopGradient`.
    public func calibrationGap(stopGradient: Bool) -> Var {
        let top = tape.maxLastAxis(p)
        let truth = (0..<n).map { i in (0..<k).max { y.data[i * k + $0] < y.data[i * k + $1] } ?? 0 }
        let accuracy = Float(zip(top.argmax, truth).filter { $0 == $1 }.count) / Float(n)
        let confidence = tape.mean(top.max)
        let gap = tape.abs(tape.addScalar(tape.scale(confidence, -1), accuracy))
        return stopGradient ? tape.stopGradient(gap) : gap
    }

    /// 0.8·y + 0.2/K (Keras label_smoothing).
    public func smoothed(_ amount: Float) -> Tensor {
        Tensor(shape: y.shape, data: y.data.map { $0 * (1 - amount) + amount / Float(k) })
    }
}

/// The batch loss (a [1] tensor) of `loss` on probabilities `p` and one-hot `labels`.
///
/// - Parameter classWeights: per-class weights (balanced, SPEC §0), applied per §4.0; nil for none
///   (validation losses are unweighted).
public func classificationLoss(_ loss: ClassificationLoss, tape: Tape, probabilities p: Var, labels: Tensor,
                               classWeights: [Float]?, settings: ClassificationLossSettings = ClassificationLossSettings()) -> Var {
    let t = ClassificationLossTerms(tape: tape, probabilities: p, labels: labels)
    let n = labels.shape[0], k = labels.shape[1]
    let sampleWeights: [Float] = (0..<n).map { i in
        guard let classWeights else { return 1 }
        let c = (0..<k).max { labels.data[i * k + $0] < labels.data[i * k + $1] } ?? 0
        return classWeights[c]
    }
    /// Σ w_i ℓ_i / N.
    func perSample(_ l: Var) -> Var {
        tape.scale(tape.sum(tape.multiply(l, tape.constant(Tensor(shape: [n], data: sampleWeights)))), 1 / Float(n))
    }
    /// mean(w)·L.
    func scalar(_ l: Var) -> Var { tape.scale(l, sampleWeights.reduce(0, +) / Float(n)) }
    func calibrated(_ base: Var, _ lambda: Float) -> Var {
        scalar(tape.add(tape.mean(base), tape.scale(t.calibrationGap(stopGradient: settings.stopCalibrationGradient), lambda)))
    }
    switch loss {
    case .cce:
        return perSample(t.crossEntropy(targets: labels))
    case .cceEntropy:
        let ce = perSample(t.crossEntropy(targets: labels))
        // Keras activity regulariser R = f(p)/N, unweighted; f = β·mean_{i,k}(p·log p) (the paper's
        // sign: rewards spread-out predictions) or its negation ([C]'s intended sign).
        let plogp = tape.mean(tape.multiply(p, tape.log(p)))
        switch settings.entropySign {
        case .off: return ce
        case .paper: return tape.add(ce, tape.scale(plogp, settings.entropyBeta / Float(n)))
        case .code: return tape.add(ce, tape.scale(plogp, -settings.entropyBeta / Float(n)))
        }
    case .kl:
        return perSample(t.klDivergence())
    case .focal:
        return scalar(tape.mean(t.focal(targets: labels, gamma: settings.focalGamma, alpha: settings.focalAlpha)))
    case .hinge:
        return perSample(t.hinge())
    case .smoothedCCE:
        return perSample(t.crossEntropy(targets: t.smoothed(settings.smoothing)))
    case .smoothedFocal:
        // [C] `smoothfocal`: 0.9 for the true class and 0.1 for the others (0.8·y + 0.2/2).
        let targets = Tensor(shape: labels.shape, data: labels.data.map { $0 * (1 - settings.smoothing) + settings.smoothing / 2 })
        return scalar(tape.mean(t.focal(targets: targets, gamma: settings.smoothedFocalGamma, alpha: 1)))
    case .calibratedCCE:
        return calibrated(t.crossEntropy(targets: labels), settings.calibratedCCELambda)
    case .calibratedKL:
        return calibrated(t.klDivergence(), settings.calibratedKLLambda)
    case .calibratedFocal:
        return calibrated(t.focal(targets: labels, gamma: settings.calibratedFocalGamma, alpha: 1), settings.calibratedFocalLambda)
    case .calibratedHinge:
        return calibrated(t.hinge(), settings.calibratedHingeLambda)
    case .calibratedNegativeEntropy:
        let ce = tape.mean(t.crossEntropy(targets: labels))
        let withEntropy = tape.subtract(ce, tape.scale(t.meanEntropy(), settings.negativeEntropyBeta))
        let gap = tape.scale(t.calibrationGap(stopGradient: settings.stopCalibrationGradient), settings.negativeEntropyLambda)
        return scalar(tape.add(withEntropy, gap))
    }
}
