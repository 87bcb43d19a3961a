// Batch normalisation over N, H, W per channel (Keras BatchNormalization on NHWC: momentum 0.99,
// epsilon 1e-3). Training normalises with the batch mean and biased variance and moves the
// running statistics toward the batch's (the variance Bessel-corrected, as TensorFlow's fused
// kernel reports it); inference uses the running statistics. Per-channel sums are accumulated in
// Double per thread part and combined in part order (deterministic for a thread count).

import Artifacts
import Foundation

/// Keras defaults.
public let kerasBatchNormMomentum: Float = 0.99
public let batchNormEpsilon: Float = 1e-3

/// Batch norm's backward sums per channel over the rows of g and x [rows, c]: Σ g and Σ g·(x − μ).
/// Each thread part sums blocks of up to 64 rows in Float, adds each block to Double totals, and
/// the parts are combined in order: accurate over millions of rows, vectorised, and deterministic
/// for a thread count. With `produce`, the rows of g are written block by block, by
/// `produce(rows)` just before they are summed, while they are in cache.
private func gradientSums(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean: [Float], rows: Int, channels c: Int,
                          produce: ((Range<Int>) -> Void)? = nil) -> (sum: [Double], product: [Double]) {
    let parts = Parallel.parts(rows, grain: 256)
    var partials = [Double](repeating: 0, count: parts * 2 * c)
    partials.withUnsafeMutableBufferPointer { p in mean.withUnsafeBufferPointer { mu in
        let box = SendableBox((p.baseAddress!, g, x, mu.baseAddress!, produce))
        Parallel.forEachPart(rows, grain: 256) { part, range in
            let (p, g, x, mu, produce) = box.value
            withScratch(2 * c) { block in
                addGradientSums(g, x, mean: mu, rows: range, channels: c, block: block, into: p + part * 2 * c, produce: produce)
            }
        }
    } }
    return combinedGradientSums(partials, parts: parts, channels: c)
}

/// Adds Σ g and Σ g·(x − μ) over rows `range` of g and x [*, c] to `totals` (c Doubles each), in
/// Float blocks of up to 64 rows summed in `block` (scratch for 2c floats), each block's rows of g
/// made by `produce` first when given.
func addGradientSums(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean mu: UnsafePointer<Float>, rows range: Range<Int>,
                     channels c: Int, block: UnsafeMutablePointer<Float>, into totals: UnsafeMutablePointer<Double>,
                     produce: ((Range<Int>) -> Void)? = nil) {
    let product = block + c
    var start = range.lowerBound
    while start < range.upperBound {
        let end = min(start + 64, range.upperBound)
        produce?(start..<end)
        block.update(repeating: 0, count: 2 * c)
        for r in start..<end {
            let gr = g + r * c, xr = x + r * c
            for ch in 0..<c {
                block[ch] += gr[ch]
                product[ch] += gr[ch] * (xr[ch] - mu[ch])
            }
        }
        for i in 0..<(2 * c) { totals[i] += Double(block[i]) }
        start = end
    }
}

/// The thread parts' totals [parts, 2, c] of `addGradientSums` added in part order.
func combinedGradientSums(_ partials: [Double], parts: Int, channels c: Int) -> (sum: [Double], product: [Double]) {
    var sum = [Double](repeating: 0, count: c), product = [Double](repeating: 0, count: c)
    for part in 0..<parts {
        for ch in 0..<c {
            sum[ch] += partials[part * 2 * c + ch]
            product[ch] += partials[part * 2 * c + c + ch]
        }
    }
    return (sum, product)
}

/// The per-channel affine map batch norm applies, y = x·scale + shift, and the statistics it came from.
struct BatchNormAffine {
    let mean: [Float]
    let invStd: [Float]
    let scale: [Float]
    let shift: [Float]

    init(mean: [Float], variance: [Float], gamma: [Float], beta: [Float]) {
        let c = mean.count
        let invStd = variance.map { 1 / ($0 + batchNormEpsilon).squareRoot() }
        self.mean = mean
        self.invStd = invStd
        scale = (0..<c).map { gamma[$0] * invStd[$0] }
        shift = (0..<c).map { beta[$0] - mean[$0] * gamma[$0] * invStd[$0] }
    }
}

/// The batch mean and biased variance per channel of `x` [rows, c], in one pass over memory. Each
/// thread part takes blocks of up to 64 rows: the block's sum, then its squares about its own mean
/// while the block is in cache, both in Float, merged into Double totals by Chan, Golub and
/// LeVeque's update (M2 += M2_b + δ²·n_a·n_b/(n_a + n_b), δ the difference of the two means),
/// and the parts merged in order the same way. The sums, and so the mean, add up as before (Float
/// blocks into Double, parts in order: the same bits); the variance is as accurate as the
/// two-pass one's (Σ(x − μ)² after μ) without its second pass over memory.
func batchStatistics(_ x: Tensor, rows: Int, channels c: Int) -> (mean: [Float], variance: [Float]) {
    x.withPointer { batchStatistics($0, rows: rows, channels: c) }
}

/// `batchStatistics` of x [rows, c] at `x`; with `produce`, each thread writes its rows of x a run
/// of about 256 KiB at a time (a whole number of 64-row blocks), by `produce(rows)` just before it
/// sums them, while they are in cache: the same blocks in the same order, so the same bits.
func batchStatistics(_ x: UnsafePointer<Float>, rows: Int, channels c: Int,
                     produce: (@Sendable (Range<Int>) -> Void)? = nil) -> (mean: [Float], variance: [Float]) {
    let parts = Parallel.parts(rows, grain: 256)
    let run = max(1, (64 << 10) / (64 * c)) * 64
    var partials = [Double](repeating: 0, count: parts * 2 * c)  // per part: Σ x, then M2
    partials.withUnsafeMutableBufferPointer { p in
        let box = SendableBox((x, p.baseAddress!))
        Parallel.forEachPart(rows, grain: 256) { part, range in
            let (x, p) = box.value
            withScratch(3 * c) { block in
                var counted = 0
                let step = produce == nil ? max(range.count, 1) : run
                for start in stride(from: range.lowerBound, to: range.upperBound, by: step) {
                    let end = min(range.upperBound, start + step)
                    produce?(start..<end)
                    addMoments(x, rows: start..<end, counted: &counted, channels: c, block: block, sum: p + part * 2 * c,
                               m2: p + part * 2 * c + c)
                }
            }
        }
    }
    var sum = [Double](repeating: 0, count: c), m2 = [Double](repeating: 0, count: c)
    var counted = 0
    for part in 0..<parts {
        let rowsOfPart = Parallel.range(part, of: parts, count: rows).count, offset = part * 2 * c
        mergeMoments(sum: &sum, m2: &m2, counted: counted, rows: rowsOfPart, channels: c,
                     blockSum: { partials[offset + $0] }, blockM2: { partials[offset + c + $0] })
        counted += rowsOfPart
    }
    return (sum.map { Float($0 / Double(rows)) }, m2.map { Float($0 / Double(rows)) })
}

/// Merges the moments of `rows` more rows (their sum and M2 per channel, read through `blockSum`
/// and `blockM2`) into totals of `counted` rows: Chan's update.
@inline(__always)
private func mergeMoments<Totals: MutableCollection<Double>>(sum: inout Totals, m2: inout Totals, counted: Int, rows: Int,
                                                             channels c: Int, blockSum: (Int) -> Double,
                                                             blockM2: (Int) -> Double) where Totals.Index == Int {
    let na = Double(counted), nb = Double(rows), weight = na * nb / (na + nb)
    for ch in 0..<c {
        let bs = blockSum(ch)
        if counted > 0 {
            let delta = bs / nb - sum[ch] / na
            m2[ch] += blockM2(ch) + delta * delta * weight
        } else {
            m2[ch] += blockM2(ch)
        }
        sum[ch] += bs
    }
}

/// Σ x and the sum of squares about the mean (M2) of rows `range` of x [*, c], merged block by
/// block into `sum` and `m2` (c Doubles each, totals of `counted` rows so far, which it advances;
/// `batchStatistics`); `block` is scratch for 3c floats.
private func addMoments(_ x: UnsafePointer<Float>, rows range: Range<Int>, counted: inout Int, channels c: Int,
                        block: UnsafeMutablePointer<Float>, sum: UnsafeMutablePointer<Double>, m2: UnsafeMutablePointer<Double>) {
    let blockSum = block, blockMean = block + c, blockM2 = block + 2 * c
    var totalSum = UnsafeMutableBufferPointer(start: sum, count: c), totalM2 = UnsafeMutableBufferPointer(start: m2, count: c)
    var start = range.lowerBound
    while start < range.upperBound {
        let end = min(start + 64, range.upperBound), rows = end - start
        blockSum.update(repeating: 0, count: c)
        for r in start..<end {
            let xr = x + r * c
            for ch in 0..<c { blockSum[ch] += xr[ch] }
        }
        let inverse = 1 / Float(rows)
        for ch in 0..<c { blockMean[ch] = blockSum[ch] * inverse }
        blockM2.update(repeating: 0, count: c)
        for r in start..<end {
            let xr = x + r * c
            for ch in 0..<c {
                let d = xr[ch] - blockMean[ch]
                blockM2[ch] += d * d
            }
        }
        mergeMoments(sum: &totalSum, m2: &totalM2, counted: counted, rows: rows, channels: c,
                     blockSum: { Double(blockSum[$0]) }, blockM2: { Double(blockM2[$0]) })
        counted += rows
        start = end
    }
}

/// Moves layer `name`'s running statistics toward the batch's: mean·(1 − momentum), and the variance
/// Bessel-corrected over `rows` (TensorFlow's fused kernel).
func updateRunningStatistics(_ store: ParameterStore, _ name: String, mean: [Float], variance: [Float],
                                     rows: Int, momentum: Float) {
    let c = mean.count
    let correction = rows > 1 ? Float(rows) / Float(rows - 1) : 1
    store.update(name + "/moving_mean") { mm in
        for ch in 0..<c { mm[ch] = mm[ch] * momentum + mean[ch] * (1 - momentum) }
    }
    store.update(name + "/moving_variance") { v in
        for ch in 0..<c { v[ch] = v[ch] * momentum + variance[ch] * correction * (1 - momentum) }
    }
}

/// z = x·s + t per channel for `rows` of x [*, c], written to `z` from its start.
func normalise(_ xp: UnsafePointer<Float>, _ z: UnsafeMutablePointer<Float>, _ rows: Range<Int>, channels c: Int,
                       _ s: UnsafePointer<Float>, _ t: UnsafePointer<Float>) {
    for r in rows {
        let zr = z + (r - rows.lowerBound) * c, xr = xp + r * c
        for ch in 0..<c { zr[ch] = xr[ch] * s[ch] + t[ch] }
    }
}

/// The forward pass: `affine` applied to x, then `activation` when given, in one pass.
private func batchNormForward(_ xv: Tensor, _ affine: BatchNormAffine, activation: Activation?, rows: Int, channels c: Int) -> Tensor {
    Tensor(shape: xv.shape) { y in
        xv.withPointer { xp in affine.scale.withUnsafeBufferPointer { s in affine.shift.withUnsafeBufferPointer { t in
            let b = SendableBox((y, xp, s.baseAddress!, t.baseAddress!))
            Parallel.forEachRange(rows, grain: 256) { range in
                let (y, xp, s, t) = b.value
                if let activation {
                    activation.forward(normalising: xp, scale: s, shift: t, into: y, rows: range, channels: c)
                } else {
                    normalise(xp, y + range.lowerBound * c, range, channels: c, s, t)
                }
            }
        } } }
    }
}

/// Batch norm's input gradient as a per-channel map, dx = a·g + b·x + d, of the gradient g at its
/// affine map's output and its input x: in inference a = γ·invStd and b = d = 0; in training
/// dx = γ·invStd/m·(m·g − Σg − x̂·Σ(g·x̂)) with x̂ = (x − μ)·invStd, folded into b and d.
struct InputGradientMap: Sendable {
    let a: [Float]
    let b: [Float]
    let d: [Float]

    init(gamma: [Float], _ affine: BatchNormAffine, sumDy: [Double], sumDyXhat: [Double], rows: Int, training: Bool) {
        let c = gamma.count, m = Float(rows)
        var a = [Float](repeating: 0, count: c), b = [Float](repeating: 0, count: c), d = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            let s = gamma[ch] * affine.invStd[ch]
            a[ch] = s
            if training {
                let k = Float(sumDyXhat[ch]) / m * affine.invStd[ch]
                b[ch] = -s * k
                d[ch] = s * (k * affine.mean[ch] - Float(sumDy[ch]) / m)
            }
        }
        (self.a, self.b, self.d) = (a, b, d)
    }

    /// Writes (`add` false) or adds dx for `rows` rows of g and x [*, c], each pointer at the first.
    func apply(into dx: UnsafeMutablePointer<Float>, add: Bool, g: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
               channels c: Int) {
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in d.withUnsafeBufferPointer { d in
            for r in 0..<rows {
                // Row pointers, not dx[r·c + ch]: the checked index arithmetic keeps a loop scalar.
                let dxr = dx + r * c, gr = g + r * c, xr = x + r * c
                if add {
                    for ch in 0..<c { dxr[ch] += a[ch] * gr[ch] + b[ch] * xr[ch] + d[ch] }
                } else {
                    for ch in 0..<c { dxr[ch] = a[ch] * gr[ch] + b[ch] * xr[ch] + d[ch] }
                }
            }
        } } }
    }

    /// `apply` over all `rows` rows, in parallel.
    func applyInParallel(into dx: UnsafeMutablePointer<Float>, add: Bool, g: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         rows: Int, channels c: Int) {
        let box = SendableBox((dx, g, x))
        Parallel.forEachRange(rows, grain: 256) { range in
            let (dx, g, x) = box.value
            let offset = range.lowerBound * c
            apply(into: dx + offset, add: add, g: g + offset, x: x + offset, rows: range.count, channels: c)
        }
    }
}

/// One batch-norm layer in one step: its γ and β nodes and the affine map it applies (from the
/// batch's statistics in training, the running ones otherwise), and the way from its backward sums
/// to dγ, dβ and the input gradient. What `Tape.batchNorm` and the ops that fold batch norm in share.
struct BatchNormLayer {
    let gamma: Var
    let beta: Var
    let gammaValue: [Float]
    let affine: BatchNormAffine
    let rows: Int
    let channels: Int
    let training: Bool

    /// Adds dγ = Σ g·x̂ and dβ = Σ g to the parameters' gradients, from Σ g and Σ g·(x − μ) (the
    /// gradient g at the affine map's output), and returns the input gradient's map.
    func gradients(_ tape: Tape, sum: [Double], product: [Double]) -> InputGradientMap {
        let sumXhat = zip(product, affine.invStd).map { $0 * Double($1) }
        tape.accumulate(gamma) { dg in for ch in 0..<channels { dg[ch] += Float(sumXhat[ch]) } }
        tape.accumulate(beta) { db in for ch in 0..<channels { db[ch] += Float(sum[ch]) } }
        return InputGradientMap(gamma: gammaValue, affine, sumDy: sum, sumDyXhat: sumXhat, rows: rows, training: training)
    }
}

extension Tape {
    /// Batch-norm layer `name` over x (parameters `name/gamma`, `name/beta`, `name/moving_mean`,
    /// `name/moving_variance` in `store`): in training with the batch's statistics (`statistics`
    /// when the caller has made them) and the running ones moved toward them by `momentum`.
    func batchNormLayer(_ x: Var, name: String, store: ParameterStore, momentum: Float,
                        statistics: (mean: [Float], variance: [Float])? = nil) -> BatchNormLayer {
        let c = shape(x).last ?? 1
        let gamma = parameter(name + "/gamma", in: store), beta = parameter(name + "/beta", in: store)
        let xv = value(x), gammaValue = value(gamma).data
        let rows = xv.count / c
        let mean: [Float], variance: [Float]
        if training {
            (mean, variance) = statistics ?? batchStatistics(xv, rows: rows, channels: c)
            updateRunningStatistics(store, name, mean: mean, variance: variance, rows: rows, momentum: momentum)
        } else {
            (mean, variance) = (store.value(name + "/moving_mean").data, store.value(name + "/moving_variance").data)
        }
        let affine = BatchNormAffine(mean: mean, variance: variance, gamma: gammaValue, beta: value(beta).data)
        return BatchNormLayer(gamma: gamma, beta: beta, gammaValue: gammaValue, affine: affine, rows: rows, channels: c,
                              training: training)
    }
}

extension Tape {
    /// y = γ·(x − μ)/√(σ² + ε) + β over the last axis of `x` (rank 2 or 4), followed by
    /// `activation` when given.
    ///
    /// With an activation the two are one op: the normalised values are not kept on the tape but
    /// recomputed (the same arithmetic, so the same bits) where the backward pass needs them, which
    /// saves a tensor of memory and two passes over it. The result equals
    /// `activation(batchNorm(x))` exactly. The output is recorded with a recipe (`Tape.saved`):
    /// the backward pass keeps `x` and rebuilds the output where a later op's backward reads it.
    ///
    /// - Parameters:
    ///   - name: the layer name; parameters `name/gamma`, `name/beta`, `name/moving_mean`,
    ///     `name/moving_variance` are read from (and, in training, the moving ones written to) `store`.
    ///   - momentum: of the running statistics in training (Keras 0.99).
    ///   - rebuilt: whether later ops' backward closures rebuild the output from `x` (false: they
    ///     keep it, trading its memory for a pass of normalisation and activation).
    public func batchNorm(_ x: Var, name: String, store: ParameterStore, activation: Activation? = nil,
                          momentum: Float = kerasBatchNormMomentum, rebuilt: Bool = true) -> Var {
        let layer = batchNormLayer(x, name: name, store: store, momentum: momentum)
        let xv = value(x), affine = layer.affine, rows = layer.rows, c = layer.channels
        let out = batchNormForward(xv, affine, activation: activation, rows: rows, channels: c)
        let recompute = { batchNormForward(xv, affine, activation: activation, rows: rows, channels: c) }
        return record(out, recompute: rebuilt ? recompute : nil) { tape, dy in
            // dγ = Σ dy·x̂, dβ = Σ dy, dx from InputGradientMap. With an activation, g is the
            // gradient at its input z = x·scale + shift, filled into scratch block by block, z
            // recomputed on the fly, just before the sums read the block.
            func backward(_ g: UnsafePointer<Float>, _ dz: UnsafeMutablePointer<Float>?) {
                xv.withPointer { xp in
                    var produce: ((Range<Int>) -> Void)? = nil
                    if let activation, let dz {
                        let box = SendableBox((dz, xp))
                        produce = { block in
                            let (dz, xp) = box.value
                            affine.scale.withUnsafeBufferPointer { s in affine.shift.withUnsafeBufferPointer { t in dy.withPointer { upstream in
                                activation.backward(upstream, normalising: xp, scale: s.baseAddress!, shift: t.baseAddress!, dz,
                                                    rows: block, channels: c)
                            } } }
                        }
                    }
                    // Σ dy and Σ dy·(x − μ), in one pass.
                    let sums = gradientSums(g, xp, mean: affine.mean, rows: rows, channels: c, produce: produce)
                    let map = layer.gradients(tape, sum: sums.sum, product: sums.product)
                    tape.accumulate(x) { dx, add in map.applyInParallel(into: dx, add: add, g: g, x: xp, rows: rows, channels: c) }
                }
            }
            if activation != nil {
                withScratch(xv.count) { dz in backward(UnsafePointer(dz), dz) }
            } else {
                dy.withPointer { backward($0, nil) }
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
