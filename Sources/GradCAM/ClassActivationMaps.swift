// Class-activation maps (SPEC §7): from a layer's activations A [N, h, w, C] and the gradient G of a
// target score with respect to them, one map per image.
//   gradcam        α_c = mean over (h, w) of G; map = ReLU(Σ_c α_c·A_c)  (Selvaraju et al. 2017;
//                  the target score is the class logit)
//   gradcam-paper  the released code's: G of the target's softmax probability, α_c as above, map =
//                  ReLU(mean over c of α_c·A_c), divided by its maximum (1e-10 when that is 0)
//   hirescam       map = ReLU(Σ_c G_c·A_c), element-wise (Draelos & Carin 2020), on the logit
// The gradient comes from the tape: the model runs forward on a recording tape in inference mode and
// `backward` stops at the target layer, so a map costs little more than inference.

import Engine
import Models

/// Which map.
public enum CAMMethod: String, Codable, Sendable, CaseIterable {
    case gradcam
    case gradcamPaper = "gradcam-paper"
    case hirescam

    /// Whether the target score is the softmax probability (the released code) rather than the logit.
    public var scoresProbability: Bool { self == .gradcamPaper }
}

/// Which class a map explains.
public enum CAMTarget: Codable, Sendable, Equatable {
    /// The model's arg-max class.
    case predicted
    /// The image's true class.
    case truth
    /// Always this class index.
    case index(Int)
    /// Image i of the batch explains class `classes[i]`.
    case perImage([Int])

    /// The class for image `image` of a batch, with `probabilities` and true `label`.
    public func resolve(probabilities: [Float], label: Int, image: Int = 0) -> Int {
        switch self {
        case .predicted:
            var best = 0
            for k in probabilities.indices where probabilities[k] > probabilities[best] { best = k }
            return best
        case .truth: return label
        case let .index(k): return k
        case let .perImage(classes): return classes[image]
        }
    }
}

/// Maps [N][h·w] of `method` from activations `a` and gradients `g` (both [N, h, w, C]).
///
/// - Precondition: `a` and `g` have the same rank-4 shape.
public func classActivationMaps(activations a: Tensor, gradients g: Tensor, method: CAMMethod) -> [[Float]] {
    precondition(a.shape == g.shape && a.shape.count == 4, "activations \(a.shape) and gradients \(g.shape) differ")
    let (n, h, w, c) = (a.shape[0], a.shape[1], a.shape[2], a.shape[3])
    let pixels = h * w
    return (0..<n).map { image in
        let base = image * pixels * c
        var map = [Float](repeating: 0, count: pixels)
        switch method {
        case .gradcam, .gradcamPaper:
            var alpha = [Float](repeating: 0, count: c)
            for p in 0..<pixels { for ch in 0..<c { alpha[ch] += g.data[base + p * c + ch] } }
            for ch in 0..<c { alpha[ch] /= Float(pixels) }
            for p in 0..<pixels {
                var sum: Float = 0
                for ch in 0..<c { sum += alpha[ch] * a.data[base + p * c + ch] }
                map[p] = method == .gradcamPaper ? sum / Float(c) : sum
            }
        case .hirescam:
            for p in 0..<pixels {
                var sum: Float = 0
                for ch in 0..<c { sum += g.data[base + p * c + ch] * a.data[base + p * c + ch] }
                map[p] = sum
            }
        }
        map = map.map { max($0, 0) }
        if method == .gradcamPaper {
            let top = map.max() ?? 0
            let divisor: Float = top == 0 ? 1e-10 : top
            map = map.map { $0 / divisor }
        }
        return map
    }
}

/// What one batch of maps holds.
public struct CAMBatch: Sendable {
    /// [N][h·w].
    public var maps: [[Float]]
    public var h: Int
    public var w: Int
    /// Softmax probabilities [N][classes].
    public var probabilities: [[Float]]
    /// The class each map explains.
    public var targets: [Int]

    public init(maps: [[Float]], h: Int, w: Int, probabilities: [[Float]], targets: [Int]) {
        self.maps = maps
        self.h = h
        self.w = w
        self.probabilities = probabilities
        self.targets = targets
    }
}

/// Runs `logitsOf` forward on a recording inference-mode tape, seeds the target classes' scores
/// (logit, or softmax probability for `gradcam-paper`) and backpropagates to `layer` only.
///
/// - Parameter logitsOf: builds the model on the tape; returns the logits [N, K] and the layer's
///   activation [N, h, w, C].
public func camBatch(method: CAMMethod, target: CAMTarget, labels: [Int], _ logitsOf: (Tape) -> (logits: Var, layer: Var)) -> CAMBatch {
    let tape = Tape(recording: true, training: false)
    let (logits, layer) = logitsOf(tape)
    let probabilities = tape.softmax(logits)
    let p = tape.value(probabilities)
    let (n, k) = (p.shape[0], p.shape[1])
    let rows = (0..<n).map { Array(p.data[($0 * k)..<(($0 + 1) * k)]) }
    let targets = (0..<n).map { target.resolve(probabilities: rows[$0], label: labels[$0], image: $0) }
    var seed = [Float](repeating: 0, count: n * k)
    for (i, t) in targets.enumerated() { seed[i * k + t] = 1 }
    let activations = tape.value(layer)
    tape.backward(from: method.scoresProbability ? probabilities : logits, seed: Tensor(shape: [n, k], data: seed), stoppingAt: layer)
    let gradients = tape.gradient(layer) ?? Tensor(zeros: activations.shape)
    return CAMBatch(maps: classActivationMaps(activations: activations, gradients: gradients, method: method),
                    h: activations.shape[1], w: activations.shape[2], probabilities: rows, targets: targets)
}

/// Maps of a single classifier at `layer` (`Classifier.dcl` or any of `Classifier.layerNames`).
public func classifierCAM(_ parameters: ParameterStore, images: Tensor, labels: [Int], layer: String, method: CAMMethod,
                          target: CAMTarget) -> CAMBatch {
    camBatch(method: method, target: target, labels: labels) { tape in
        let out = Classifier.forward(Layers(tape: tape, store: parameters), tape.constant(images),
                                     capturing: layer == Classifier.dcl ? [] : [layer])
        return (out.logits, layer == Classifier.dcl ? out.dcl : out.captured[layer] ?? out.dcl)
    }
}
