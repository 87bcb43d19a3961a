// Batch norm with its activation and the depthwise convolution that reads its output, as one op
// whose normalised tensor is never written to memory. An MBConv block's expand activation (six
// times the block's input width, its widest tensor) has one reader, the depthwise convolution;
// written out it costs a pass to make it, one to read it, and in training one more to read it
// again for the kernel gradient, plus its memory until then. Here the forward pass normalises, in
// band buffers of about 256 KiB, the input rows each band of output rows reads, and convolves the
// band; the backward pass maps the same bands again for the kernel gradient, and makes the
// gradient at map(x) one input row at a time, turning it into the gradient at batch norm's input
// and its channel sums while the row is in cache. The output is the same bits as the two ops
// apart; the gradients differ from theirs by the order of batch norm's channel sums.

import Artifacts

extension Tape {
    /// `depthwiseConv2d(batchNorm(x, name:, store:, activation:), kernel, …)` without the
    /// normalised tensor: the same output bits as the two ops, and, when recording, the gradients
    /// of x, γ, β and the kernel, the batch norm's channel sums made input row by input row (see
    /// the file's head).
    public func depthwiseConv2d(normalising x: Var, name: String, store: ParameterStore, activation: Activation?,
                                _ kernel: Var, stride: Int, padding: Padding = .same,
                                momentum: Float = kerasBatchNormMomentum) -> Var {
        let c = shape(x).last ?? 1
        let gammaVar = parameter(name + "/gamma", in: store), betaVar = parameter(name + "/beta", in: store)
        let xv = value(x), gamma = value(gammaVar).data, beta = value(betaVar).data
        let rows = xv.count / c
        let mean: [Float], variance: [Float]
        if training {
            (mean, variance) = batchStatistics(xv, rows: rows, channels: c)
            updateRunningStatistics(store, name, mean: mean, variance: variance, rows: rows, momentum: momentum)
        } else {
            (mean, variance) = (store.value(name + "/moving_mean").data, store.value(name + "/moving_variance").data)
        }
        let affine = BatchNormAffine(mean: mean, variance: variance, gamma: gamma, beta: beta)
        let map = NormalisingMap(affine: affine, activation: activation, channels: c)
        let (out, geometry) = depthwiseForward(x, kernel, stride: stride, padding: padding) { geometry, rows, x, w, y in
            geometry.forwardMappingBands(rows, x, map.callAsFunction, w, y)
        }
        let kv = value(kernel), training = self.training
        return record(out) { tape, dy in
            let input = geometry.input, rowSize = input.w * c
            let outputRows = input.n * geometry.oh, parts = Parallel.parts(outputRows, grain: 8)
            let taps = geometry.kh * geometry.kw * c
            var kernelPartials = [Float](repeating: 0, count: parts * taps)
            var sumPartials = [Double](repeating: 0, count: parts * 2 * c)
            // dz: the gradient at the activation's input z = x·scale + shift (at x̂'s affine image).
            withScratch(xv.count) { dz in
                dy.withPointer { g in xv.withPointer { xp in kv.withPointer { w in withScratch(taps) { flipped in
                    geometry.flip(w, into: flipped)
                    kernelPartials.withUnsafeMutableBufferPointer { kp in sumPartials.withUnsafeMutableBufferPointer { sp in
                        affine.mean.withUnsafeBufferPointer { mu in
                            let box = SendableBox((g, xp, w, UnsafePointer(flipped), dz, kp.baseAddress!, sp.baseAddress!, mu.baseAddress!))
                            Parallel.forEachPart(outputRows, grain: 8) { part, range in
                                let (g, xp, w, flipped, dz, kp, sp, mu) = box.value
                                withScratch(2 * c) { block in
                                    geometry.backwardMappingBands(range, xp, map.callAsFunction, dy: g, w, flipped: flipped,
                                                                  dw: kp + part * taps) { dxRow, row in
                                        let xr = xp + row * rowSize, dzr = dz + row * rowSize
                                        map.backward(dxRow, at: xr, into: dzr, pixels: input.w)
                                        // Σ dz and Σ dz·(x − μ) of the row.
                                        addGradientSums(dzr, xr, mean: mu, rows: 0..<input.w, channels: c, block: block,
                                                        into: sp + part * 2 * c)
                                    }
                                }
                            }
                        }
                    } }
                } } } }
                let sums = combinedGradientSums(sumPartials, parts: parts, channels: c)
                let sumDz = sums.sum, sumDzXhat = zip(sums.product, affine.invStd).map { $0 * Double($1) }
                tape.accumulate(gammaVar) { dg in for ch in 0..<c { dg[ch] += Float(sumDzXhat[ch]) } }
                tape.accumulate(betaVar) { db in for ch in 0..<c { db[ch] += Float(sumDz[ch]) } }
                tape.accumulate(kernel) { dw in
                    for part in 0..<parts { for i in 0..<taps { dw[i] += kernelPartials[part * taps + i] } }
                }
                let coefficients = inputGradientCoefficients(gamma: gamma, affine, sumDy: sumDz, sumDyXhat: sumDzXhat,
                                                             rows: rows, training: training)
                xv.withPointer { xp in
                    tape.accumulate(x) { dx, add in
                        applyInputGradient(dx, add: add, g: UnsafePointer(dz), x: xp, coefficients, rows: rows, channels: c)
                    }
                }
            }
        }
    }
}

/// Batch norm's affine map followed by its activation, applied to pixels of C channels: what the
/// normalised depthwise convolution reads, and the way back from a gradient at its output.
private struct NormalisingMap: Sendable {
    let scale: [Float]
    let shift: [Float]
    let activation: Activation?
    let channels: Int

    init(affine: BatchNormAffine, activation: Activation?, channels: Int) {
        (scale, shift, self.activation, self.channels) = (affine.scale, affine.shift, activation, channels)
    }

    /// `pixels` pixels of `source` mapped into `destination`.
    func callAsFunction(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, _ pixels: Int) {
        scale.withUnsafeBufferPointer { s in shift.withUnsafeBufferPointer { t in
            if let activation {
                activation.forward(normalising: source, scale: s.baseAddress!, shift: t.baseAddress!, into: destination,
                                   rows: 0..<pixels, channels: channels)
            } else {
                normalise(source, destination, 0..<pixels, channels: channels, s.baseAddress!, t.baseAddress!)
            }
        } }
    }

    /// The gradient at the affine map's output (the activation's input) of `pixels` pixels, from
    /// `gradient` at the activation's output and the pixels' inputs `x`, written to `dz`.
    func backward(_ gradient: UnsafePointer<Float>, at x: UnsafePointer<Float>, into dz: UnsafeMutablePointer<Float>, pixels: Int) {
        guard let activation else { return dz.update(from: gradient, count: pixels * channels) }
        scale.withUnsafeBufferPointer { s in shift.withUnsafeBufferPointer { t in
            activation.backward(gradient, normalising: x, scale: s.baseAddress!, shift: t.baseAddress!, dz,
                                rows: 0..<pixels, channels: channels)
        } }
    }
}
