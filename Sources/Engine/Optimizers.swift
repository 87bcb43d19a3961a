// Optimisers with Keras (TensorFlow 2.x) semantics, over a parameter store's trainable tensors.
// State is kept per parameter name so it can be checkpointed and restored exactly.

import Artifacts
import CIntrinsics
import Foundation

/// An optimiser's persistent state: named moment tensors and the step counter.
public struct OptimizerState: Sendable, Equatable {
    /// Steps taken so far (Keras `iterations`).
    public var iterations: Int = 0
    /// Moment buffers by "<slot>/<parameter>" (e.g. "momentum/stem_conv/kernel").
    public var slots: [String: [Float]] = [:]

    public init() {}
}

/// What the training loops need of an optimiser: its base learning rate (callbacks change it),
/// its checkpointable state and one update step.
public protocol Optimizer: Sendable {
    var learningRate: Float { get set }
    var state: OptimizerState { get set }
    mutating func step(_ store: ParameterStore, gradients: [String: Tensor])
}

/// Keras `SGD(lr, momentum, nesterov, decay)`:
/// lr_t = lr/(1 + decay·iterations); v ← μ·v − lr_t·g; w ← w + μ·v − lr_t·g (Nesterov) or w ← w + v.
public struct SGD: Optimizer {
    public var learningRate: Float
    public var momentum: Float
    public var nesterov: Bool
    public var decay: Float
    public var state = OptimizerState()

    public init(learningRate: Float, momentum: Float = 0, nesterov: Bool = false, decay: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.decay = decay
    }

    /// The learning rate the next step uses.
    public var currentLearningRate: Float { learningRate / (1 + decay * Float(state.iterations)) }

    /// Applies one step with `gradients` (missing names count as zero gradients).
    public mutating func step(_ store: ParameterStore, gradients: [String: Tensor]) {
        let lr = currentLearningRate, mu = momentum, nesterov = self.nesterov
        for name in store.trainableNames {
            guard let g = gradients[name] else { continue }
            let key = "momentum/" + name
            // Taken out of the dictionary, so that writing it does not copy it.
            var v = state.slots.removeValue(forKey: key) ?? [Float](repeating: 0, count: g.count)
            store.update(name) { w in
                forEachElement(&w, &v, g.data) { w, v, g, range in
                    for i in range {
                        v[i] = mu * v[i] - lr * g[i]
                        w[i] += nesterov ? mu * v[i] - lr * g[i] : v[i]
                    }
                }
            }
            state.slots[key] = v
        }
        state.iterations += 1
    }
}

/// Keras `Adam(lr, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7)`:
/// lr_t = lr·√(1−β2^t)/(1−β1^t); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; w ← w − lr_t·m/(√v + ε).
public struct Adam: Optimizer {
    public var learningRate: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-7
    public var state = OptimizerState()

    public init(learningRate: Float) {
        self.learningRate = learningRate
    }

    public mutating func step(_ store: ParameterStore, gradients: [String: Tensor]) {
        let t = Double(state.iterations + 1)
        let lrT = Float(Double(learningRate) * (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t)))
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        for name in store.trainableNames {
            guard let g = gradients[name] else { continue }
            var m = state.slots.removeValue(forKey: "m/" + name) ?? [Float](repeating: 0, count: g.count)
            var v = state.slots.removeValue(forKey: "v/" + name) ?? [Float](repeating: 0, count: g.count)
            precondition(v.count == g.count, "Adam: slot v/\(name) has \(v.count) elements, its gradient \(g.count)")
            store.update(name) { w in
                v.withUnsafeMutableBufferPointer { v in
                    let v = SendableBox(v.baseAddress!)
                    forEachElement(&w, &m, g.data) { w, m, g, range in
                        let v = v.value
                        // In blocks of 1024: the moments, then their square roots through a C
                        // intrinsic (Swift's squareRoot() is a libm call on Linux, which keeps a loop
                        // scalar), then the step, each loop vectorised; element by element the same
                        // arithmetic as one loop.
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: 1024) { roots in
                            let roots = roots.baseAddress!
                            for start in Swift.stride(from: range.lowerBound, to: range.upperBound, by: 1024) {
                                let count = min(1024, range.upperBound - start)
                                let w = w + start, m = m + start, v = v + start, g = g + start
                                for i in 0..<count {
                                    m[i] = b1 * m[i] + (1 - b1) * g[i]
                                    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                                }
                                cxr_square_roots(v, roots, count)
                                for i in 0..<count { w[i] -= lrT * m[i] / (roots[i] + eps) }
                            }
                        }
                    }
                }
            }
            state.slots["m/" + name] = m
            state.slots["v/" + name] = v
        }
        state.iterations += 1
    }
}

/// Calls `body(w, s, g, range)` on fixed contiguous ranges of the elements of a parameter `w`, its
/// optimiser slot `s` and its gradient `g`, in parallel: each element's update reads only that
/// element, so the split changes no bits.
private func forEachElement(_ w: inout [Float], _ s: inout [Float], _ g: [Float],
                            _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, Range<Int>) -> Void) {
    precondition(w.count == s.count && w.count == g.count, "optimiser: parameter, slot and gradient sizes \(w.count), \(s.count), \(g.count) differ")
    w.withUnsafeMutableBufferPointer { w in
        s.withUnsafeMutableBufferPointer { s in
            g.withUnsafeBufferPointer { g in
                let box = SendableBox((w.baseAddress!, s.baseAddress!, g.baseAddress!))
                Parallel.forEachRange(w.count) { range in
                    let (w, s, g) = box.value
                    body(w, s, g, range)
                }
            }
        }
    }
}
