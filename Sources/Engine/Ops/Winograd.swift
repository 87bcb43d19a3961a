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

import Foundation

/// Whether stride-1 3×3 convolutions take the Winograd path. Off by default while a crash inside
/// BLIS seen once in a long U-Net run with it on (after ~400 steps) is unexplained; `CXR_WINOGRAD=1`
/// turns it on (DECISIONS.md, "Engine").
public enum Winograd {
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["CXR_WINOGRAD"] == "1"
}

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
    withScratch(16 * tiles * cin) { v in
        withScratch(16 * tiles * cout) { m in
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

/// Float, or eight of them: the transforms run eight channels at a time (explicit SIMD, since the
/// 32 pointers of a tile keep the compiler from proving the loops safe to vectorise), then one.
private protocol Lanes {
    static var width: Int { get }
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    init(loading p: UnsafePointer<Float>)
    func store(to p: UnsafeMutablePointer<Float>)
}

extension Float: Lanes {
    static var width: Int { 1 }
    @inline(__always) init(loading p: UnsafePointer<Float>) { self = p.pointee }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { p.pointee = self }
}

extension SIMD8: Lanes where Scalar == Float {
    static var width: Int { 8 }
    @inline(__always) init(loading p: UnsafePointer<Float>) { self = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self) }
}

/// V = Bᵀ·d·B for one tile, every channel: d[r·4 + q] points at the channels of input pixel
/// (r, q); the 16 results go to out[ξ·plane + c].
private func transformInputTile(_ d: UnsafeMutablePointer<UnsafePointer<Float>>, into out: UnsafeMutablePointer<Float>,
                                plane: Int, channels: Int) {
    let simd = channels / 8 * 8
    transformInput(SIMD8<Float>.self, d, out, plane, 0, simd)
    transformInput(Float.self, d, out, plane, simd, channels)
}

@inline(__always)
private func transformInput<V: Lanes>(_: V.Type, _ d: UnsafeMutablePointer<UnsafePointer<Float>>, _ out: UnsafeMutablePointer<Float>,
                                      _ plane: Int, _ from: Int, _ to: Int) {
    var c = from
    while c < to {
        @inline(__always) func at(_ k: Int) -> V { V(loading: d[k] + c) }
        @inline(__always) func put(_ k: Int, _ v: V) { v.store(to: out + k * plane + c) }
        // Bᵀ·d: rows.
        let d00 = at(0), d01 = at(1), d02 = at(2), d03 = at(3), d10 = at(4), d11 = at(5), d12 = at(6), d13 = at(7)
        let d20 = at(8), d21 = at(9), d22 = at(10), d23 = at(11), d30 = at(12), d31 = at(13), d32 = at(14), d33 = at(15)
        let a0 = d00 - d20, a1 = d01 - d21, a2 = d02 - d22, a3 = d03 - d23
        let b0 = d10 + d20, b1 = d11 + d21, b2 = d12 + d22, b3 = d13 + d23
        let e0 = d20 - d10, e1 = d21 - d11, e2 = d22 - d12, e3 = d23 - d13
        let f0 = d10 - d30, f1 = d11 - d31, f2 = d12 - d32, f3 = d13 - d33
        // ·B: columns.
        put(0, a0 - a2); put(1, a1 + a2); put(2, a2 - a1); put(3, a1 - a3)
        put(4, b0 - b2); put(5, b1 + b2); put(6, b2 - b1); put(7, b1 - b3)
        put(8, e0 - e2); put(9, e1 + e2); put(10, e2 - e1); put(11, e1 - e3)
        put(12, f0 - f2); put(13, f1 + f2); put(14, f2 - f1); put(15, f1 - f3)
        c += V.width
    }
}

/// Y = Aᵀ·M·A for one tile, every channel: m[ξ·plane + o] in, the 2×2 outputs inside the image
/// to y, y + channels (right) and y + rowStride (below).
private func transformOutputTile(_ m: UnsafeMutablePointer<Float>, plane: Int, channels: Int, into y: UnsafeMutablePointer<Float>,
                                 rowStride: Int, right: Bool, below: Bool, accumulate: Bool) {
    let simd = channels / 8 * 8
    transformOutput(SIMD8<Float>.self, m, plane, y, rowStride, channels, right, below, accumulate, 0, simd)
    transformOutput(Float.self, m, plane, y, rowStride, channels, right, below, accumulate, simd, channels)
}

@inline(__always)
private func transformOutput<V: Lanes>(_: V.Type, _ m: UnsafeMutablePointer<Float>, _ plane: Int, _ y: UnsafeMutablePointer<Float>,
                                       _ rowStride: Int, _ channels: Int, _ right: Bool, _ below: Bool, _ accumulate: Bool,
                                       _ from: Int, _ to: Int) {
    var o = from
    while o < to {
        @inline(__always) func at(_ k: Int) -> V { V(loading: m + k * plane + o) }
        @inline(__always) func put(_ p: UnsafeMutablePointer<Float>, _ v: V) {
            (accumulate ? V(loading: p + o) + v : v).store(to: p + o)
        }
        // Aᵀ·M: rows.
        let s0 = at(0) + at(4) + at(8), s1 = at(1) + at(5) + at(9), s2 = at(2) + at(6) + at(10), s3 = at(3) + at(7) + at(11)
        let t0 = at(4) - at(8) - at(12), t1 = at(5) - at(9) - at(13), t2 = at(6) - at(10) - at(14), t3 = at(7) - at(11) - at(15)
        // ·A: columns.
        put(y, s0 + s1 + s2)
        if right { put(y + channels, s1 - s2 - s3) }
        if below { put(y + rowStride, t0 + t1 + t2) }
        if right && below { put(y + rowStride + channels, t1 - t2 - t3) }
        o += V.width
    }
}
