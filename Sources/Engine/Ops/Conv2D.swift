// k×k convolution (NHWC input, HWIO kernel), forward and backward, with TensorFlow's padding rules.
// A 1×1 stride-1 convolution is one GEMM over all pixels; other shapes gather the patches of a band
// of one image's output pixels at a time (im2col) and multiply, so the patch matrix stays in cache
// between being written and being read, and the scratch is one band per thread.

import Artifacts

/// Padding modes of Keras convolutions.
public enum Padding: Sendable, Equatable {
    /// TensorFlow "same": out = ceil(in/stride); the total padding max((out−1)·s + k − in, 0) is split
    /// with the smaller half at the top/left (stride 2 on even sizes pads only bottom/right for k = 3).
    case same
    /// No padding: out = (in − k)/stride + 1.
    case valid
}

/// Output size and leading pad of one spatial axis.
func convGeometry(input: Int, kernel: Int, stride: Int, padding: Padding) -> (output: Int, padBefore: Int) {
    switch padding {
    case .valid:
        return ((input - kernel) / stride + 1, 0)
    case .same:
        let output = (input + stride - 1) / stride
        let total = max((output - 1) * stride + kernel - input, 0)
        return (output, total / 2)
    }
}

/// Patch geometry shared by im2col and col2im.
struct ConvShape {
    let input: NHWC
    let kh, kw, stride, padTop, padLeft, oh, ow: Int

    var patch: Int { kh * kw * input.c }

    /// Output pixels per band: about 1 MiB of patches (a fixed size, so results do not depend on the
    /// thread count), at least one output row's worth of 64 pixels.
    var bandPixels: Int { min(oh * ow, max(64, (1 << 18) / patch)) }

    /// The bands of one image's output pixels, in order.
    var bands: StrideTo<Int> { Swift.stride(from: 0, to: oh * ow, by: bandPixels) }
}

/// Gathers the patches of image `n`'s output pixels `pixels` (row-major indices oy·ow + ox) into
/// `cols` (one row of kh·kw·c per pixel), zeros where padding.
func im2col(_ x: UnsafePointer<Float>, _ s: ConvShape, image n: Int, pixels: Range<Int>,
            into cols: UnsafeMutablePointer<Float>) {
    let c = s.input.c
    for pixel in pixels {
        let oy = pixel / s.ow, ox = pixel % s.ow
        var dst = cols + (pixel - pixels.lowerBound) * s.patch
        for ky in 0..<s.kh {
            let iy = oy * s.stride + ky - s.padTop
            for kx in 0..<s.kw {
                let ix = ox * s.stride + kx - s.padLeft
                if iy >= 0 && iy < s.input.h && ix >= 0 && ix < s.input.w {
                    let src = x + ((n * s.input.h + iy) * s.input.w + ix) * c
                    for i in 0..<c { dst[i] = src[i] }  // inline: c is small, a memmove call is not
                } else {
                    for i in 0..<c { dst[i] = 0 }
                }
                dst += c
            }
        }
    }
}

/// Adds the patch gradients `cols` of image `n`'s output pixels `pixels` back onto the input gradient.
func col2im(_ cols: UnsafePointer<Float>, _ s: ConvShape, image n: Int, pixels: Range<Int>,
            into dx: UnsafeMutablePointer<Float>) {
    let c = s.input.c
    for pixel in pixels {
        let oy = pixel / s.ow, ox = pixel % s.ow
        var src = cols + (pixel - pixels.lowerBound) * s.patch
        for ky in 0..<s.kh {
            let iy = oy * s.stride + ky - s.padTop
            for kx in 0..<s.kw {
                let ix = ox * s.stride + kx - s.padLeft
                if iy >= 0 && iy < s.input.h && ix >= 0 && ix < s.input.w {
                    let dst = dx + ((n * s.input.h + iy) * s.input.w + ix) * c
                    for i in 0..<c { dst[i] += src[i] }
                }
                src += c
            }
        }
    }
}

extension Tape {
    /// Convolution of `x` [N,H,W,Cin] with `kernel` [kh,kw,Cin,Cout], plus `bias` [Cout] if given.
    ///
    /// - Precondition: ranks and channel counts agree.
    public func conv2d(_ x: Var, _ kernel: Var, bias: Var? = nil, stride: Int = 1, padding: Padding = .same) -> Var {
        let input = NHWC(shape(x))
        let k = shape(kernel)
        precondition(k.count == 4 && k[2] == input.c, "conv kernel \(k) does not fit input \(input.shape)")
        let (oh, padTop) = convGeometry(input: input.h, kernel: k[0], stride: stride, padding: padding)
        let (ow, padLeft) = convGeometry(input: input.w, kernel: k[1], stride: stride, padding: padding)
        let s = ConvShape(input: input, kh: k[0], kw: k[1], stride: stride, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow)
        let cout = k[3]
        let pointwise = s.kh == 1 && s.kw == 1 && stride == 1
        let winograd = Winograd.enabled && s.kh == 3 && s.kw == 3 && stride == 1
        forwardFlops += 2 * Double(input.n * oh * ow) * Double(s.patch * cout)
        let xv = value(x), kv = value(kernel)
        let pixels = oh * ow
        let out = Tensor(shape: [input.n, oh, ow, cout]) { y in
            xv.withPointer { xp in
                kv.withPointer { w in
                    if pointwise {
                        BLAS.gemmRowsSplit(m: input.n * pixels, n: cout, k: input.c, a: xp, lda: input.c, b: w, ldb: cout,
                                           beta: 0, c: y, ldc: cout)
                    } else if winograd {
                        winogradConvolveImages(xp, input, padTop: s.padTop, padLeft: s.padLeft,
                                               filters: winogradFilters(w, cin: input.c, cout: cout, rotated: false),
                                               cout: cout, into: y, oh: oh, ow: ow, accumulate: false)
                    } else {
                        // Images split across threads, each with its own patch buffer.
                        let box = SendableBox((xp, w, y))
                        Parallel.forEachRange(input.n, grain: 1) { images in
                            let (xp, w, y) = box.value
                            let cols = UnsafeMutablePointer<Float>.allocate(capacity: s.bandPixels * s.patch + BLAS.readSlack)
                            defer { cols.deallocate() }
                            for n in images {
                                for start in s.bands {
                                    let band = start..<min(start + s.bandPixels, pixels)
                                    im2col(xp, s, image: n, pixels: band, into: cols)
                                    BLAS.sgemm(transposeA: false, transposeB: false, m: band.count, n: cout, k: s.patch,
                                               alpha: 1, a: cols, lda: s.patch, b: w, ldb: cout, beta: 0,
                                               c: y + (n * pixels + start) * cout, ldc: cout)
                                }
                            }
                        }
                    }
                }
            }
            if let bias { addBias(y, rows: input.n * pixels, value(bias)) }
        }
        return record(out) { tape, dy in
            dy.withPointer { g in
                xv.withPointer { xp in
                    kv.withPointer { w in
                        if pointwise {
                            tape.accumulate(kernel) { dw in
                                BLAS.gemmTransposedAccumulate(m: input.c, n: cout, k: input.n * pixels, a: xp, lda: input.c,
                                                              b: g, ldb: cout, c: dw)
                            }
                            tape.accumulate(x) { dx, add in
                                BLAS.gemmRowsSplit(m: input.n * pixels, n: input.c, k: cout, a: g, lda: cout, b: w, ldb: cout,
                                                   beta: add ? 1 : 0, c: dx, ldc: input.c, transposeB: true)
                            }
                        } else if winograd {
                            tape.accumulate(kernel) { dw in
                                winogradKernelGradient(xp, input, padTop: s.padTop, padLeft: s.padLeft, dy: g, oh: oh, ow: ow,
                                                       cout: cout, into: dw)
                            }
                            // The input gradient of a 3×3 stride-1 convolution is the convolution of dy with
                            // the kernel rotated by 180°, channels swapped, padded by 2 − pad.
                            tape.accumulate(x) { dx, add in
                                winogradConvolveImages(g, NHWC(n: input.n, h: oh, w: ow, c: cout),
                                                       padTop: 2 - s.padTop, padLeft: 2 - s.padLeft,
                                                       filters: winogradFilters(w, cin: input.c, cout: cout, rotated: true),
                                                       cout: input.c, into: dx, oh: input.h, ow: input.w, accumulate: add)
                            }
                        } else {
                            // Per thread: its images' input gradients, and a partial kernel gradient
                            // summed in part order afterwards.
                            let parts = Parallel.parts(input.n, grain: 1)
                            let size = s.patch * cout
                            var partials = [Float](repeating: 0, count: parts * size + BLAS.readSlack)
                            tape.accumulate(x) { dx in
                                partials.withUnsafeMutableBufferPointer { p in
                                    let box = SendableBox((xp, w, g, dx, p.baseAddress!))
                                    Parallel.forEachPart(input.n, grain: 1) { part, images in
                                        let (xp, w, g, dx, p) = box.value
                                        let cols = UnsafeMutablePointer<Float>.allocate(capacity: s.bandPixels * s.patch + BLAS.readSlack)
                                        defer { cols.deallocate() }
                                        for n in images {
                                            for start in s.bands {
                                                let band = start..<min(start + s.bandPixels, pixels)
                                                let gb = g + (n * pixels + start) * cout
                                                im2col(xp, s, image: n, pixels: band, into: cols)
                                                BLAS.sgemm(transposeA: true, transposeB: false, m: s.patch, n: cout, k: band.count,
                                                           alpha: 1, a: cols, lda: s.patch, b: gb, ldb: cout, beta: 1,
                                                           c: p + part * size, ldc: cout)
                                                BLAS.sgemm(transposeA: false, transposeB: true, m: band.count, n: s.patch, k: cout,
                                                           alpha: 1, a: gb, lda: cout, b: w, ldb: cout, beta: 0, c: cols, ldc: s.patch)
                                                col2im(cols, s, image: n, pixels: band, into: dx)
                                            }
                                        }
                                    }
                                }
                            }
                            tape.accumulate(kernel) { dw in
                                for part in 0..<parts { for i in 0..<size { dw[i] += partials[part * size + i] } }
                            }
                        }
                    }
                }
                if let bias { tape.accumulate(bias) { db in sumRows(g, rows: input.n * pixels, columns: cout, into: db) } }
            }
        }
    }
}

/// y[r, c] += bias[c] for every row.
func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, _ bias: Tensor) {
    let c = bias.count
    bias.withPointer { b in
        for r in 0..<rows {
            let row = y + r * c
            for i in 0..<c { row[i] += b[i] }
        }
    }
}

/// out[c] += Σ_r g[r, c].
func sumRows(_ g: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = g + r * columns
        for i in 0..<columns { out[i] += row[i] }
    }
}
