// Depthwise convolution (NHWC input, HWC kernel: one k×k filter per channel, depth multiplier 1),
// forward and backward, as loops over contiguous channels that the compiler vectorises. Forward and
// the input gradient split output rows / images across threads; the kernel gradient sums
// per-thread partials in thread order, so results do not depend on scheduling.

import Artifacts

extension Tape {
    /// Depthwise convolution of `x` [N,H,W,C] with `kernel` [kh,kw,C] (Keras stores [kh,kw,C,1]).
    public func depthwiseConv2d(_ x: Var, _ kernel: Var, stride: Int = 1, padding: Padding = .same) -> Var {
        let input = NHWC(shape(x))
        let k = shape(kernel)
        precondition(k.count == 3 && k[2] == input.c, "depthwise kernel \(k) does not fit input \(input.shape)")
        let (oh, padTop) = convGeometry(input: input.h, kernel: k[0], stride: stride, padding: padding)
        let (ow, padLeft) = convGeometry(input: input.w, kernel: k[1], stride: stride, padding: padding)
        let geometry = DepthwiseGeometry(input: input, kh: k[0], kw: k[1], stride: stride, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow)
        let xv = value(x), kv = value(kernel), savedX = saved(x)
        forwardFlops += 2 * Double(input.n * oh * ow * input.c * k[0] * k[1])
        let out = Tensor(shape: [input.n, oh, ow, input.c]) { y in
            xv.withPointer { xp in kv.withPointer { w in
                let b = SendableBox((y, xp, w))
                Parallel.forEachRange(input.n * oh, grain: 8) { rows in
                    for row in rows { geometry.forwardRow(row, b.value.1, b.value.2, b.value.0) }
                }
            } }
        }
        return record(out) { tape, dy in
            dy.withPointer { g in savedX().withPointer { xp in kv.withPointer { w in
                tape.accumulate(x) { dx in
                    let b = SendableBox((dx, g, w))
                    Parallel.forEachRange(input.n, grain: 1) { images in
                        for n in images { geometry.inputGradient(image: n, b.value.1, b.value.2, b.value.0) }
                    }
                }
                tape.accumulate(kernel) { dw in
                    let size = geometry.kh * geometry.kw * input.c
                    let parts = Parallel.parts(input.n * oh, grain: 8)
                    var partials = [Float](repeating: 0, count: parts * size)
                    partials.withUnsafeMutableBufferPointer { p in
                        let b = SendableBox((p.baseAddress!, g, xp))
                        Parallel.forEachPart(input.n * oh, grain: 8) { part, rows in
                            for row in rows { geometry.kernelGradientRow(row, b.value.1, b.value.2, b.value.0 + part * size) }
                        }
                    }
                    for part in 0..<parts { for i in 0..<size { dw[i] += partials[part * size + i] } }
                }
            } } }
        }
    }
}

/// Shapes and loops of one depthwise convolution.
struct DepthwiseGeometry: Sendable {
    let input: NHWC
    let kh, kw, stride, padTop, padLeft, oh, ow: Int

    /// Calls `body` for each tap of output pixel (oy, ox) of image `n` that falls inside the input,
    /// in tap order, with the offsets of the input pixel and of the tap's weights (channel 0 of each).
    @inline(__always)
    func forEachTap(image n: Int, oy: Int, ox: Int, _ body: (_ pixel: Int, _ tap: Int) -> Void) {
        let c = input.c
        for ky in 0..<kh {
            let iy = oy * stride + ky - padTop
            guard iy >= 0 && iy < input.h else { continue }
            for kx in 0..<kw {
                let ix = ox * stride + kx - padLeft
                guard ix >= 0 && ix < input.w else { continue }
                body(((n * input.h + iy) * input.w + ix) * c, (ky * kw + kx) * c)
            }
        }
    }

    /// Output row `row` (= n·oh + oy): y[n, oy, ox, c] = Σ_taps x[n, iy, ix, c]·w[ky, kx, c], the
    /// taps added in order to a zero. Channels 32 at a time, their sums held in registers across
    /// the taps (the same additions in the same order as through memory, without the round trips).
    @inline(__always)
    func forwardRow(_ row: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let c = input.c, n = row / oh, oy = row % oh
        for ox in 0..<ow {
            let o = y + (row * ow + ox) * c
            var ch = 0
            while ch + 32 <= c {
                var sums = (Lanes8(), Lanes8(), Lanes8(), Lanes8())
                forEachTap(image: n, oy: oy, ox: ox) { pixel, tap in
                    let i = x + pixel + ch, t = w + tap + ch
                    sums.0 += Lanes8(i) * Lanes8(t)
                    sums.1 += Lanes8(i + 8) * Lanes8(t + 8)
                    sums.2 += Lanes8(i + 16) * Lanes8(t + 16)
                    sums.3 += Lanes8(i + 24) * Lanes8(t + 24)
                }
                sums.0.store(o + ch); sums.1.store(o + ch + 8); sums.2.store(o + ch + 16); sums.3.store(o + ch + 24)
                ch += 32
            }
            while ch + 8 <= c {
                var sum = Lanes8()
                forEachTap(image: n, oy: oy, ox: ox) { pixel, tap in sum += Lanes8(x + pixel + ch) * Lanes8(w + tap + ch) }
                sum.store(o + ch)
                ch += 8
            }
            if ch < c {
                let rest = o + ch
                rest.update(repeating: 0, count: c - ch)
                forEachTap(image: n, oy: oy, ox: ox) { pixel, tap in
                    let i = x + pixel, t = w + tap
                    for k in ch..<c { o[k] += i[k] * t[k] }
                }
            }
        }
    }

    /// dx of image `n`: each output pixel's gradient spread back over its taps.
    @inline(__always)
    func inputGradient(image n: Int, _ g: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        let c = input.c
        for oy in 0..<oh {
            for ox in 0..<ow {
                let go = g + ((n * oh + oy) * ow + ox) * c
                forEachTap(image: n, oy: oy, ox: ox) { pixel, tap in
                    let d = dx + pixel, t = w + tap
                    for ch in 0..<c { d[ch] += go[ch] * t[ch] }
                }
            }
        }
    }

    /// Adds output row `row`'s contribution to dw (a per-thread partial): tap by tap, each weight's
    /// products added in the order of the output pixels, 32 channels at a time in registers.
    @inline(__always)
    func kernelGradientRow(_ row: Int, _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>) {
        let c = input.c, n = row / oh, oy = row % oh
        for ky in 0..<kh {
            let iy = oy * stride + ky - padTop
            guard iy >= 0 && iy < input.h else { continue }
            let inputRow = x + (n * input.h + iy) * input.w * c, outputRow = g + row * ow * c
            for kx in 0..<kw {
                // The output columns whose tap kx falls inside the input: 0 ≤ ox·stride + kx − padLeft < w.
                let last = input.w - 1 + padLeft - kx  // ox·stride ≤ last
                guard last >= 0 else { continue }
                let first = max(0, (padLeft - kx + stride - 1) / stride), end = min(ow, last / stride + 1)
                guard first < end else { continue }
                let t = dw + (ky * kw + kx) * c
                @inline(__always) func pixel(_ ox: Int) -> UnsafePointer<Float> { inputRow + (ox * stride + kx - padLeft) * c }
                var ch = 0
                while ch + 32 <= c {
                    var sums = (Lanes8(t + ch), Lanes8(t + ch + 8), Lanes8(t + ch + 16), Lanes8(t + ch + 24))
                    for ox in first..<end {
                        let go = outputRow + ox * c + ch, i = pixel(ox) + ch
                        sums.0 += Lanes8(go) * Lanes8(i)
                        sums.1 += Lanes8(go + 8) * Lanes8(i + 8)
                        sums.2 += Lanes8(go + 16) * Lanes8(i + 16)
                        sums.3 += Lanes8(go + 24) * Lanes8(i + 24)
                    }
                    sums.0.store(t + ch); sums.1.store(t + ch + 8); sums.2.store(t + ch + 16); sums.3.store(t + ch + 24)
                    ch += 32
                }
                while ch + 8 <= c {
                    var sum = Lanes8(t + ch)
                    for ox in first..<end { sum += Lanes8(outputRow + ox * c + ch) * Lanes8(pixel(ox) + ch) }
                    sum.store(t + ch)
                    ch += 8
                }
                for k in ch..<c {
                    for ox in first..<end { t[k] += outputRow[ox * c + k] * pixel(ox)[k] }
                }
            }
        }
    }
}

/// Eight channels in one vector register.
private typealias Lanes8 = SIMD8<Float>

private extension SIMD8 where Scalar == Float {
    @inline(__always) init(_ p: UnsafePointer<Float>) { self = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    @inline(__always) init(_ p: UnsafeMutablePointer<Float>) { self.init(UnsafePointer(p)) }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self) }
}
