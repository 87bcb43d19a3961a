// k×k convolution (NHWC input, HWIO kernel), forward and backward, with TensorFlow's padding rules.
// `conv2d` is a small dispatcher over three plans, each with its forward and backward side by side:
// a 1×1 stride-1 convolution is one GEMM over all pixels; a stride-1 3×3 one runs Winograd
// F(4×4, 3×3) (Winograd.swift); other shapes gather the patches of a band of one image's output
// pixels at a time (im2col) and multiply, so the patch matrix stays in cache between being written
// and being read, and the scratch is one band per thread.

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
    s.walkPatches(image: n, pixels: pixels, patches: cols) { offset, dst, count in
        if let offset {
            let src = x + offset
            for i in 0..<count { dst[i] = src[i] }  // inline: runs are short, a memmove call is not
        } else {
            for i in 0..<count { dst[i] = 0 }
        }
    }
}

/// Adds the patch gradients `cols` of image `n`'s output pixels `pixels` back onto the input gradient.
func col2im(_ cols: UnsafePointer<Float>, _ s: ConvShape, image n: Int, pixels: Range<Int>,
            into dx: UnsafeMutablePointer<Float>) {
    s.walkPatches(image: n, pixels: pixels, patches: UnsafeMutablePointer(mutating: cols)) { offset, src, count in
        guard let offset else { return }
        let dst = dx + offset
        for i in 0..<count { dst[i] += src[i] }
    }
}

extension ConvShape {
    /// Walks the patch rows of image `n`'s output pixels `pixels`, laid out from `patches` on, in
    /// order, as runs: `visit(offset, run, count)` pairs `count` patch elements at `run` with as
    /// many contiguous input elements from `offset` (elements from the start of x), or with padding
    /// where `offset` is nil. A kernel row inside the image is one run of kw·c; at the border each
    /// tap is a run of c. Output coordinates step along, with no division per pixel.
    @inline(__always)
    func walkPatches(image n: Int, pixels: Range<Int>, patches: UnsafeMutablePointer<Float>,
                     _ visit: (_ offset: Int?, _ run: UnsafeMutablePointer<Float>, _ count: Int) -> Void) {
        let c = input.c, rowRun = kw * c
        var dst = patches
        var oy = pixels.lowerBound / ow, ox = pixels.lowerBound % ow
        for _ in pixels {
            let iy0 = oy * stride - padTop, ix0 = ox * stride - padLeft
            let inside = iy0 >= 0 && iy0 + kh <= input.h && ix0 >= 0 && ix0 + kw <= input.w
            for ky in 0..<kh {
                let iy = iy0 + ky
                if inside {
                    visit(((n * input.h + iy) * input.w + ix0) * c, dst, rowRun)
                    dst += rowRun
                    continue
                }
                for kx in 0..<kw {
                    let ix = ix0 + kx
                    let valid = iy >= 0 && iy < input.h && ix >= 0 && ix < input.w
                    visit(valid ? ((n * input.h + iy) * input.w + ix) * c : nil, dst, c)
                    dst += c
                }
            }
            ox += 1
            if ox == ow { ox = 0; oy += 1 }
        }
    }
}

/// One run of a convolution's input channels (`Tape.conv2d(concatenating:…)`): a node's value, or
/// the node upsampled ×2, nearest (Keras UpSampling2D(2)).
public enum ConvPart: Hashable, Sendable {
    case node(Var)
    case upsampled2x(Var)

    public var node: Var {
        switch self { case .node(let v), .upsampled2x(let v): v }
    }

    public var isUpsampled: Bool {
        if case .upsampled2x = self { true } else { false }
    }
}

extension Tape {
    /// Convolution of `x` [N,H,W,Cin] with `kernel` [kh,kw,Cin,Cout], plus `bias` [Cout] if given.
    ///
    /// - Precondition: ranks and channel counts agree.
    public func conv2d(_ x: Var, _ kernel: Var, bias: Var? = nil, stride: Int = 1, padding: Padding = .same) -> Var {
        conv2d(concatenating: [.node(x)], kernel, bias: bias, stride: stride, padding: padding)
    }

    /// `conv2d(concat(parts), kernel, …)`, a part `.upsampled2x(v)` standing for `upsample2x(v)`: the
    /// same bits, without the concatenated or upsampled maps where the convolution runs through
    /// Winograd. Its transforms read each part's channels where they are (an upsampled part's
    /// pixels repeated), and the input gradient goes to each part directly (an upsampled part's
    /// summed over each 2×2 block): the U-Net decoder's upsampled map and skip are neither copied
    /// forward, nor rebuilt for the backward pass, nor split after it. Other methods, and a node
    /// named twice, build the maps with `upsample2x` and `concat`.
    ///
    /// - Precondition: the parts agree in every dimension but channels (an upsampled part's height
    ///   and width counted twice); the kernel's input channels are their sum.
    public func conv2d(concatenating parts: [ConvPart], _ kernel: Var, bias: Var? = nil, stride: Int = 1,
                       padding: Padding = .same) -> Var {
        let shapes = parts.map { part in
            let s = shape(part.node)
            return part.isUpsampled && s.count == 4 ? [s[0], 2 * s[1], 2 * s[2], s[3]] : s
        }
        precondition(!parts.isEmpty && shapes.allSatisfy { $0.count == 4 && $0.dropLast() == shapes[0].dropLast() },
                     "conv input parts \(shapes) differ before the channel axis")
        let widths = shapes.map { $0[3] }, upsampled = parts.map(\.isUpsampled)
        let input = NHWC(n: shapes[0][0], h: shapes[0][1], w: shapes[0][2], c: widths.reduce(0, +))
        let k = shape(kernel)
        precondition(k.count == 4 && k[2] == input.c, "conv kernel \(k) does not fit input \(input.shape)")
        let (oh, padTop) = convGeometry(input: input.h, kernel: k[0], stride: stride, padding: padding)
        let (ow, padLeft) = convGeometry(input: input.w, kernel: k[1], stride: stride, padding: padding)
        let s = ConvShape(input: input, kh: k[0], kw: k[1], stride: stride, padTop: padTop, padLeft: padLeft, oh: oh, ow: ow)
        let plan = ConvPlan(s, cout: k[3])
        let nodes = parts.map(\.node)
        if plan.method != .winograd && (parts.count > 1 || upsampled[0]) || Set(nodes).count < nodes.count {
            let maps = parts.map { $0.isUpsampled ? upsample2x($0.node) : $0.node }
            return conv2d(maps.count == 1 ? maps[0] : concat(maps), kernel, bias: bias, stride: stride, padding: padding)
        }
        forwardFlops += 2 * Double(input.n * oh * ow) * Double(s.patch * k[3])
        let kv = value(kernel), savedParts = nodes.map { saved($0) }
        let out = Tensor(shape: [input.n, oh, ow, k[3]]) { y in
            withPointers(nodes.map { value($0) }) { xs in
                kv.withPointer { w in plan.forward(ChannelParts(xs, widths: widths, upsampled: upsampled), w, into: y) }
            }
            if let bias { addBias(y, rows: input.n * oh * ow, value(bias)) }
        }
        return record(out) { tape, dy in
            dy.withPointer { g in
                withPointers(savedParts.map { $0() }) { xs in
                    kv.withPointer { w in
                        plan.backward(tape, x: nodes, kernel: kernel, ChannelParts(xs, widths: widths, upsampled: upsampled), w, dy: g)
                    }
                }
                if let bias { tape.accumulate(bias) { db in sumRows(g, rows: input.n * oh * ow, columns: k[3], into: db) } }
            }
        }
    }
}

/// Calls `body` with read-only storage of every one of `tensors`, in order.
func withPointers<R>(_ tensors: [Tensor], _ body: ([UnsafePointer<Float>]) -> R) -> R {
    func nest(_ i: Int, _ held: [UnsafePointer<Float>]) -> R {
        guard i < tensors.count else { return body(held) }
        return tensors[i].withPointer { nest(i + 1, held + [$0]) }
    }
    return nest(0, [])
}

/// How one convolution is computed: a 1×1 stride-1 convolution is one GEMM over all pixels;
/// a stride-1 3×3 one goes through Winograd F(4×4, 3×3) (unless `CXR_WINOGRAD=0`); any other
/// gathers patches (im2col) and multiplies.
struct ConvPlan {
    enum Method { case pointwise, winograd, patches }

    let method: Method
    let shape: ConvShape
    let cout: Int

    init(_ shape: ConvShape, cout: Int) {
        self.shape = shape
        self.cout = cout
        if shape.kh == 1 && shape.kw == 1 && shape.stride == 1 {
            method = .pointwise
        } else if Winograd.enabled && shape.kh == 3 && shape.kw == 3 && shape.stride == 1 {
            method = .winograd
        } else {
            method = .patches
        }
    }

    /// y = x ⊛ w (bias aside); x in parts on the Winograd path only.
    func forward(_ x: ChannelParts<UnsafePointer<Float>>, _ w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        precondition(method == .winograd || x.pointers.count == 1 && !x.upsampled[0], "only Winograd reads an input in channel parts")
        switch method {
        case .pointwise: pointwiseForward(x.pointers[0], w, into: y)
        case .winograd: winogradForward(x, w, into: y)
        case .patches: patchForward(x.pointers[0], w, into: y)
        }
    }

    /// Accumulates the gradients of `x` (its parts, `xp`'s) and `kernel` on `tape` from the output
    /// gradient `dy`.
    func backward(_ tape: Tape, x: [Var], kernel: Var, _ xp: ChannelParts<UnsafePointer<Float>>, _ w: UnsafePointer<Float>,
                  dy: UnsafePointer<Float>) {
        precondition(method == .winograd || x.count == 1, "only Winograd reads an input in channel parts")
        switch method {
        case .pointwise: pointwiseBackward(tape, x: x[0], kernel: kernel, xp.pointers[0], w, dy: dy)
        case .winograd: winogradBackward(tape, x: x, kernel: kernel, xp, w, dy: dy)
        case .patches: patchBackward(tape, x: x[0], kernel: kernel, xp.pointers[0], w, dy: dy)
        }
    }

    // MARK: pointwise — one GEMM over all pixels (M = N·H·W, K = Cin, N = Cout)

    private func pointwiseForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let input = shape.input
        BLAS.gemmRowsSplit(m: input.n * input.h * input.w, n: cout, k: input.c, a: x, lda: input.c, b: w, ldb: cout,
                           beta: 0, c: y, ldc: cout)
    }

    /// dW = Xᵀ·dY and dX = dY·Wᵀ.
    private func pointwiseBackward(_ tape: Tape, x: Var, kernel: Var, _ xp: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                   dy g: UnsafePointer<Float>) {
        let input = shape.input, pixels = input.n * input.h * input.w
        tape.accumulate(kernel) { dw in
            BLAS.gemmTransposedAccumulate(m: input.c, n: cout, k: pixels, a: xp, lda: input.c, b: g, ldb: cout, c: dw)
        }
        tape.accumulate(x) { dx, add in
            BLAS.gemmRowsSplit(m: pixels, n: input.c, k: cout, a: g, lda: cout, b: w, ldb: cout,
                               beta: add ? 1 : 0, c: dx, ldc: input.c, transposeB: true)
        }
    }

    // MARK: Winograd F(4×4, 3×3) — all three passes in the transform domain (Winograd.swift)

    private func winogradForward(_ x: ChannelParts<UnsafePointer<Float>>, _ w: UnsafePointer<Float>,
                                 into y: UnsafeMutablePointer<Float>) {
        let s = shape
        winogradConvolveImages(x, n: s.input.n, h: s.input.h, w: s.input.w, padTop: s.padTop, padLeft: s.padLeft,
                               filters: winogradFilters(w, cin: s.input.c, cout: cout, rotated: false),
                               into: ChannelParts(y, channels: cout), oh: s.oh, ow: s.ow, accumulate: [false])
    }

    /// The kernel gradient in the transform domain; the input gradient is the convolution of dy with
    /// the kernel rotated by 180°, channels swapped, padded by 2 − pad, written to each part of x.
    private func winogradBackward(_ tape: Tape, x: [Var], kernel: Var, _ xp: ChannelParts<UnsafePointer<Float>>,
                                  _ w: UnsafePointer<Float>, dy g: UnsafePointer<Float>) {
        let s = shape, input = shape.input
        tape.accumulate(kernel) { dw in
            winogradKernelGradient(xp, input, padTop: s.padTop, padLeft: s.padLeft, dy: g, oh: s.oh, ow: s.ow, cout: cout, into: dw)
        }
        tape.accumulate(x) { dx, add in
            winogradConvolveImages(ChannelParts(g, channels: cout), n: input.n, h: s.oh, w: s.ow,
                                   padTop: 2 - s.padTop, padLeft: 2 - s.padLeft,
                                   filters: winogradFilters(w, cin: input.c, cout: cout, rotated: true),
                                   into: ChannelParts(dx, widths: xp.widths, upsampled: xp.upsampled), oh: input.h, ow: input.w,
                                   accumulate: add)
        }
    }

    // MARK: patches — im2col of a band of output pixels, then one GEMM per band

    /// Images split across threads, each with its own patch buffer.
    private func patchForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let s = shape, cout = cout, pixels = shape.oh * shape.ow
        let box = SendableBox((x, w, y))
        Parallel.forEachRange(s.input.n, grain: 1) { images in
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

    /// Per thread: its images' input gradients (dcols = dY·Wᵀ, scattered back by col2im), and a
    /// partial kernel gradient (colsᵀ·dY) summed in part order afterwards.
    private func patchBackward(_ tape: Tape, x: Var, kernel: Var, _ xp: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                               dy g: UnsafePointer<Float>) {
        let s = shape, cout = cout, pixels = shape.oh * shape.ow
        let parts = Parallel.parts(s.input.n, grain: 1)
        let size = s.patch * cout
        var partials = [Float](repeating: 0, count: parts * size + BLAS.readSlack)
        tape.accumulate(x) { dx in
            partials.withUnsafeMutableBufferPointer { p in
                let box = SendableBox((xp, w, g, dx, p.baseAddress!))
                Parallel.forEachPart(s.input.n, grain: 1) { part, images in
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
