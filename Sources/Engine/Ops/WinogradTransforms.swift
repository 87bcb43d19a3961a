// The per-tile transforms of Winograd F(4×4, 3×3) (Winograd.swift): V = Bᵀ·d·B of a 6×6 input tile,
// Y = Aᵀ·M·A back to 4×4 outputs, A·dY·Aᵀ of a 4×4 output-gradient tile, every channel of a tile at
// once, eight channels at a time in explicit SIMD and the rest one by one; U = G·g·Gᵀ of a 3×3
// filter and Gᵀ·dU·G, a transform-domain kernel gradient back to 3×3 taps, eight channel pairs at a
// time. Each 2-D transform is the 1-D one on the columns, then on the rows, through a stack buffer.

/// Float, or eight of them: the transforms run eight channels at a time (explicit SIMD, since the
/// 36 pointers of a tile keep the compiler from proving the loops safe to vectorise), then one.
private protocol Lanes {
    static var width: Int { get }
    static var zero: Self { get }
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    static func * (a: Float, b: Self) -> Self
    init(loading p: UnsafePointer<Float>)
    /// Lanes from `stride` floats apart.
    init(loading p: UnsafePointer<Float>, stride: Int)
    func store(to p: UnsafeMutablePointer<Float>)
}

extension Float: Lanes {
    static var width: Int { 1 }
    @inline(__always) init(loading p: UnsafePointer<Float>) { self = p.pointee }
    @inline(__always) init(loading p: UnsafePointer<Float>, stride: Int) { self = p.pointee }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { p.pointee = self }
}

extension SIMD8: Lanes where Scalar == Float {
    static var width: Int { 8 }
    @inline(__always) init(loading p: UnsafePointer<Float>) { self = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    @inline(__always) init(loading p: UnsafePointer<Float>, stride: Int) {
        if stride == 1 { self.init(loading: p); return }
        self.init(p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride])
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self) }
}

// MARK: The 1-D transforms (Lavin & Gray 2016, interpolation points 0, ±1, ±2, ∞)

/// Bᵀ·d, Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1].
@inline(__always)
private func inputTransform<V: Lanes>(_ d0: V, _ d1: V, _ d2: V, _ d3: V, _ d4: V, _ d5: V) -> (V, V, V, V, V, V) {
    let a = d4 - 4 * d2, b = d3 - 4 * d1, c = d4 - d2, e = 2 * (d3 - d1)
    return (4 * d0 - 5 * d2 + d4, a + b, a - b, c + e, c - e, 4 * d1 - 5 * d3 + d5)
}

/// Aᵀ·m, Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
@inline(__always)
private func outputTransform<V: Lanes>(_ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V, _ m5: V) -> (V, V, V, V) {
    let p = m1 + m2, q = m1 - m2, r = m3 + m4, s = m3 - m4
    return (m0 + p + r, q + 2 * s, p + 4 * r, q + 8 * s + m5)
}

/// A·g, A = (Aᵀ)ᵀ: the transpose of `outputTransform`.
@inline(__always)
private func gradientTransform<V: Lanes>(_ g0: V, _ g1: V, _ g2: V, _ g3: V) -> (V, V, V, V, V, V) {
    let e = g0 + g2, o = g1 + g3, e4 = g0 + 4 * g2, o4 = 2 * g1 + 8 * g3
    return (g0, e + o, e - o, e4 + o4, e4 - o4, g3)
}

/// G·g, G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1].
@inline(__always)
private func filterTransform<V: Lanes>(_ g0: V, _ g1: V, _ g2: V) -> (V, V, V, V, V, V) {
    let s = g0 + g2, p = Float(1.0 / 24) * g0 + Float(1.0 / 6) * g2, q = Float(1.0 / 12) * g1
    return (0.25 * g0, Float(-1.0 / 6) * (s + g1), Float(-1.0 / 6) * (s - g1), p + q, p - q, g2)
}

/// Gᵀ·u: the transpose of `filterTransform`.
@inline(__always)
private func kernelGradientTransform<V: Lanes>(_ u0: V, _ u1: V, _ u2: V, _ u3: V, _ u4: V, _ u5: V) -> (V, V, V) {
    let a = Float(1.0 / 6) * (u1 + u2), b = u3 + u4
    return (0.25 * u0 - a + Float(1.0 / 24) * b,
            Float(1.0 / 6) * (u2 - u1) + Float(1.0 / 12) * (u3 - u4),
            Float(1.0 / 6) * b - a + u5)
}

// MARK: Input tiles

/// Where the 36 input pixels of a tile are: pixel (r, q) = k = 6r + q at `pointer(k)`.
private protocol TilePixels {
    func pointer(_ k: Int) -> UnsafePointer<Float>
}

/// Any tile: a table of 36 pointers (a zero row for pixels outside the image).
private struct PixelTable: TilePixels {
    let d: UnsafeMutablePointer<UnsafePointer<Float>>
    @inline(__always) func pointer(_ k: Int) -> UnsafePointer<Float> { d[k] }
}

/// A tile inside the image: pixel (r, q) at origin + r·rowStride + q·pixelStride (after inlining,
/// six row pointers and constant offsets, where a table of 36 pointers does not fit in registers).
private struct PixelGrid: TilePixels {
    let origin: UnsafePointer<Float>
    let rowStride, pixelStride: Int
    @inline(__always) func pointer(_ k: Int) -> UnsafePointer<Float> { origin + (k / 6) * rowStride + (k % 6) * pixelStride }
}

/// V = Bᵀ·d·B for one tile, every channel: d[6r + q] points at the channels of input pixel
/// (r, q); the 36 results go to out[ξ·plane + c].
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
    guard from < to else { return }
    withUnsafeTemporaryAllocation(of: V.self, capacity: 36) { s in
        let s = s.baseAddress!
        var c = from
        while c < to {
            @inline(__always) func at(_ k: Int) -> V { V(loading: d.pointer(k) + c) }
            // Bᵀ·d: each column q of the tile into column q of s (written out: straight-line code,
            // constant offsets).
            @inline(__always) func column(_ q: Int) {
                let t = inputTransform(at(q), at(6 + q), at(12 + q), at(18 + q), at(24 + q), at(30 + q))
                s[q] = t.0; s[6 + q] = t.1; s[12 + q] = t.2; s[18 + q] = t.3; s[24 + q] = t.4; s[30 + q] = t.5
            }
            column(0); column(1); column(2); column(3); column(4); column(5)
            // ·B: each row a of s into ξ = 6a…6a + 5.
            @inline(__always) func row(_ a: Int) {
                let t = inputTransform(s[6 * a], s[6 * a + 1], s[6 * a + 2], s[6 * a + 3], s[6 * a + 4], s[6 * a + 5])
                let o = out + 6 * a * plane + c
                t.0.store(to: o); t.1.store(to: o + plane); t.2.store(to: o + 2 * plane)
                t.3.store(to: o + 3 * plane); t.4.store(to: o + 4 * plane); t.5.store(to: o + 5 * plane)
            }
            row(0); row(1); row(2); row(3); row(4); row(5)
            c += V.width
        }
    }
}

// MARK: Output tiles

/// Y = Aᵀ·M·A for one tile, every channel: m[ξ·plane + o] in; of the 4×4 outputs, the first `rows`
/// rows and `columns` columns (those inside the image) to y + row·rowStride + column·channels.
func transformOutputTile(_ m: UnsafeMutablePointer<Float>, plane: Int, channels: Int, into y: UnsafeMutablePointer<Float>,
                         rowStride: Int, rows: Int, columns: Int, accumulate: Bool) {
    let simd = channels / 8 * 8
    transformOutput(SIMD8<Float>.self, m, plane, y, rowStride, channels, rows, columns, accumulate, 0, simd)
    transformOutput(Float.self, m, plane, y, rowStride, channels, rows, columns, accumulate, simd, channels)
}

@inline(__always)
private func transformOutput<V: Lanes>(_: V.Type, _ m: UnsafeMutablePointer<Float>, _ plane: Int, _ y: UnsafeMutablePointer<Float>,
                                       _ rowStride: Int, _ channels: Int, _ rows: Int, _ columns: Int, _ accumulate: Bool,
                                       _ from: Int, _ to: Int) {
    forEachOutputGroup(V.self, m, plane, from, to) { o, row in
        // Each output row a inside the image.
        for a in 0..<rows {
            let t = row(a), p = y + a * rowStride + o
            @inline(__always) func put(_ column: Int, _ v: V) {
                let q = p + column * channels
                (accumulate ? V(loading: q) + v : v).store(to: q)
            }
            put(0, t.0)
            if columns > 1 { put(1, t.1) }
            if columns > 2 { put(2, t.2) }
            if columns > 3 { put(3, t.3) }
        }
    }
}

/// `transformOutputTile` into the gradient of a map upsampled ×2 (nearest) before the convolution:
/// each 2×2 block of the tile's outputs (of the first `rows` rows and `columns` columns, both even)
/// summed into one pixel, y + blockRow·rowStride + blockColumn·channels, in the order of
/// `Tape.upsample2x`'s backward pass: ((a + a₂) + b) + b₂ for the block's top pixels a, a₂ and bottom
/// ones b, b₂, after y's own value with `accumulate`. The outputs are those `transformOutputTile`
/// computes, so the sums are the bits of the two ops apart.
func transformOutputTileSummingBlocks(_ m: UnsafeMutablePointer<Float>, plane: Int, channels: Int, into y: UnsafeMutablePointer<Float>,
                                      rowStride: Int, rows: Int, columns: Int, accumulate: Bool) {
    precondition(rows % 2 == 0 && columns % 2 == 0, "an upsampled map has even sides")
    let simd = channels / 8 * 8
    transformOutputSummingBlocks(SIMD8<Float>.self, m, plane, y, rowStride, channels, rows, columns, accumulate, 0, simd)
    transformOutputSummingBlocks(Float.self, m, plane, y, rowStride, channels, rows, columns, accumulate, simd, channels)
}

@inline(__always)
private func transformOutputSummingBlocks<V: Lanes>(_: V.Type, _ m: UnsafeMutablePointer<Float>, _ plane: Int,
                                                    _ y: UnsafeMutablePointer<Float>, _ rowStride: Int, _ channels: Int,
                                                    _ rows: Int, _ columns: Int, _ accumulate: Bool, _ from: Int, _ to: Int) {
    forEachOutputGroup(V.self, m, plane, from, to) { o, row in
        for pair in 0..<(rows / 2) {
            let top = row(2 * pair), bottom = row(2 * pair + 1)
            let p = y + pair * rowStride + o
            @inline(__always) func put(_ block: Int, _ a: V, _ a2: V, _ b: V, _ b2: V) {
                let q = p + block * channels
                (accumulate ? V(loading: q) + a + a2 + b + b2 : a + a2 + b + b2).store(to: q)
            }
            put(0, top.0, top.1, bottom.0, bottom.1)
            if columns > 2 { put(1, top.2, top.3, bottom.2, bottom.3) }
        }
    }
}

/// Y = Aᵀ·M·A of one tile for channels `from`..<`to`, `V.width` at a time: Aᵀ·M first (each column b
/// of M into column b of a stack buffer, 4 rows), then `body(o, row)` for the group at channel o,
/// where `row(a)` is output row a (row a of the buffer ·A).
@inline(__always)
private func forEachOutputGroup<V: Lanes>(_: V.Type, _ m: UnsafeMutablePointer<Float>, _ plane: Int, _ from: Int, _ to: Int,
                                          _ body: (_ o: Int, _ row: (Int) -> (V, V, V, V)) -> Void) {
    guard from < to else { return }
    withUnsafeTemporaryAllocation(of: V.self, capacity: 24) { s in
        let s = s.baseAddress!
        var o = from
        while o < to {
            @inline(__always) func at(_ k: Int) -> V { V(loading: m + k * plane + o) }
            @inline(__always) func column(_ b: Int) {
                let t = outputTransform(at(b), at(6 + b), at(12 + b), at(18 + b), at(24 + b), at(30 + b))
                s[b] = t.0; s[6 + b] = t.1; s[12 + b] = t.2; s[18 + b] = t.3
            }
            column(0); column(1); column(2); column(3); column(4); column(5)
            body(o) { a in outputTransform(s[6 * a], s[6 * a + 1], s[6 * a + 2], s[6 * a + 3], s[6 * a + 4], s[6 * a + 5]) }
            o += V.width
        }
    }
}

// MARK: Output-gradient tiles

/// A·dY·Aᵀ for one tile of the output gradient, every channel: of its 4×4 gradients, the first `rows`
/// rows and `columns` columns at dy + row·rowStride + column·channels, zero for those outside the
/// image; the 36 results to out[ξ·channels + o].
func transformGradientTile(_ dy: UnsafePointer<Float>, rowStride: Int, channels: Int, rows: Int, columns: Int,
                           into out: UnsafeMutablePointer<Float>) {
    let simd = channels / 8 * 8
    transformGradient(SIMD8<Float>.self, dy, rowStride, channels, rows, columns, out, 0, simd)
    transformGradient(Float.self, dy, rowStride, channels, rows, columns, out, simd, channels)
}

@inline(__always)
private func transformGradient<V: Lanes>(_: V.Type, _ dy: UnsafePointer<Float>, _ rowStride: Int, _ channels: Int, _ rows: Int,
                                         _ columns: Int, _ out: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
    guard from < to else { return }
    withUnsafeTemporaryAllocation(of: V.self, capacity: 24) { s in
        let s = s.baseAddress!
        var o = from
        while o < to {
            @inline(__always) func at(_ r: Int, _ q: Int) -> V {
                r < rows && q < columns ? V(loading: dy + r * rowStride + q * channels + o) : V.zero
            }
            // A·dY: each column q of the tile into column q of s (6 rows).
            @inline(__always) func column(_ q: Int) {
                let t = gradientTransform(at(0, q), at(1, q), at(2, q), at(3, q))
                s[q] = t.0; s[4 + q] = t.1; s[8 + q] = t.2; s[12 + q] = t.3; s[16 + q] = t.4; s[20 + q] = t.5
            }
            column(0); column(1); column(2); column(3)
            // ·Aᵀ: each row a of s into ξ = 6a…6a + 5.
            @inline(__always) func row(_ a: Int) {
                let t = gradientTransform(s[4 * a], s[4 * a + 1], s[4 * a + 2], s[4 * a + 3])
                let p = out + 6 * a * channels + o
                t.0.store(to: p); t.1.store(to: p + channels); t.2.store(to: p + 2 * channels)
                t.3.store(to: p + 3 * channels); t.4.store(to: p + 4 * channels); t.5.store(to: p + 5 * channels)
            }
            row(0); row(1); row(2); row(3); row(4); row(5)
            o += V.width
        }
    }
}

// MARK: Filters and the kernel gradient

/// U = G·g·Gᵀ for `count` channel pairs: tap (ky, kx) of pair j at g[(3·ky + kx)·tapStride + j·pairStride];
/// transform value ξ = 6a + b of pair j to u[ξ·plane + j].
func transformFilters(_ g: UnsafePointer<Float>, tapStride: Int, pairStride: Int, count: Int,
                      into u: UnsafeMutablePointer<Float>, plane: Int) {
    let simd = count / 8 * 8
    transformFilters(SIMD8<Float>.self, g, tapStride, pairStride, u, plane, 0, simd)
    transformFilters(Float.self, g, tapStride, pairStride, u, plane, simd, count)
}

@inline(__always)
private func transformFilters<V: Lanes>(_: V.Type, _ g: UnsafePointer<Float>, _ tapStride: Int, _ pairStride: Int,
                                        _ u: UnsafeMutablePointer<Float>, _ plane: Int, _ from: Int, _ to: Int) {
    guard from < to else { return }
    withUnsafeTemporaryAllocation(of: V.self, capacity: 18) { s in
        let s = s.baseAddress!
        var j = from
        while j < to {
            @inline(__always) func tap(_ k: Int) -> V { V(loading: g + k * tapStride + j * pairStride, stride: pairStride) }
            // G·g: each column kx of the taps into column kx of s (6 rows).
            @inline(__always) func column(_ kx: Int) {
                let t = filterTransform(tap(kx), tap(3 + kx), tap(6 + kx))
                s[kx] = t.0; s[3 + kx] = t.1; s[6 + kx] = t.2; s[9 + kx] = t.3; s[12 + kx] = t.4; s[15 + kx] = t.5
            }
            column(0); column(1); column(2)
            // ·Gᵀ: each row a of s into ξ = 6a…6a + 5.
            @inline(__always) func row(_ a: Int) {
                let t = filterTransform(s[3 * a], s[3 * a + 1], s[3 * a + 2])
                let p = u + 6 * a * plane + j
                t.0.store(to: p); t.1.store(to: p + plane); t.2.store(to: p + 2 * plane)
                t.3.store(to: p + 3 * plane); t.4.store(to: p + 4 * plane); t.5.store(to: p + 5 * plane)
            }
            row(0); row(1); row(2); row(3); row(4); row(5)
            j += V.width
        }
    }
}

/// dw[ky][kx][j] += (Gᵀ·dU[·][j]·G)[ky][kx] for the channel pairs j in `pairs`, dU ξ-major (ξ = 6a + b,
/// `stride` floats apart) and dw tap-major (also `stride` apart).
func transformKernelGradient(_ du: UnsafePointer<Float>, stride: Int, pairs: Range<Int>, into dw: UnsafeMutablePointer<Float>) {
    let simd = pairs.lowerBound + pairs.count / 8 * 8
    transformKernelGradient(SIMD8<Float>.self, du, stride, dw, pairs.lowerBound, simd)
    transformKernelGradient(Float.self, du, stride, dw, simd, pairs.upperBound)
}

@inline(__always)
private func transformKernelGradient<V: Lanes>(_: V.Type, _ du: UnsafePointer<Float>, _ stride: Int,
                                               _ dw: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
    guard from < to else { return }
    withUnsafeTemporaryAllocation(of: V.self, capacity: 18) { s in
        let s = s.baseAddress!
        var j = from
        while j < to {
            @inline(__always) func u(_ xi: Int) -> V { V(loading: du + xi * stride + j) }
            // Gᵀ·dU: each column b of dU into column b of s (3 rows).
            @inline(__always) func column(_ b: Int) {
                let t = kernelGradientTransform(u(b), u(6 + b), u(12 + b), u(18 + b), u(24 + b), u(30 + b))
                s[b] = t.0; s[6 + b] = t.1; s[12 + b] = t.2
            }
            column(0); column(1); column(2); column(3); column(4); column(5)
            // ·G: each row ky of s into taps (ky, 0…2), added to the kernel gradient.
            @inline(__always) func row(_ ky: Int) {
                let t = kernelGradientTransform(s[6 * ky], s[6 * ky + 1], s[6 * ky + 2], s[6 * ky + 3], s[6 * ky + 4], s[6 * ky + 5])
                @inline(__always) func add(_ kx: Int, _ v: V) {
                    let p = dw + (ky * 3 + kx) * stride + j
                    (V(loading: p) + v).store(to: p)
                }
                add(0, t.0); add(1, t.1); add(2, t.2)
            }
            row(0); row(1); row(2)
            j += V.width
        }
    }
}
