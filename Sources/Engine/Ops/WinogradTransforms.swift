// The per-tile transforms of Winograd F(2×2, 3×3) (Winograd.swift): V = Bᵀ·d·B of an input tile,
// Y = Aᵀ·M·A back to 2×2 outputs, and A·dY·Aᵀ of an output-gradient tile, every channel of a tile
// at once, eight channels at a time in explicit SIMD and the rest one by one; and Gᵀ·dU·G, a
// transform-domain kernel gradient back to 3×3 taps, eight channel pairs at a time.

/// Float, or eight of them: the transforms run eight channels at a time (explicit SIMD, since the
/// 32 pointers of a tile keep the compiler from proving the loops safe to vectorise), then one.
private protocol Lanes {
    static var width: Int { get }
    static var zero: Self { get }
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    static func * (a: Float, b: Self) -> Self
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

/// Where the 16 input pixels of a tile are: pixel (r, q) = k = 4r + q at `pointer(k)`.
private protocol TilePixels {
    func pointer(_ k: Int) -> UnsafePointer<Float>
}

/// Any tile: a table of 16 pointers (a zero row for pixels outside the image).
private struct PixelTable: TilePixels {
    let d: UnsafeMutablePointer<UnsafePointer<Float>>
    @inline(__always) func pointer(_ k: Int) -> UnsafePointer<Float> { d[k] }
}

/// A tile inside the image: pixel (r, q) at origin + r·rowStride + q·pixelStride (after inlining,
/// four row pointers and constant offsets, where a table of 16 pointers does not fit in registers).
private struct PixelGrid: TilePixels {
    let origin: UnsafePointer<Float>
    let rowStride, pixelStride: Int
    @inline(__always) func pointer(_ k: Int) -> UnsafePointer<Float> { origin + (k >> 2) * rowStride + (k & 3) * pixelStride }
}

/// V = Bᵀ·d·B for one tile, every channel: d[r·4 + q] points at the channels of input pixel
/// (r, q); the 16 results go to out[ξ·plane + c].
func transformInputTile(_ d: UnsafeMutablePointer<UnsafePointer<Float>>, into out: UnsafeMutablePointer<Float>,
                                plane: Int, channels: Int) {
    let simd = channels / 8 * 8, pixels = PixelTable(d: d)
    transformInput(SIMD8<Float>.self, pixels, out, plane, 0, simd)
    transformInput(Float.self, pixels, out, plane, simd, channels)
}

/// `transformInputTile` of a tile inside the image whose pixel (0, 0) is at `origin`, rows
/// `rowStride` apart and pixels `channels` apart.
func transformInputTile(at origin: UnsafePointer<Float>, rowStride: Int, into out: UnsafeMutablePointer<Float>,
                        plane: Int, channels: Int) {
    let simd = channels / 8 * 8, pixels = PixelGrid(origin: origin, rowStride: rowStride, pixelStride: channels)
    transformInput(SIMD8<Float>.self, pixels, out, plane, 0, simd)
    transformInput(Float.self, pixels, out, plane, simd, channels)
}

@inline(__always)
private func transformInput<V: Lanes, P: TilePixels>(_: V.Type, _ d: P, _ out: UnsafeMutablePointer<Float>,
                                                     _ plane: Int, _ from: Int, _ to: Int) {
    var c = from
    while c < to {
        @inline(__always) func at(_ k: Int) -> V { V(loading: d.pointer(k) + c) }
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
func transformOutputTile(_ m: UnsafeMutablePointer<Float>, plane: Int, channels: Int, into y: UnsafeMutablePointer<Float>,
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

/// A·dY·Aᵀ for one tile of the output gradient, every channel: the 2×2 gradients at dy, dy + channels
/// (right) and dy + rowStride (below), zero where outside the image; the 16 results to out[ξ·channels + o].
func transformGradientTile(_ dy: UnsafePointer<Float>, rowStride: Int, channels: Int, right: Bool, below: Bool,
                                   into out: UnsafeMutablePointer<Float>) {
    let simd = channels / 8 * 8
    transformGradient(SIMD8<Float>.self, dy, rowStride, channels, right, below, out, 0, simd)
    transformGradient(Float.self, dy, rowStride, channels, right, below, out, simd, channels)
}

@inline(__always)
private func transformGradient<V: Lanes>(_: V.Type, _ dy: UnsafePointer<Float>, _ rowStride: Int, _ channels: Int, _ right: Bool,
                                         _ below: Bool, _ out: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
    var o = from
    while o < to {
        @inline(__always) func put(_ k: Int, _ v: V) { v.store(to: out + k * channels + o) }
        let zero = V.zero
        let y00 = V(loading: dy + o), y01 = right ? V(loading: dy + channels + o) : zero
        let y10 = below ? V(loading: dy + rowStride + o) : zero, y11 = right && below ? V(loading: dy + rowStride + channels + o) : zero
        // A·dY: rows y0, y0 + y1, y0 − y1, −y1; then each row (a, b) ·Aᵀ: a, a + b, a − b, −b.
        let r1a = y00 + y10, r1b = y01 + y11, r2a = y00 - y10, r2b = y01 - y11
        put(0, y00); put(1, y00 + y01); put(2, y00 - y01); put(3, zero - y01)
        put(4, r1a); put(5, r1a + r1b); put(6, r1a - r1b); put(7, zero - r1b)
        put(8, r2a); put(9, r2a + r2b); put(10, r2a - r2b); put(11, zero - r2b)
        put(12, zero - y10); put(13, zero - y10 - y11); put(14, y11 - y10); put(15, y11)
        o += V.width
    }
}

/// dw[ky][kx][j] += (Gᵀ·dU[·][j]·G)[ky][kx] for the channel pairs j in `pairs`, dU ξ-major (ξ = 4a + b,
/// `stride` floats apart) and dw tap-major (also `stride` apart), with Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1].
func transformKernelGradient(_ du: UnsafePointer<Float>, stride: Int, pairs: Range<Int>, into dw: UnsafeMutablePointer<Float>) {
    let simd = pairs.lowerBound + pairs.count / 8 * 8
    transformKernelGradient(SIMD8<Float>.self, du, stride, dw, pairs.lowerBound, simd)
    transformKernelGradient(Float.self, du, stride, dw, simd, pairs.upperBound)
}

@inline(__always)
private func transformKernelGradient<V: Lanes>(_: V.Type, _ du: UnsafePointer<Float>, _ stride: Int,
                                               _ dw: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
    var j = from
    while j < to {
        @inline(__always) func u(_ xi: Int) -> V { V(loading: du + xi * stride + j) }
        // Gᵀ·dU: 3 rows of 4, column b from dU's column b (rows a = 0…3).
        @inline(__always) func column(_ b: Int) -> (V, V, V) {
            let u0 = u(b), u1 = u(4 + b), u2 = u(8 + b), u3 = u(12 + b)
            return (u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3)
        }
        let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3)
        // Each row ·G: 3 taps, added to the kernel gradient.
        @inline(__always) func add(_ r0: V, _ r1: V, _ r2: V, _ r3: V, ky: Int) {
            @inline(__always) func accumulate(_ kx: Int, _ v: V) {
                let p = dw + (ky * 3 + kx) * stride + j
                (V(loading: p) + v).store(to: p)
            }
            accumulate(0, r0 + 0.5 * (r1 + r2))
            accumulate(1, 0.5 * (r1 - r2))
            accumulate(2, 0.5 * (r1 + r2) + r3)
        }
        add(c0.0, c1.0, c2.0, c3.0, ky: 0)
        add(c0.1, c1.1, c2.1, c3.1, ky: 1)
        add(c0.2, c1.2, c2.2, c3.2, ky: 2)
        j += V.width
    }
}
