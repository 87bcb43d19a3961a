// The 1×1 convolution of an input scaled per image and channel — squeeze-excitation's product and
// the projection that reads it (EfficientNet's MBConv), as one op that never builds the product.
// y[n, p, :] = Σ_c x[n, p, c]·s[n, c]·W[c, :]: each image's pixels run through one GEMM against
// W scaled by its row of s, so the product's pass over memory (and, in training, the tensor kept
// or rebuilt for the backward pass) is gone. Backward: dx = dy·(s ⊙ W)ᵀ per image, and from
// G_n = x_nᵀ·dy_n per image, dW = Σ_n diag(s_n)·G_n and ds[n, c] = Σ_j W[c, j]·G_n[c, j].

import Artifacts

extension Tape {
    /// A 1×1 convolution (stride 1, no bias) of `x` [N,H,W,C] with every channel of image n first
    /// multiplied by `s[n, c]` (`s` [N,C]); `kernel` [1,1,C,Cout] (Keras' layout).
    public func pointwiseConv2d(_ x: Var, scaledBy s: Var, _ kernel: Var) -> Var {
        let input = NHWC(shape(x)), k = shape(kernel)
        precondition(k.count == 4 && k[0] == 1 && k[1] == 1 && k[2] == input.c,
                     "1×1 kernel \(k) does not fit input \(input.shape)")
        precondition(shape(s) == [input.n, input.c], "channel scales \(shape(s)) do not fit \(input.shape)")
        let cin = input.c, cout = k[3], area = input.h * input.w
        let xv = value(x), sv = value(s), kv = value(kernel), savedX = saved(x)
        forwardFlops += 2 * Double(input.n * area * cin * cout)
        let passes = ScaledPointwise(images: input.n, area: area, cin: cin, cout: cout)
        let out = Tensor(shape: [input.n, input.h, input.w, cout]) { y in
            xv.withPointer { xp in sv.withPointer { sp in kv.withPointer { w in
                passes.multiply(xp, scales: sp, w, into: y, add: false, transposed: false)
            } } }
        }
        return record(out) { tape, dy in
            let xv = savedX()
            dy.withPointer { g in xv.withPointer { xp in sv.withPointer { sp in kv.withPointer { w in
                tape.accumulate(x, writing: { dx, add in
                    passes.multiply(g, scales: sp, w, into: dx, add: add, transposed: true)
                })
                var ds = [Float](repeating: 0, count: input.n * cin)
                tape.accumulate(kernel) { dw in passes.kernelAndScaleGradients(xp, g, scales: sp, w, dw: dw, ds: &ds) }
                tape.accumulate(s) { dsp in for i in ds.indices { dsp[i] += ds[i] } }
            } } } }
        }
    }
}

/// The shapes and passes of one scaled 1×1 convolution: `images` of `area` pixels, `cin` → `cout`.
struct ScaledPointwise {
    let images, area, cin, cout: Int

    /// Per image n: out_n = a_n·(diag(s_n)·W) [area × cout] (`transposed` false: a is x [area × cin]),
    /// or out_n = a_n·(diag(s_n)·W)ᵀ [area × cin] (`transposed`: a is dy [area × cout]); written, or
    /// added to `out` if `add`. The pixels are split across threads; a thread's run of pixels
    /// is cut at image boundaries, each piece one GEMM against its image's scaled kernel.
    func multiply(_ a: UnsafePointer<Float>, scales s: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                  into out: UnsafeMutablePointer<Float>, add: Bool, transposed: Bool) {
        let (inner, outer) = transposed ? (cout, cin) : (cin, cout)
        let box = SendableBox((a, s, w, out))
        Parallel.forEachRange(images * area, grain: 64) { pixels in
            let (a, s, w, out) = box.value
            withScratch(cin * cout) { scaled in
                var start = pixels.lowerBound
                while start < pixels.upperBound {
                    let n = start / area, end = min(pixels.upperBound, (n + 1) * area)
                    scaleRows(w, by: s + n * cin, into: scaled)
                    BLAS.sgemm(transposeA: false, transposeB: transposed, m: end - start, n: outer, k: inner, alpha: 1,
                               a: a + start * inner, lda: inner, b: scaled, ldb: cout, beta: add ? 1 : 0,
                               c: out + start * outer, ldc: outer)
                    start = end
                }
            }
        }
    }

    /// dW += Σ_n diag(s_n)·G_n and ds[n, c] = Σ_j W[c, j]·G_n[c, j] with G_n = x_nᵀ·dy_n, images split
    /// across threads, each part's dW partial added in part order.
    func kernelAndScaleGradients(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, scales s: UnsafePointer<Float>,
                                 _ w: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>, ds: inout [Float]) {
        let size = cin * cout, parts = Parallel.parts(images, grain: 1)
        var partials = [Float](repeating: 0, count: parts * size)
        partials.withUnsafeMutableBufferPointer { p in ds.withUnsafeMutableBufferPointer { d in
            let box = SendableBox((x, g, s, w, p.baseAddress!, d.baseAddress!))
            Parallel.forEachPart(images, grain: 1) { part, images in
                let (x, g, s, w, p, d) = box.value
                let partial = p + part * size
                withScratch(size) { gram in
                    for n in images {
                        BLAS.sgemm(transposeA: true, transposeB: false, m: cin, n: cout, k: area, alpha: 1,
                                   a: x + n * area * cin, lda: cin, b: g + n * area * cout, ldb: cout, beta: 0,
                                   c: gram, ldc: cout)
                        let sn = s + n * cin, dn = d + n * cin
                        for c in 0..<cin {
                            let gc = gram + c * cout, wc = w + c * cout, pc = partial + c * cout
                            let scale = sn[c]
                            var sum: Float = 0
                            for j in 0..<cout {
                                pc[j] += scale * gc[j]
                                sum += wc[j] * gc[j]
                            }
                            dn[c] = sum
                        }
                    }
                }
            }
        } }
        partials.withUnsafeBufferPointer { p in
            for part in 0..<parts {
                let partial = p.baseAddress! + part * size
                for i in 0..<size { dw[i] += partial[i] }
            }
        }
    }

    /// scaled[c, :] = s[c]·w[c, :].
    private func scaleRows(_ w: UnsafePointer<Float>, by s: UnsafePointer<Float>, into scaled: UnsafeMutablePointer<Float>) {
        for c in 0..<cin {
            let wc = w + c * cout, out = scaled + c * cout, scale = s[c]
            for j in 0..<cout { out[j] = scale * wc[j] }
        }
    }
}
