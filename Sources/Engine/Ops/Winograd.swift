// Winograd F(2×2, 3×3) for stride-1 3×3 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", CVPR 2016): every 4×4 input tile (stride 2) and every 3×3 filter
// go to a 4×4 transform domain, where the convolution becomes 16 independent GEMMs
// (tiles × Cin by Cin × Cout) — 16 multiplies per 2×2 outputs instead of 36, 2.25× fewer — and the
// 2×2 outputs come back through Aᵀ·M·A. Transforms (all exact in binary floating point but G's ½):
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]
//   Aᵀ = [1 1 1 0; 0 1 −1 −1]
// The U-Net decoder's and the classifier head's 3×3 convolutions run forward and input-gradient
// passes here (the input gradient is the same convolution of dy with the kernel rotated by 180°
// and its channel axes swapped); the kernel gradient keeps the patch GEMM.

/// The 16 transformed filters U[ξ] = (G·g·Gᵀ)[ξ], each a [Cin × Cout] matrix, from an HWIO 3×3
/// kernel; `rotated` gives those of the input-gradient pass: g'[ky][kx][o][i] = g[2−ky][2−kx][i][o].
func winogradFilters(_ kernel: UnsafePointer<Float>, cin: Int, cout: Int, rotated: Bool) -> [Float] {
    // In the rotated pass the roles swap: rows of U are the original output channels.
    let rows = rotated ? cout : cin, columns = rotated ? cin : cout
    var u = [Float](repeating: 0, count: 16 * rows * columns)
    let g = UnsafeMutablePointer<Float>.allocate(capacity: 9), gg = UnsafeMutablePointer<Float>.allocate(capacity: 12)
    defer { g.deallocate(); gg.deallocate() }
    u.withUnsafeMutableBufferPointer { u in
        let stride = rows * columns
        for r in 0..<rows {
            for c in 0..<columns {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        g[ky * 3 + kx] = rotated ? kernel[(((2 - ky) * 3 + (2 - kx)) * cin + c) * cout + r]
                            : kernel[((ky * 3 + kx) * cin + r) * cout + c]
                    }
                }
                // G·g: 4×3, then (G·g)·Gᵀ: 4×4.
                for kx in 0..<3 {
                    let g0 = g[kx], g1 = g[3 + kx], g2 = g[6 + kx]
                    gg[kx] = g0
                    gg[3 + kx] = 0.5 * (g0 + g1 + g2)
                    gg[6 + kx] = 0.5 * (g0 - g1 + g2)
                    gg[9 + kx] = g2
                }
                for a in 0..<4 {
                    let g0 = gg[a * 3], g1 = gg[a * 3 + 1], g2 = gg[a * 3 + 2]
                    let base = a * 4 * stride + r * columns + c
                    u[base] = g0
                    u[base + stride] = 0.5 * (g0 + g1 + g2)
                    u[base + 2 * stride] = 0.5 * (g0 - g1 + g2)
                    u[base + 3 * stride] = g2
                }
            }
        }
    }
    return u
}

/// Every image of `x` through `winogradConvolve`, the images split across threads.
func winogradConvolveImages(_ x: UnsafePointer<Float>, _ input: NHWC, padTop: Int, padLeft: Int, filters: [Float], cout: Int,
                            into y: UnsafeMutablePointer<Float>, oh: Int, ow: Int, accumulate: Bool) {
    filters.withUnsafeBufferPointer { u in
        let box = SendableBox((x, u.baseAddress!, y))
        Parallel.forEachRange(input.n, grain: 1) { images in
            let (x, u, y) = box.value
            for n in images {
                winogradConvolve(x + n * input.h * input.w * input.c, h: input.h, w: input.w, cin: input.c, padTop: padTop,
                                 padLeft: padLeft, filters: u, cout: cout, into: y + n * oh * ow * cout, oh: oh, ow: ow,
                                 accumulate: accumulate)
            }
        }
    }
}

/// One image: y (oh×ow×cout) = (or, with `accumulate`, +=) the stride-1 3×3 correlation of
/// x (h×w×cin, zero outside) read from row −padTop and column −padLeft, with the transformed filters u.
func winogradConvolve(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int, padTop: Int, padLeft: Int,
                      filters u: UnsafePointer<Float>, cout: Int, into y: UnsafeMutablePointer<Float>, oh: Int, ow: Int,
                      accumulate: Bool) {
    let th = (oh + 1) / 2, tw = (ow + 1) / 2, tiles = th * tw
    // Tile-major scratch (tile t's 16 transformed values of every channel are contiguous), so the
    // transforms stream through memory and each GEMM reads every 16th block (lda = 16·Cin). Both
    // buffers are fully overwritten before they are read.
    withPooledScratch(16 * tiles * cin) { v in
        withPooledScratch(16 * tiles * cout) { m in
            winogradConvolve(x, h: h, w: w, cin: cin, padTop: padTop, padLeft: padLeft, filters: u, cout: cout, into: y,
                             oh: oh, ow: ow, accumulate: accumulate, th: th, tw: tw, v: v, m: m)
        }
    }
}

private func winogradConvolve(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int, padTop: Int, padLeft: Int,
                              filters u: UnsafePointer<Float>, cout: Int, into y: UnsafeMutablePointer<Float>, oh: Int, ow: Int,
                              accumulate: Bool, th: Int, tw: Int, v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>) {
    let tiles = th * tw
    let zero = UnsafeMutablePointer<Float>.allocate(capacity: cin)
    let d = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: 16)
    defer { zero.deallocate(); d.deallocate() }
    zero.initialize(repeating: 0, count: cin)
    for ty in 0..<th {
        for tx in 0..<tw {
            for r in 0..<4 {
                let iy = 2 * ty + r - padTop
                for q in 0..<4 {
                    let ix = 2 * tx + q - padLeft
                    d[r * 4 + q] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x + (iy * w + ix) * cin : UnsafePointer(zero)
                }
            }
            transformInputTile(d, into: v + (ty * tw + tx) * 16 * cin, plane: cin, channels: cin)
        }
    }
    for xi in 0..<16 {
        BLAS.sgemm(transposeA: false, transposeB: false, m: tiles, n: cout, k: cin, alpha: 1,
                   a: v + xi * cin, lda: 16 * cin, b: u + xi * cin * cout, ldb: cout, beta: 0,
                   c: m + xi * cout, ldc: 16 * cout)
    }
    for ty in 0..<th {
        for tx in 0..<tw {
            let oy = 2 * ty, ox = 2 * tx
            transformOutputTile(m + (ty * tw + tx) * 16 * cout, plane: cout, channels: cout, into: y + (oy * ow + ox) * cout,
                                rowStride: ow * cout, right: ox + 1 < ow, below: oy + 1 < oh, accumulate: accumulate)
        }
    }
}

/// V = Bᵀ·d·B for one tile, every channel: d[r·4 + q] points at the channels of input pixel
/// (r, q); the 16 results go to out[ξ·plane + c].
@inline(__always)
private func transformInputTile(_ d: UnsafeMutablePointer<UnsafePointer<Float>>, into out: UnsafeMutablePointer<Float>,
                                plane: Int, channels: Int) {
    let (d00, d01, d02, d03) = (d[0], d[1], d[2], d[3])
    let (d10, d11, d12, d13) = (d[4], d[5], d[6], d[7])
    let (d20, d21, d22, d23) = (d[8], d[9], d[10], d[11])
    let (d30, d31, d32, d33) = (d[12], d[13], d[14], d[15])
    let (o0, o1, o2, o3) = (out, out + plane, out + 2 * plane, out + 3 * plane)
    let (o4, o5, o6, o7) = (out + 4 * plane, out + 5 * plane, out + 6 * plane, out + 7 * plane)
    let (o8, o9, o10, o11) = (out + 8 * plane, out + 9 * plane, out + 10 * plane, out + 11 * plane)
    let (o12, o13, o14, o15) = (out + 12 * plane, out + 13 * plane, out + 14 * plane, out + 15 * plane)
    for c in 0..<channels {
        // Bᵀ·d: rows.
        let a0 = d00[c] - d20[c], a1 = d01[c] - d21[c], a2 = d02[c] - d22[c], a3 = d03[c] - d23[c]
        let b0 = d10[c] + d20[c], b1 = d11[c] + d21[c], b2 = d12[c] + d22[c], b3 = d13[c] + d23[c]
        let e0 = d20[c] - d10[c], e1 = d21[c] - d11[c], e2 = d22[c] - d12[c], e3 = d23[c] - d13[c]
        let f0 = d10[c] - d30[c], f1 = d11[c] - d31[c], f2 = d12[c] - d32[c], f3 = d13[c] - d33[c]
        // ·B: columns.
        o0[c] = a0 - a2; o1[c] = a1 + a2; o2[c] = a2 - a1; o3[c] = a1 - a3
        o4[c] = b0 - b2; o5[c] = b1 + b2; o6[c] = b2 - b1; o7[c] = b1 - b3
        o8[c] = e0 - e2; o9[c] = e1 + e2; o10[c] = e2 - e1; o11[c] = e1 - e3
        o12[c] = f0 - f2; o13[c] = f1 + f2; o14[c] = f2 - f1; o15[c] = f1 - f3
    }
}

/// Y = Aᵀ·M·A for one tile, every channel: m[ξ·plane + o] in, the 2×2 outputs inside the image
/// to y, y + channels (right) and y + rowStride (below).
@inline(__always)
private func transformOutputTile(_ m: UnsafeMutablePointer<Float>, plane: Int, channels: Int, into y: UnsafeMutablePointer<Float>,
                                 rowStride: Int, right: Bool, below: Bool, accumulate: Bool) {
    let y01 = y + channels, y10 = y + rowStride, y11 = y + rowStride + channels
    for o in 0..<channels {
        let m00 = m[o], m01 = m[plane + o], m02 = m[2 * plane + o], m03 = m[3 * plane + o]
        let m10 = m[4 * plane + o], m11 = m[5 * plane + o], m12 = m[6 * plane + o], m13 = m[7 * plane + o]
        let m20 = m[8 * plane + o], m21 = m[9 * plane + o], m22 = m[10 * plane + o], m23 = m[11 * plane + o]
        let m30 = m[12 * plane + o], m31 = m[13 * plane + o], m32 = m[14 * plane + o], m33 = m[15 * plane + o]
        // Aᵀ·M: rows.
        let s0 = m00 + m10 + m20, s1 = m01 + m11 + m21, s2 = m02 + m12 + m22, s3 = m03 + m13 + m23
        let t0 = m10 - m20 - m30, t1 = m11 - m21 - m31, t2 = m12 - m22 - m32, t3 = m13 - m23 - m33
        // ·A: columns.
        let v00 = s0 + s1 + s2, v01 = s1 - s2 - s3, v10 = t0 + t1 + t2, v11 = t1 - t2 - t3
        if accumulate {
            y[o] += v00
            if right { y01[o] += v01 }
            if below { y10[o] += v10 }
            if right && below { y11[o] += v11 }
        } else {
            y[o] = v00
            if right { y01[o] = v01 }
            if below { y10[o] = v10 }
            if right && below { y11[o] = v11 }
        }
    }
}
