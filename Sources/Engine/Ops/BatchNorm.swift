// Batch normalisation over N, H, W per channel (Keras BatchNormalization on NHWC: momentum 0.99,
// epsilon 1e-3). Training normalises with the batch mean and biased variance and moves the
// running statistics toward the batch's (the variance Bessel-corrected, as TensorFlow's fused
// kernel reports it); inference uses the running statistics.

import Foundation

/// Keras defaults.
public let batchNormMomentum: Float = 0.99
public let batchNormEpsilon: Float = 1e-3

extension Tape {
    /// y = γ·(x − μ)/√(σ² + ε) + β over the last axis of `x` (rank 2 or 4).
    ///
    /// - Parameters:
    ///   - name: the layer name; parameters `name/gamma`, `name/beta`, `name/moving_mean`,
    ///     `name/moving_variance` are read from (and, in training, the moving ones written to) `store`.
    public func batchNorm(_ x: Var, name: String, store: ParameterStore) -> Var {
        let c = shape(x).last!
        let gammaVar = parameter(name + "/gamma", in: store), betaVar = parameter(name + "/beta", in: store)
        let xv = value(x), gamma = value(gammaVar), beta = value(betaVar)
        let rows = xv.count / c
        var mean = [Float](repeating: 0, count: c), variance = [Float](repeating: 0, count: c)
        if training {
            // Two-pass statistics in Double for accuracy over large batches.
            var sum = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
            xv.withPointer { xp in
                for r in 0..<rows { for ch in 0..<c { sum[ch] += Double(xp[r * c + ch]) } }
                for ch in 0..<c { mean[ch] = Float(sum[ch] / Double(rows)) }
                for r in 0..<rows { for ch in 0..<c { let d = Double(xp[r * c + ch] - mean[ch]); squares[ch] += d * d } }
            }
            for ch in 0..<c { variance[ch] = Float(squares[ch] / Double(rows)) }
            let correction = rows > 1 ? Float(rows) / Float(rows - 1) : 1
            store.update(name + "/moving_mean") { m in
                for ch in 0..<c { m[ch] = m[ch] * batchNormMomentum + mean[ch] * (1 - batchNormMomentum) }
            }
            store.update(name + "/moving_variance") { v in
                for ch in 0..<c { v[ch] = v[ch] * batchNormMomentum + variance[ch] * correction * (1 - batchNormMomentum) }
            }
        } else {
            mean = store.value(name + "/moving_mean").data
            variance = store.value(name + "/moving_variance").data
        }
        let invStd = variance.map { 1 / ($0 + batchNormEpsilon).squareRoot() }
        var out = Tensor(zeros: xv.shape)
        out.withMutablePointer { y in
            xv.withPointer { xp in
                gamma.withPointer { g in
                    beta.withPointer { b in
                        for r in 0..<rows {
                            for ch in 0..<c { y[r * c + ch] = (xp[r * c + ch] - mean[ch]) * invStd[ch] * g[ch] + b[ch] }
                        }
                    }
                }
            }
        }
        let training = self.training
        return record(out) { tape, dy in
            // x̂ = (x − μ)·s; dγ = Σ dy·x̂; dβ = Σ dy; in training
            // dx = γ·s/m·(m·dy − Σdy − x̂·Σ(dy·x̂)); in inference dx = γ·s·dy.
            var sumDy = [Float](repeating: 0, count: c), sumDyXhat = [Float](repeating: 0, count: c)
            dy.withPointer { g in
                xv.withPointer { xp in
                    for r in 0..<rows {
                        for ch in 0..<c {
                            let xhat = (xp[r * c + ch] - mean[ch]) * invStd[ch]
                            sumDy[ch] += g[r * c + ch]
                            sumDyXhat[ch] += g[r * c + ch] * xhat
                        }
                    }
                    tape.accumulate(gammaVar) { dg in for ch in 0..<c { dg[ch] += sumDyXhat[ch] } }
                    tape.accumulate(betaVar) { db in for ch in 0..<c { db[ch] += sumDy[ch] } }
                    gamma.withPointer { gm in
                        tape.accumulate(x) { dx in
                            let m = Float(rows)
                            for r in 0..<rows {
                                for ch in 0..<c {
                                    let scale = gm[ch] * invStd[ch]
                                    if training {
                                        let xhat = (xp[r * c + ch] - mean[ch]) * invStd[ch]
                                        dx[r * c + ch] += scale / m * (m * g[r * c + ch] - sumDy[ch] - xhat * sumDyXhat[ch])
                                    } else {
                                        dx[r * c + ch] += scale * g[r * c + ch]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

extension ParameterStore {
    /// Declares the four tensors of a batch-norm layer over `channels`.
    public func declareBatchNorm(_ name: String, channels: Int) {
        declare(name + "/gamma", shape: [channels], initializer: .ones)
        declare(name + "/beta", shape: [channels], initializer: .zeros)
        declare(name + "/moving_mean", shape: [channels], initializer: .zeros, trainable: false)
        declare(name + "/moving_variance", shape: [channels], initializer: .ones, trainable: false)
    }
}
