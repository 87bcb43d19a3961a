// Winograd F(4×4, 3×3) for stride-1 3×3 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", CVPR 2016): every 6×6 input tile (stride 4) and every 3×3 filter
// go to a 6×6 transform domain, where the convolution becomes 36 independent GEMMs
// (tiles × Cin by Cin × Cout) — 36 multiplies per 4×4 outputs instead of 144, 4× fewer — and the
// 4×4 outputs come back through Aᵀ·M·A (the matrices: WinogradTransforms.swift).
// The U-Net decoder's and the classifier head's 3×3 convolutions run all three passes here: the
// input gradient is the same convolution of dy with the kernel rotated by 180° and its channel
// axes swapped; the kernel gradient is a GEMM over tiles in the transform domain, brought back
// through G (winogradKernelGradient).

import Artifacts
import Foundation

/// Whether stride-1 3×3 convolutions take the Winograd path: yes unless `CXR_WINOGRAD=0`, which
/// selects the patch-matrix path (the same sums in another order; DECISIONS.md, "Engine").
public enum Winograd {
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["CXR_WINOGRAD"] != "0"

    /// Convolutions of at most this many tiles over all their images split the 36 transform-domain
    /// GEMMs across threads, each GEMM over every image's tiles; larger ones split the images. A
    /// thread's share of a small layer's tiles is too few rows for its GEMMs: the U-Net's deepest
    /// decoder stage at batch 4 gave each of two threads 32 tiles against 432 × 256 filters, so
    /// packing the filters cost as much as the multiply, and each thread packed all 36 of them.
    /// Counted over all images, not per thread, so such a layer's results do not depend on the
    /// thread count. (The classifier's 3×3 layer, 256 tiles at batch 16, ran no faster split this
    /// way.) Settable for tests, which run both ways.
    nonisolated(unsafe) static var transformSplitTiles = 128
    /// The same for the kernel gradient, where splitting the images also costs a 36·Cin·Cout partial
    /// dU per thread (16 MB for 432 × 256 channels) and a pass adding them; splitting the GEMMs needs none.
    nonisolated(unsafe) static var kernelGradientTransformSplitTiles = 1024
}

/// The 36 transformed filters U[ξ] = (G·g·Gᵀ)[ξ], each a [Cin × Cout] matrix, from an HWIO 3×3
/// kernel; `rotated` gives those of the input-gradient pass: g'[ky][kx][o][i] = g[2−ky][2−kx][i][o].
func winogradFilters(_ kernel: UnsafePointer<Float>, cin: Int, cout: Int, rotated: Bool) -> [Float] {
    // In the rotated pass the roles swap: rows of U are the original output channels.
    let rows = rotated ? cout : cin, columns = rotated ? cin : cout
    var u = [Float](repeating: 0, count: 36 * rows * columns + BLAS.readSlack)
    u.withUnsafeMutableBufferPointer { u in
        let stride = rows * columns, box = SendableBox(u.baseAddress!)
        // Tap k = 3·ky + kx of pair (r, c): kernel[origin + k·step + r·rowStep + c·columnStep].
        let (step, rowStep, columnStep) = rotated ? (-cin * cout, 1, cout) : (cin * cout, cout, 1)
        let origin = rotated ? 8 * cin * cout : 0
        Parallel.forEachRange(rows, grain: max(1, 2048 / columns)) { range in
            let u = box.value
            // Blocks of 64 pairs of a row: their 36 outputs go to a small buffer first, then each
            // of the 36 matrices gets its 64 values in one copy (36 interleaved streams of single
            // stores across matrices megabytes apart miss cache on the large decoder layers).
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 36 * 64) { block in
                let block = block.baseAddress!
                for r in range {
                    for first in Swift.stride(from: 0, to: columns, by: 64) {
                        let count = min(64, columns - first)
                        transformFilters(kernel + origin + r * rowStep + first * columnStep, tapStride: step,
                                         pairStride: columnStep, count: count, into: block, plane: 64)
                        for xi in 0..<36 {
                            (u + xi * stride + r * columns + first).update(from: block + xi * 64, count: count)
                        }
                    }
                }
            }
        }
    }
    return u
}

/// Where the channels of an NHWC activation are: one buffer, or several that each hold a run of
/// every pixel's channels (the U-Net decoder's upsampled map and its skip, a concatenation that is
/// never copied into one buffer). Part i holds `widths[i]` channels a pixel, channels
/// `offsets[i]`… of the whole. A part marked `upsampled` holds half the rows and columns, each of
/// its pixels standing for a 2×2 block (nearest ×2 upsampling, never written out): reads repeat
/// its pixels, and writes (the input gradient) sum each block into one, as `Tape.upsample2x`'s
/// backward pass does.
struct ChannelParts<Pointer>: @unchecked Sendable {
    let pointers: [Pointer]
    let widths: [Int]
    let offsets: [Int]
    let upsampled: [Bool]

    init(_ pointers: [Pointer], widths: [Int], upsampled: [Bool]? = nil) {
        precondition(pointers.count == widths.count && !widths.isEmpty, "one width per channel part")
        self.pointers = pointers
        self.widths = widths
        self.upsampled = upsampled ?? widths.map { _ in false }
        precondition(self.upsampled.count == widths.count, "one upsampling flag per channel part")
        offsets = widths.indices.map { widths[..<$0].reduce(0, +) }
    }

    init(_ pointer: Pointer, channels: Int) { self.init([pointer], widths: [channels]) }

    /// Part i's first pixel of image n, in a map of h×w pixels (h/2 × w/2 stored if upsampled).
    func image(_ part: Int, _ n: Int, h: Int, w: Int) -> Int {
        n * h * w * widths[part] / (upsampled[part] ? 4 : 1)
    }

    var channels: Int { widths.reduce(0, +) }
    var indices: Range<Int> { widths.indices }
}

/// The tiles of a run of images, one sequence of tile rows (image after image), cut into bands of
/// whole rows that the transforms and the 36 GEMMs take in turn. Each output tile is 4×4 pixels;
/// tile (ty, tx) reads the 6×6 input pixels from row 4·ty − padTop and column 4·tx − padLeft.
private struct WinogradTiles {
    let h, w, cin, padTop, padLeft, oh, ow, cout: Int
    let images: Range<Int>
    var th: Int { (oh + 3) / 4 }
    var tw: Int { (ow + 3) / 4 }
    var rows: Int { images.count * th }

    /// Tile rows per band: at least `minimumTiles` tiles (GEMMs much shorter than that spend their
    /// time packing operands), else about 512 KiB of transformed values, so that they are still in
    /// cache when the GEMMs read them; never more than there are. Fixed sizes, so results do not
    /// depend on the thread count. (Longer bands, 256 tiles forward and 2048 for the kernel
    /// gradient, left the wide decoder layers' transforms — 36·Cin floats a tile, 47 MB a band at
    /// 128² × 160 channels — to stream through memory: 27 % more time in these convolutions.)
    func bandRows(minimumTiles: Int) -> Int {
        min(rows, max((minimumTiles + tw - 1) / tw, (1 << 17) / (36 * tw * (cin + cout))))
    }

    /// Calls `body(n, ty, slot)` for every tile row of `band`: its image, its row within
    /// the image and its first tile's index within the band.
    func forEachRow(_ band: Range<Int>, _ body: (_ n: Int, _ ty: Int, _ slot: Int) -> Void) {
        for r in band { body(images.lowerBound + r / th, r % th, (r - band.lowerBound) * tw) }
    }

    /// Calls `body(part, firstSlot)` for fixed contiguous parts of `band`'s rows, one a thread in
    /// parallel, with the index of each part's first tile within the band.
    func forEachPart(of band: Range<Int>, _ body: (Range<Int>, Int) -> Void) {
        Parallel.forEachRange(band.count, grain: 1) { rows in
            body(band.lowerBound + rows.lowerBound..<band.lowerBound + rows.upperBound, rows.lowerBound * tw)
        }
    }

    /// `body(band, v, m)` for each band in turn, with v scratch for a band's tiles of Cin channels
    /// and m for as many of Cout channels, which `body` fills before reading.
    func forEachBand(minimumTiles: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let bandRows = bandRows(minimumTiles: minimumTiles)
        withScratch(36 * bandRows * tw * cin) { v in
            withScratch(36 * bandRows * tw * cout) { m in
                for first in stride(from: 0, to: rows, by: bandRows) {
                    body(first..<min(first + bandRows, rows), v, m)
                }
            }
        }
    }

    /// `forEachBand` with v holding the band's transformed input tiles of x (m is still scratch for
    /// the transform-domain outputs or output gradients).
    func forEachBand(of x: ChannelParts<UnsafePointer<Float>>, minimumTiles: Int,
                     _ body: (Range<Int>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        forEachBand(minimumTiles: minimumTiles) { band, v, m in
            gatherInput(x, band: band, into: v)
            body(band, v, m)
        }
    }

    /// V = Bᵀ·d·B of every tile of `band`, tile-major into v: tile t's 36 transformed values of every
    /// channel are contiguous, so the transforms stream through memory and each GEMM reads every
    /// 36th block (lda = 36·Cin). Each part of x fills its own channels of every tile.
    func gatherInput(_ x: ChannelParts<UnsafePointer<Float>>, band: Range<Int>, into v: UnsafeMutablePointer<Float>) {
        withScratch(x.widths.max()!) { zero in
            zero.initialize(repeating: 0, count: x.widths.max()!)
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 36) { d in
                // The tile columns whose 6×6 pixels lie inside the image: 4·tx − padLeft ≥ 0 and ≤ w − 6.
                let first = min(tw, (padLeft + 3) / 4), end = w + padLeft >= 6 ? min(tw, (w + padLeft - 6) / 4 + 1) : 0
                let inner = first..<max(first, end)
                forEachRow(band) { n, ty, slot in
                    let top = 4 * ty - padTop
                    let rowInside = top >= 0 && top + 6 <= h
                    for part in x.indices {
                        let c = x.widths[part], image = x.pointers[part] + x.image(part, n, h: h, w: w)
                        let tiles = v + slot * 36 * cin + x.offsets[part]
                        // Pixel (iy, ix) of an upsampled part is its stored pixel (iy/2, ix/2).
                        let (shift, storedWidth) = x.upsampled[part] ? (1, w / 2) : (0, w)
                        for tx in 0..<tw {
                            if shift == 0 && rowInside && inner.contains(tx) {
                                transformInputTile(at: image + (top * w + 4 * tx - padLeft) * c, rowStride: w * c,
                                                   into: tiles + tx * 36 * cin, plane: cin, channels: c)
                                continue
                            }
                            for r in 0..<6 {
                                let iy = 4 * ty + r - padTop
                                for q in 0..<6 {
                                    let ix = 4 * tx + q - padLeft
                                    let inside = iy >= 0 && iy < h && ix >= 0 && ix < w
                                    d[r * 6 + q] = inside ? image + ((iy >> shift) * storedWidth + (ix >> shift)) * c : UnsafePointer(zero)
                                }
                            }
                            transformInputTile(d.baseAddress!, into: tiles + tx * 36 * cin, plane: cin, channels: c)
                        }
                    }
                }
            }
        }
    }
}

extension WinogradTiles {
    /// Y = Aᵀ·M·A of every tile of `band` from m (tile-major, as `gatherInput` lays out v) into y, part
    /// by part, written or (where `accumulate` says so) added; an upsampled part gets each 2×2 block
    /// of outputs summed into one of its pixels.
    func scatterOutput(_ m: UnsafeMutablePointer<Float>, band: Range<Int>, into y: ChannelParts<UnsafeMutablePointer<Float>>,
                       accumulate: [Bool]) {
        forEachRow(band) { n, ty, slot in
            let oy = 4 * ty
            for part in y.indices {
                let c = y.widths[part], image = y.pointers[part] + y.image(part, n, h: oh, w: ow)
                let tiles = m + slot * 36 * cout + y.offsets[part]
                for tx in 0..<tw {
                    let ox = 4 * tx, rows = min(4, oh - oy), columns = min(4, ow - ox)
                    if y.upsampled[part] {
                        transformOutputTileSummingBlocks(tiles + tx * 36 * cout, plane: cout, channels: c,
                                                         into: image + (oy / 2 * (ow / 2) + ox / 2) * c, rowStride: ow / 2 * c,
                                                         rows: rows, columns: columns, accumulate: accumulate[part])
                    } else {
                        transformOutputTile(tiles + tx * 36 * cout, plane: cout, channels: c,
                                            into: image + (oy * ow + ox) * c, rowStride: ow * c,
                                            rows: rows, columns: columns, accumulate: accumulate[part])
                    }
                }
            }
        }
    }

    /// A·dY·Aᵀ of every 4×4 output-gradient tile of `band` (zero past the image's edge), tile-major into m.
    func gatherGradient(_ dy: UnsafePointer<Float>, band: Range<Int>, into m: UnsafeMutablePointer<Float>) {
        forEachRow(band) { n, ty, slot in
            let image = dy + n * oh * ow * cout, oy = 4 * ty
            for tx in 0..<tw {
                let ox = 4 * tx
                transformGradientTile(image + (oy * ow + ox) * cout, rowStride: ow * cout, channels: cout,
                                      rows: min(4, oh - oy), columns: min(4, ow - ox), into: m + (slot + tx) * 36 * cout)
            }
        }
    }
}

/// y (N×oh×ow×Cout, in parts) = (or, part by part where `accumulate` says so, +=) the stride-1 3×3
/// correlation of x (N×h×w×Cin, in parts, zero outside) read from row −padTop and column −padLeft,
/// with the transformed filters; the images are split across threads, or for a small layer
/// (`Winograd.transformSplitTiles`) the 36 GEMMs.
func winogradConvolveImages(_ x: ChannelParts<UnsafePointer<Float>>, n: Int, h: Int, w: Int, padTop: Int, padLeft: Int,
                            filters: [Float], into y: ChannelParts<UnsafeMutablePointer<Float>>, oh: Int, ow: Int,
                            accumulate: [Bool]) {
    precondition(accumulate.count == y.widths.count, "one accumulate flag per output part")
    filters.withUnsafeBufferPointer { u in
        let all = WinogradTiles(h: h, w: w, cin: x.channels, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow,
                                cout: y.channels, images: 0..<n)
        if all.rows * all.tw <= Winograd.transformSplitTiles {
            winogradConvolveSplittingTransforms(x, all, filters: u.baseAddress!, into: y, accumulate: accumulate)
            return
        }
        let box = SendableBox((x, u.baseAddress!, y))
        Parallel.forEachRange(n, grain: 1) { images in
            let (x, u, y) = box.value
            let tiles = WinogradTiles(h: h, w: w, cin: x.channels, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow,
                                      cout: y.channels, images: images)
            winogradConvolve(x, tiles, filters: u, into: y, accumulate: accumulate)
        }
    }
}

/// One thread's images: each band's transforms, its 36 GEMMs and its output transforms in turn.
private func winogradConvolve(_ x: ChannelParts<UnsafePointer<Float>>, _ t: WinogradTiles, filters u: UnsafePointer<Float>,
                              into y: ChannelParts<UnsafeMutablePointer<Float>>, accumulate: [Bool]) {
    let cin = t.cin, cout = t.cout
    t.forEachBand(of: x, minimumTiles: 64) { band, v, m in
        for xi in 0..<36 {
            BLAS.sgemm(transposeA: false, transposeB: false, m: band.count * t.tw, n: cout, k: cin, alpha: 1,
                       a: v + xi * cin, lda: 36 * cin, b: u + xi * cin * cout, ldb: cout, beta: 0,
                       c: m + xi * cout, ldc: 36 * cout)
        }
        t.scatterOutput(m, band: band, into: y, accumulate: accumulate)
    }
}

/// All images' tiles band by band, each band's rows transformed in parallel parts, then its 36
/// GEMMs split across threads (each GEMM over the whole band), then its outputs in parallel parts.
private func winogradConvolveSplittingTransforms(_ x: ChannelParts<UnsafePointer<Float>>, _ t: WinogradTiles,
                                                 filters u: UnsafePointer<Float>,
                                                 into y: ChannelParts<UnsafeMutablePointer<Float>>, accumulate: [Bool]) {
    let cin = t.cin, cout = t.cout, box = SendableBox((x, u, y))
    t.forEachBand(minimumTiles: 64) { band, v, m in
        let scratch = SendableBox((v, m))
        t.forEachPart(of: band) { rows, slot in
            t.gatherInput(box.value.0, band: rows, into: scratch.value.0 + slot * 36 * cin)
        }
        Parallel.forEachRange(36, grain: 1) { transforms in
            let (v, m) = scratch.value
            for xi in transforms {
                BLAS.sgemm(transposeA: false, transposeB: false, m: band.count * t.tw, n: cout, k: cin, alpha: 1,
                           a: v + xi * cin, lda: 36 * cin, b: box.value.1 + xi * cin * cout, ldb: cout, beta: 0,
                           c: m + xi * cout, ldc: 36 * cout)
            }
        }
        t.forEachPart(of: band) { rows, slot in
            t.scatterOutput(scratch.value.1 + slot * 36 * cout, band: rows, into: box.value.2, accumulate: accumulate)
        }
    }
}

/// The kernel gradient of the stride-1 3×3 correlation `winogradConvolveImages` computes, added to
/// the HWIO `dw`: in the transform domain dU[ξ] = Σ_tiles V[ξ]ᵀ·(A·dY·Aᵀ)[ξ] (Cin × Cout, a GEMM
/// over tiles; outputs past the image edge count as zero), and dw = Gᵀ·dU·G for each channel pair.
/// Images are split across threads, each summing its own dU, and the parts are added in order; or,
/// for a small layer (`Winograd.kernelGradientTransformSplitTiles`), the 36 GEMMs, each over every
/// image's tiles.
func winogradKernelGradient(_ x: ChannelParts<UnsafePointer<Float>>, _ input: NHWC, padTop: Int, padLeft: Int,
                            dy: UnsafePointer<Float>, oh: Int, ow: Int, cout: Int, into dw: UnsafeMutablePointer<Float>) {
    precondition(x.channels == input.c, "channel parts of \(x.channels) channels for an input of \(input.c)")
    let cin = input.c, size = 36 * cin * cout
    let all = WinogradTiles(h: input.h, w: input.w, cin: cin, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow,
                            cout: cout, images: 0..<input.n)
    let splitTransforms = all.rows * all.tw <= Winograd.kernelGradientTransformSplitTiles
    let parts = splitTransforms ? 1 : Parallel.parts(input.n, grain: 1)
    withScratch(parts * size) { p in
        if splitTransforms {
            kernelGradientSplittingTransforms(x, all, dy: dy, into: p)
        } else {
            let box = SendableBox((x, dy, p))
            Parallel.forEachPart(input.n, grain: 1) { part, images in
                let (x, dy, p) = box.value
                let tiles = WinogradTiles(h: input.h, w: input.w, cin: cin, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow,
                                          cout: cout, images: images)
                winogradKernelGradient(x, tiles, dy: dy, into: p + part * size)
            }
        }
        // Both element by element, so splitting them across threads changes no bits.
        let sums = SendableBox((p, dw))
        Parallel.forEachRange(cin * cout, grain: 1024) { pairs in
            let (du, dw) = sums.value
            for part in 1..<parts {
                for xi in 0..<36 {
                    let to = du + xi * cin * cout, from = to + part * size
                    for j in pairs { to[j] += from[j] }
                }
            }
            transformKernelGradient(du, stride: cin * cout, pairs: pairs, into: dw)
        }
    }
}

/// dU (36 × Cin × Cout, ξ-major) = the transform-domain kernel gradient of one thread's images.
private func winogradKernelGradient(_ x: ChannelParts<UnsafePointer<Float>>, _ t: WinogradTiles, dy: UnsafePointer<Float>,
                                    into du: UnsafeMutablePointer<Float>) {
    let cin = t.cin, cout = t.cout
    var beta: Float = 0
    // Each GEMM adds into all of dU, so longer bands (k = tiles) keep that traffic smaller.
    t.forEachBand(of: x, minimumTiles: 256) { band, v, m in
        t.gatherGradient(dy, band: band, into: m)
        for xi in 0..<36 {
            BLAS.sgemm(transposeA: true, transposeB: false, m: cin, n: cout, k: band.count * t.tw, alpha: 1,
                       a: v + xi * cin, lda: 36 * cin, b: m + xi * cout, ldb: 36 * cout, beta: beta,
                       c: du + xi * cin * cout, ldc: cout)
        }
        beta = 1
    }
}

/// dU (36 × Cin × Cout, ξ-major) = the transform-domain kernel gradient of all images' tiles, band by
/// band: each band's rows transformed in parallel parts, then its 36 GEMMs split across threads.
private func kernelGradientSplittingTransforms(_ x: ChannelParts<UnsafePointer<Float>>, _ t: WinogradTiles,
                                               dy: UnsafePointer<Float>, into du: UnsafeMutablePointer<Float>) {
    let cin = t.cin, cout = t.cout, box = SendableBox((x, dy, du))
    t.forEachBand(minimumTiles: 256) { band, v, m in
        let scratch = SendableBox((v, m))
        t.forEachPart(of: band) { rows, slot in
            let (v, m) = scratch.value
            t.gatherInput(box.value.0, band: rows, into: v + slot * 36 * cin)
            t.gatherGradient(box.value.1, band: rows, into: m + slot * 36 * cout)
        }
        let beta: Float = band.lowerBound == 0 ? 0 : 1
        Parallel.forEachRange(36, grain: 1) { transforms in
            let (v, m) = scratch.value
            for xi in transforms {
                BLAS.sgemm(transposeA: true, transposeB: false, m: cin, n: cout, k: band.count * t.tw, alpha: 1,
                           a: v + xi * cin, lda: 36 * cin, b: m + xi * cout, ldb: 36 * cout, beta: beta,
                           c: box.value.2 + xi * cin * cout, ldc: cout)
            }
        }
    }
}
