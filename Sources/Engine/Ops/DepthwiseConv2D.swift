// Depthwise convolution (NHWC input, HWC kernel: one k×k filter per channel, depth multiplier 1),
// forward and backward, as loops over contiguous channels that the compiler vectorises. Forward and
// the input gradient split output / input rows across threads; the kernel gradient sums
// per-thread partials in thread order, so results do not depend on scheduling. With stride 1 the
// input gradient runs as the forward pass of the flipped kernel (its four-column interior loop),
// with the same additions in the same order.

import Artifacts

extension Tape {
    /// Depthwise convolution of `x` [N,H,W,C] with `kernel` [kh,kw,C] (Keras stores [kh,kw,C,1]).
    public func depthwiseConv2d(_ x: Var, _ kernel: Var, stride: Int = 1, padding: Padding = .same) -> Var {
        let (out, geometry) = depthwiseForward(x, kernel, stride: stride, padding: padding) { geometry, rows, x, w, y in
            for row in rows { geometry.forwardRow(row, x, w, y, add: false) }
        }
        let input = geometry.input, oh = geometry.oh
        let kv = value(kernel), savedX = saved(x)
        return record(out) { tape, dy in
            dy.withPointer { g in savedX().withPointer { xp in kv.withPointer { w in
                tape.accumulate(x, writing: { dx, add in
                    if let transposed = geometry.transposed {
                        // Stride 1: dx is the forward pass of dy through the flipped kernel.
                        withScratch(kv.count) { flipped in
                            geometry.flip(w, into: flipped)
                            let b = SendableBox((dx, g, UnsafePointer(flipped)))
                            Parallel.forEachRange(input.n * input.h, grain: 8) { rows in
                                for row in rows { transposed.forwardRow(row, b.value.1, b.value.2, b.value.0, add: add) }
                            }
                        }
                        return
                    }
                    let b = SendableBox((dx, g, w))
                    Parallel.forEachRange(input.n * input.h, grain: 8) { rows in
                        for row in rows { geometry.inputGradientRow(row, b.value.1, b.value.2, b.value.0, add: add) }
                    }
                })
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

extension Tape {
    /// The geometry of `x` [N,H,W,C] convolved with `kernel` [kh,kw,C], and the output, made by
    /// `rows(geometry, rows, x, kernel, output)` over fixed parts of its N·oh rows in parallel.
    func depthwiseForward(
        _ x: Var, _ kernel: Var, stride: Int, padding: Padding,
        _ rows: @escaping (DepthwiseGeometry, Range<Int>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) -> (Tensor, DepthwiseGeometry) {
        let input = NHWC(shape(x))
        let k = shape(kernel)
        precondition(k.count == 3 && k[2] == input.c, "depthwise kernel \(k) does not fit input \(input.shape)")
        let (oh, padTop) = convGeometry(input: input.h, kernel: k[0], stride: stride, padding: padding)
        let (ow, padLeft) = convGeometry(input: input.w, kernel: k[1], stride: stride, padding: padding)
        let geometry = DepthwiseGeometry(input: input, kh: k[0], kw: k[1], stride: stride, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow)
        let xv = value(x), kv = value(kernel)
        forwardFlops += 2 * Double(input.n * oh * ow * input.c * k[0] * k[1])
        let out = Tensor(shape: [input.n, oh, ow, input.c]) { y in
            xv.withPointer { xp in kv.withPointer { w in
                let b = SendableBox((y, xp, w, rows))
                Parallel.forEachRange(input.n * oh, grain: 8) { part in
                    let (y, xp, w, rows) = b.value
                    rows(geometry, part, xp, w, y)
                }
            } }
        }
        return (out, geometry)
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

    /// The output columns whose every tap column falls inside the input: 0 ≤ ox·stride − padLeft
    /// and ox·stride + kw − 1 − padLeft < w.
    var interiorColumns: Range<Int> {
        let first = (padLeft + stride - 1) / stride
        let last = input.w - kw + padLeft  // ox·stride ≤ last
        guard last >= 0 else { return 0..<0 }
        return min(first, ow)..<max(min(first, ow), min(ow, last / stride + 1))
    }

    /// With stride 1, the input gradient is a forward pass: dx[iy, ix] gathers dy[iy + padTop − ky,
    /// ix + padLeft − kx]·w[ky, kx] over the taps, which is dy convolved with the kernel flipped in
    /// both axes (`flip`) at padding kh − 1 − padTop, kw − 1 − padLeft, onto the input's size. In the
    /// flipped kernel's tap order (ascending) the taps come from last to first, the order of
    /// `inputGradientRow`, so the sums, and their bits, are the same. Nil for other strides.
    var transposed: DepthwiseGeometry? {
        guard stride == 1 else { return nil }
        return DepthwiseGeometry(input: NHWC(n: input.n, h: oh, w: ow, c: input.c), kh: kh, kw: kw, stride: 1,
                                 padTop: kh - 1 - padTop, padLeft: kw - 1 - padLeft, oh: input.h, ow: input.w)
    }

    /// The kernel [kh, kw, c] flipped in both axes: tap (ky, kx) to (kh − 1 − ky, kw − 1 − kx).
    func flip(_ w: UnsafePointer<Float>, into flipped: UnsafeMutablePointer<Float>) {
        let c = input.c
        for ky in 0..<kh {
            for kx in 0..<kw {
                (flipped + ((kh - 1 - ky) * kw + (kw - 1 - kx)) * c).update(from: w + (ky * kw + kx) * c, count: c)
            }
        }
    }

    /// Output row `row` (= n·oh + oy): y[n, oy, ox, c] = Σ_taps x[n, iy, ix, c]·w[ky, kx, c], the
    /// taps added in order to a zero (to y's value if `add`), their sums held in registers across
    /// the taps (the same additions in the same order as through memory, without the round trips).
    /// Interior columns go four at a time, 16 channels at a time, each weight vector loaded once for
    /// the four; border columns and the channels past the last 16 go pixel by pixel.
    @inline(__always)
    func forwardRow(_ row: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                    add: Bool) {
        let c = input.c, n = row / oh, oy = row % oh
        let interior = interiorColumns, wide = c / 16 * 16
        let top = padTop - oy * stride  // tap row ky reads input row ky − top
        let rows = max(0, top)..<max(max(0, top), min(kh, input.h + top))
        var ox = 0
        while ox < ow {
            guard interior.contains(ox) && ox + 4 <= interior.upperBound && wide > 0 else {
                forwardPixel(n: n, oy: oy, ox: ox, from: 0, add: add, x, w, y + (row * ow + ox) * c)
                ox += 1
                continue
            }
            let o = y + (row * ow + ox) * c
            let step = stride * c  // from one output column's input pixel to the next's
            for ch in Swift.stride(from: 0, to: wide, by: 16) {
                @inline(__always) func initial(_ p: Int) -> (Lanes8, Lanes8) {
                    add ? (Lanes8(o + p * c + ch), Lanes8(o + p * c + ch + 8)) : (Lanes8(), Lanes8())
                }
                var s0 = initial(0), s1 = initial(1), s2 = initial(2), s3 = initial(3)
                for ky in rows {
                    let iy = oy * stride + ky - padTop
                    var i = x + ((n * input.h + iy) * input.w + ox * stride - padLeft) * c + ch
                    var t = w + ky * kw * c + ch
                    for _ in 0..<kw {
                        let t0 = Lanes8(t), t1 = Lanes8(t + 8)
                        s0.0 += Lanes8(i) * t0; s0.1 += Lanes8(i + 8) * t1
                        s1.0 += Lanes8(i + step) * t0; s1.1 += Lanes8(i + step + 8) * t1
                        s2.0 += Lanes8(i + 2 * step) * t0; s2.1 += Lanes8(i + 2 * step + 8) * t1
                        s3.0 += Lanes8(i + 3 * step) * t0; s3.1 += Lanes8(i + 3 * step + 8) * t1
                        i += c
                        t += c
                    }
                }
                s0.0.store(o + ch); s0.1.store(o + ch + 8)
                s1.0.store(o + c + ch); s1.1.store(o + c + ch + 8)
                s2.0.store(o + 2 * c + ch); s2.1.store(o + 2 * c + ch + 8)
                s3.0.store(o + 3 * c + ch); s3.1.store(o + 3 * c + ch + 8)
            }
            if wide < c {
                for p in 0..<4 { forwardPixel(n: n, oy: oy, ox: ox + p, from: wide, add: add, x, w, o + p * c) }
            }
            ox += 4
        }
    }

    /// Walks output rows `rows` (of n·oh) band by band with map(x) in cache: the input rows a band
    /// of output rows reads (one image's, at most about 256 KiB, at least one kernel's height) are
    /// mapped into a band buffer, rows shared with the previous band moved to its front rather than
    /// mapped again, and `body(n, outputRows, band, part)` runs with the band as an image of its own,
    /// `part`, whose padding puts its rows where they are: output row `row` of `part` is row
    /// outputRows.lowerBound + row of image n and reads the same taps of the same values.
    ///
    /// - Parameter map: `map(source, destination, pixels)` maps `pixels` pixels of C channels.
    func forEachMappedBand(_ rows: Range<Int>, _ x: UnsafePointer<Float>,
                           _ map: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                           _ body: (_ n: Int, _ outputRows: Range<Int>, _ band: UnsafePointer<Float>, _ part: DepthwiseGeometry) -> Void) {
        let c = input.c, rowSize = input.w * c
        let bandRows = max(kh, (64 << 10) / max(rowSize, 1))  // input rows a band holds
        let outputRows = max(1, (bandRows - kh) / stride + 1)  // output rows a band computes
        withScratch((outputRows - 1) * stride * rowSize + kh * rowSize) { band in
            var held: (n: Int, lo: Int, hi: Int)? = nil  // the input rows of image n in the band
            var r = rows.lowerBound
            while r < rows.upperBound {
                let n = r / oh, first = r % oh
                let last = min(oh, first + outputRows, rows.upperBound - n * oh)
                let lo = max(0, first * stride - padTop), hi = min(input.h, (last - 1) * stride - padTop + kh)
                var from = lo
                if let held, held.n == n, held.lo <= lo, lo < held.hi {
                    band.update(from: band + (lo - held.lo) * rowSize, count: (held.hi - lo) * rowSize)
                    from = held.hi
                }
                for iy in from..<hi { map(x + (n * input.h + iy) * rowSize, band + (iy - lo) * rowSize, input.w) }
                held = (n, lo, hi)
                let part = DepthwiseGeometry(input: NHWC(n: 1, h: hi - lo, w: input.w, c: c), kh: kh, kw: kw, stride: stride,
                                             padTop: padTop + lo - first * stride, padLeft: padLeft, oh: last - first, ow: ow)
                body(n, first..<last, band, part)
                r = n * oh + last
            }
        }
    }

    /// Output rows `rows` (of n·oh) of the convolution of map(x), band by band (`forEachMappedBand`):
    /// each output pixel sums the same taps of the same values in the same order as the
    /// convolution of map(x) written out.
    func forwardMappingBands(_ rows: Range<Int>, _ x: UnsafePointer<Float>,
                             _ map: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                             _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let c = input.c
        forEachMappedBand(rows, x, map) { n, outputRows, band, part in
            let out = y + (n * oh + outputRows.lowerBound) * ow * c
            for row in 0..<outputRows.count { part.forwardRow(row, band, w, out, add: false) }
        }
    }

    /// The backward pass of the convolution of map(x) over output rows `rows` (of n·oh), band by
    /// band (`forEachMappedBand`), map(x) never written: adds each output row's kernel gradient to
    /// `dw` (a per-thread partial, rows in order, as `kernelGradientRow` does), and for each input
    /// row the band owns (`ownedInputRows`) makes that row's input gradient, the gradient at map(x),
    /// in a row of scratch and hands it to `inputGradient(dx, row)` (row = n·h + iy) while the
    /// band's x rows are in cache. The same sums in the same order as the unfused backward pass.
    ///
    /// - Parameter flipped: the kernel flipped (`flip`) when the stride is 1.
    func backwardMappingBands(_ rows: Range<Int>, _ x: UnsafePointer<Float>,
                              _ map: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                              dy g: UnsafePointer<Float>, _ w: UnsafePointer<Float>, flipped: UnsafePointer<Float>,
                              dw: UnsafeMutablePointer<Float>, _ inputGradient: (UnsafePointer<Float>, Int) -> Void) {
        let c = input.c, transposed = transposed
        withScratch(input.w * c) { dx in
            forEachMappedBand(rows, x, map) { n, outputRows, band, part in
                let image = g + n * oh * ow * c
                let out = image + outputRows.lowerBound * ow * c
                for row in 0..<outputRows.count { part.kernelGradientRow(row, out, band, dw) }
                for iy in ownedInputRows(outputRows) {
                    if let transposed {
                        // Row iy of the transposed pass, as an image with one output row.
                        let one = DepthwiseGeometry(input: NHWC(n: 1, h: oh, w: ow, c: c), kh: kh, kw: kw, stride: 1,
                                                    padTop: transposed.padTop - iy, padLeft: transposed.padLeft, oh: 1, ow: input.w)
                        one.forwardRow(0, image, flipped, dx, add: false)
                    } else {
                        // Input row iy as an image with one row whose readers keep their rows.
                        let one = DepthwiseGeometry(input: NHWC(n: 1, h: 1, w: input.w, c: c), kh: kh, kw: kw, stride: stride,
                                                    padTop: padTop + iy, padLeft: padLeft, oh: oh, ow: ow)
                        one.inputGradientRow(0, image, w, dx, add: false)
                    }
                    inputGradient(dx, n * input.h + iy)
                }
            }
        }
    }

    /// The input rows of an image whose input gradient the band of output rows `outputRows` makes
    /// in `backwardMappingBands`: from the first input row of the band's first output row to that of
    /// the next band's (the image's first and last rows to its first and last bands). Consecutive
    /// bands own consecutive runs, which cover the image once, each within the rows the band maps
    /// (with same padding) since a tap reaches at least a stride.
    func ownedInputRows(_ outputRows: Range<Int>) -> Range<Int> {
        func start(_ oy: Int) -> Int {
            oy == 0 ? 0 : oy == oh ? input.h : min(input.h, max(0, oy * stride - padTop))
        }
        return start(outputRows.lowerBound)..<start(outputRows.upperBound)
    }

    /// Channels `from`… of output pixel (oy, ox) of image `n` at `o` (added to its value if `add`).
    @inline(__always)
    func forwardPixel(n: Int, oy: Int, ox: Int, from start: Int, add: Bool, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                      _ o: UnsafeMutablePointer<Float>) {
        sumProducts(into: o, from: start, channels: input.c, add: add, x, w) { forEachTap(image: n, oy: oy, ox: ox, $0) }
    }

    /// Calls `body` for each output pixel of image `n` that reads input pixel (iy, ix), with the
    /// offsets of that output pixel and of the tap through which it reads (channel 0 of each), in
    /// the order of the output pixels (row-major): taps from last to first.
    @inline(__always)
    func forEachReader(image n: Int, iy: Int, ix: Int, _ body: (_ pixel: Int, _ tap: Int) -> Void) {
        let c = input.c
        for ky in (0..<kh).reversed() {
            let sy = iy + padTop - ky
            guard sy >= 0 && sy % stride == 0 && sy / stride < oh else { continue }
            for kx in (0..<kw).reversed() {
                let sx = ix + padLeft - kx
                guard sx >= 0 && sx % stride == 0 && sx / stride < ow else { continue }
                body(((n * oh + sy / stride) * ow + sx / stride) * c, (ky * kw + kx) * c)
            }
        }
    }

    /// dx of input row `row` (= n·h + iy): each pixel gathers dy·w over the output pixels that
    /// read it, added in the order of those pixels to dx's value (to zero unless `add`): the
    /// additions, in the same order, of spreading each output pixel's gradient back over its taps,
    /// with the sums held in registers, 32 channels at a time.
    @inline(__always)
    func inputGradientRow(_ row: Int, _ g: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, add: Bool) {
        let c = input.c, n = row / input.h, iy = row % input.h
        for ix in 0..<input.w {
            sumProducts(into: dx + (row * input.w + ix) * c, from: 0, channels: c, add: add, g, w) {
                forEachReader(image: n, iy: iy, ix: ix, $0)
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

/// o[ch] = (o[ch] if `add`, else 0) + Σ a[pixel + ch]·w[tap + ch] for channels `start`..<`c`, the
/// products added in the order `terms` gives the (pixel, tap) offsets: 32 channels at a time in
/// registers, then eight, then one.
@inline(__always)
private func sumProducts(into o: UnsafeMutablePointer<Float>, from start: Int, channels c: Int, add: Bool,
                         _ a: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                         terms: (_ body: (_ pixel: Int, _ tap: Int) -> Void) -> Void) {
    @inline(__always) func initial(_ p: UnsafeMutablePointer<Float>) -> Lanes8 { add ? Lanes8(p) : Lanes8() }
    var ch = start
    while ch + 32 <= c {
        var sums = (initial(o + ch), initial(o + ch + 8), initial(o + ch + 16), initial(o + ch + 24))
        terms { pixel, tap in
            let i = a + pixel + ch, t = w + tap + ch
            sums.0 += Lanes8(i) * Lanes8(t)
            sums.1 += Lanes8(i + 8) * Lanes8(t + 8)
            sums.2 += Lanes8(i + 16) * Lanes8(t + 16)
            sums.3 += Lanes8(i + 24) * Lanes8(t + 24)
        }
        sums.0.store(o + ch); sums.1.store(o + ch + 8); sums.2.store(o + ch + 16); sums.3.store(o + ch + 24)
        ch += 32
    }
    while ch + 8 <= c {
        var sum = initial(o + ch)
        terms { pixel, tap in sum += Lanes8(a + pixel + ch) * Lanes8(w + tap + ch) }
        sum.store(o + ch)
        ch += 8
    }
    if ch < c {
        if !add { (o + ch).update(repeating: 0, count: c - ch) }
        terms { pixel, tap in
            let i = a + pixel, t = w + tap
            for k in ch..<c { o[k] += i[k] * t[k] }
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
