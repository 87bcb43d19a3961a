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
//
// When the op also takes the expand convolution (1×1) that makes batch norm's input, the gradient
// at that input is not written either: each thread makes it a run of pixels at a time, about
// 256 KiB, and the convolution's two backward GEMMs (input and kernel gradient) read the run from
// cache, where written out it would be one pass to write and two to read; and in training the
// forward GEMM runs the same way, batch statistics summed from each run while it is in cache.

import Artifacts

extension Tape {
    /// `depthwiseConv2d(batchNorm(x, name:, store:, activation:), kernel, …)` without the
    /// normalised tensor: the same output bits as the two ops, and, when recording, the gradients
    /// of x, γ, β and the kernel, the batch norm's channel sums made input row by input row (see
    /// the file's head).
    public func depthwiseConv2d(normalising x: Var, name: String, store: ParameterStore, activation: Activation?,
                                _ kernel: Var, stride: Int, padding: Padding = .same,
                                momentum: Float = kerasBatchNormMomentum) -> Var {
        normalisedDepthwise(x, expandedBy: nil, statistics: nil, name: name, store: store, activation: activation, kernel,
                            stride: stride, padding: padding, momentum: momentum)
    }

    /// `depthwiseConv2d(normalising: conv2d(x, expandKernel), …)` for a 1×1 `expandKernel`
    /// [1, 1, Cin, C]. In training the convolution runs a run of pixels at a time, each run's batch
    /// statistics summed as it leaves the GEMM (the BLAS may round a run's GEMM differently from
    /// one over all pixels), and in the backward pass the gradient at its output is made and used
    /// a run at a time, never written whole (see the file's head). Where its kernel is too large
    /// for runs of pixels to pay (Cin·C above 16 384, where a run would be shorter than four times
    /// Cin pixels), both passes run over all pixels, as the two ops would.
    public func depthwiseConv2d(normalisingExpansionOf x: Var, _ expandKernel: Var, name: String, store: ParameterStore,
                                activation: Activation?, _ kernel: Var, stride: Int, padding: Padding = .same,
                                momentum: Float = kerasBatchNormMomentum) -> Var {
        let k = shape(expandKernel), input = NHWC(shape(x))
        precondition(k.count == 4 && k[0] == 1 && k[1] == 1 && k[2] == input.c, "expand kernel \(k) does not fit input \(input.shape)")
        let expansion = Expansion(input: x, kernel: expandKernel, pixels: input.n * input.h * input.w, inputChannels: input.c,
                                  channels: k[3])
        forwardFlops += 2 * Double(expansion.pixels * input.c * k[3])
        let xv = value(x), kv = value(expandKernel), (pixels, cin, c) = (expansion.pixels, input.c, k[3])
        var statistics: (mean: [Float], variance: [Float])? = nil
        let expanded = Tensor(shape: [input.n, input.h, input.w, c]) { e in
            xv.withPointer { xp in kv.withPointer { w in
                guard training && expansion.runPixels > 0 else {
                    return BLAS.gemmRowsSplit(m: pixels, n: c, k: cin, a: xp, lda: cin, b: w, ldb: c, beta: 0, c: e, ldc: c)
                }
                // In training, batch statistics of e as each run of pixels leaves the GEMM, in cache,
                // where runs pay (`runPixels`).
                let box = SendableBox((xp, w, e))
                statistics = batchStatistics(e, rows: pixels, channels: c) { rows in
                    let (xp, w, e) = box.value
                    BLAS.sgemm(transposeA: false, transposeB: false, m: rows.count, n: c, k: cin, alpha: 1, a: xp + rows.lowerBound * cin,
                               lda: cin, b: w, ldb: c, beta: 0, c: e + rows.lowerBound * c, ldc: c)
                }
            } }
        }
        // A node of its own so that the tape counts and frees it; its gradient goes to x and the kernel directly.
        return normalisedDepthwise(record(expanded, backward: nil), expandedBy: expansion, statistics: statistics, name: name,
                                   store: store, activation: activation, kernel, stride: stride, padding: padding, momentum: momentum)
    }

    /// Both ops above: `x` is batch norm's input, made by `expansion` when given; in training its
    /// batch `statistics` when already made.
    private func normalisedDepthwise(_ x: Var, expandedBy expansion: Expansion?, statistics: (mean: [Float], variance: [Float])?,
                                     name: String, store: ParameterStore, activation: Activation?, _ kernel: Var, stride: Int,
                                     padding: Padding, momentum: Float) -> Var {
        let layer = batchNormLayer(x, name: name, store: store, momentum: momentum, statistics: statistics)
        let xv = value(x), affine = layer.affine, c = layer.channels
        let map = NormalisingMap(affine: affine, activation: activation, channels: c)
        let (out, geometry) = depthwiseForward(x, kernel, stride: stride, padding: padding) { geometry, rows, x, w, y in
            geometry.forwardMappingBands(rows, x, map.callAsFunction, w, y)
        }
        let kv = value(kernel)
        let expansionInput = expansion.map { value($0.input) }, expansionKernel = expansion.map { value($0.kernel) }
        return record(out) { tape, dy in
            let outputRows = geometry.input.n * geometry.oh, parts = Parallel.parts(outputRows, grain: 8)
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
                                map.backward(geometry, rows: range, x: xp, dy: g, w, flipped: flipped, mean: mu,
                                             dw: kp + part * taps, dz: dz, sums: sp + part * 2 * c)
                            }
                        }
                    } }
                } } } }
                let sums = combinedGradientSums(sumPartials, parts: parts, channels: c)
                let gradient = layer.gradients(tape, sum: sums.sum, product: sums.product)
                tape.accumulate(kernel) { dw in
                    for part in 0..<parts { for i in 0..<taps { dw[i] += kernelPartials[part * taps + i] } }
                }
                xv.withPointer { xp in
                    if let expansion, let expansionInput, let expansionKernel {
                        expansionInput.withPointer { input in expansionKernel.withPointer { w in
                            expansion.backward(tape, gradient, dz: UnsafePointer(dz), expanded: xp, input: input, kernel: w)
                        } }
                    } else {
                        tape.accumulate(x) { dx, add in
                            gradient.applyInParallel(into: dx, add: add, g: UnsafePointer(dz), x: xp, rows: layer.rows, channels: c)
                        }
                    }
                }
            }
        }
    }
}

/// The 1×1 convolution e = x·W that makes a normalised depthwise convolution's batch-norm input
/// (`depthwiseConv2d(normalisingExpansionOf:…)`).
private struct Expansion {
    let input: Var
    let kernel: Var
    let pixels: Int
    let inputChannels: Int
    let channels: Int

    /// Pixels per run of the backward pass: about 256 KiB of the gradient at e; zero where that
    /// is fewer than four times the input channels (the kernel would be packed again too often).
    var runPixels: Int {
        let run = (64 << 10) / channels
        return run >= 4 * inputChannels ? run : 0
    }

    /// The gradients of x and W, from batch norm's dz and input e through `gradient` (de = a·dz +
    /// b·e + d): dx = de·Wᵀ and dW = xᵀ·de, de made a run of pixels at a time into scratch where
    /// `runPixels` allows and each GEMM reading it from cache (per-thread partial dW summed in
    /// part order), else written whole and the GEMMs run over all pixels.
    func backward(_ tape: Tape, _ gradient: InputGradientMap, dz: UnsafePointer<Float>, expanded e: UnsafePointer<Float>,
                  input x: UnsafePointer<Float>, kernel w: UnsafePointer<Float>) {
        let (cin, c, pixels, run) = (inputChannels, channels, pixels, runPixels)
        guard run > 0 else {
            withScratch(pixels * c) { de in
                gradient.applyInParallel(into: de, add: false, g: dz, x: e, rows: pixels, channels: c)
                tape.accumulate(kernel) { dw in
                    BLAS.gemmTransposedAccumulate(m: cin, n: c, k: pixels, a: x, lda: cin, b: de, ldb: c, c: dw)
                }
                tape.accumulate(input, writing: { dx, add in
                    BLAS.gemmRowsSplit(m: pixels, n: cin, k: c, a: de, lda: c, b: w, ldb: c, beta: add ? 1 : 0, c: dx, ldc: cin,
                                       transposeB: true)
                })
            }
            return
        }
        let parts = Parallel.parts(pixels, grain: 256)
        var partials = [Float](repeating: 0, count: parts * cin * c + BLAS.readSlack)
        tape.accumulate(input, writing: { dx, add in
            partials.withUnsafeMutableBufferPointer { p in
                let box = SendableBox((dx, p.baseAddress!, dz, e, x, w))
                Parallel.forEachPart(pixels, grain: 256) { part, range in
                    let (dx, p, dz, e, x, w) = box.value
                    withScratch(run * c) { de in
                        for start in stride(from: range.lowerBound, to: range.upperBound, by: run) {
                            let n = min(run, range.upperBound - start)
                            gradient.apply(into: de, add: false, g: dz + start * c, x: e + start * c, rows: n, channels: c)
                            BLAS.sgemm(transposeA: false, transposeB: true, m: n, n: cin, k: c, alpha: 1, a: de, lda: c, b: w, ldb: c,
                                       beta: add ? 1 : 0, c: dx + start * cin, ldc: cin)
                            BLAS.sgemm(transposeA: true, transposeB: false, m: cin, n: c, k: n, alpha: 1, a: x + start * cin, lda: cin,
                                       b: de, ldb: c, beta: start == range.lowerBound ? 0 : 1, c: p + part * cin * c, ldc: c)
                        }
                    }
                }
            }
        })
        tape.accumulate(kernel) { dw in
            for part in 0..<parts { for i in 0..<(cin * c) { dw[i] += partials[part * cin * c + i] } }
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

extension NormalisingMap {
    /// Output rows `rows`' share of the backward pass of the normalised depthwise convolution
    /// (`DepthwiseGeometry.backwardMappingBands`): their kernel gradient added to `dw`, and for
    /// each input row they own, dz written and Σ dz, Σ dz·(x − μ) added to `sums` (c each).
    func backward(_ geometry: DepthwiseGeometry, rows: Range<Int>, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                  _ w: UnsafePointer<Float>, flipped: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                  dw: UnsafeMutablePointer<Float>, dz: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Double>) {
        let c = channels, width = geometry.input.w, rowSize = width * c
        withScratch(2 * c) { block in
            geometry.backwardMappingBands(rows, x, callAsFunction, dy: dy, w, flipped: flipped, dw: dw) { dxRow, row in
                let xr = x + row * rowSize, dzr = dz + row * rowSize
                backward(dxRow, at: xr, into: dzr, pixels: width)
                addGradientSums(dzr, xr, mean: mean, rows: 0..<width, channels: c, block: block, into: sums)
            }
        }
    }
}
