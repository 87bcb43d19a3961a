// Every op's backward against finite differences, and the check's power to catch a wrong one.

import XCTest
import SeededRandom
import TestSupport
@testable import Engine

final class OpGradientTests: XCTestCase {
    func testConvolutionGradients() {
        for winograd in [false, true] {
            let before = Winograd.enabled
            Winograd.enabled = winograd
            defer { Winograd.enabled = before }
            checkConvolutionGradients()
        }
    }

    func checkConvolutionGradients() {
        for (k, stride, padding) in [(3, 1, Padding.same), (3, 2, .same), (5, 2, .same), (3, 1, .valid), (1, 1, .same), (1, 2, .same)] {
            let x = randomTensor([2, 6, 6, 3], seed: 1), w = randomTensor([k, k, 3, 4], seed: 2), b = randomTensor([4], seed: 3)
            assertGradients(gradientCheck(inputs: [x, w, b]) { t, v in t.conv2d(v[0], v[1], bias: v[2], stride: stride, padding: padding) },
                            "conv \(k)×\(k) stride \(stride) \(padding)")
        }
    }

    /// Forward, input and kernel gradients against a direct sum in Double, on both paths (patch
    /// matrices and, for 3×3 stride 1, Winograd), on odd sizes (edge tiles half outside) and with
    /// more channels than the finite-difference check affords; the wide cases span several bands
    /// of output pixels (ConvShape.bands), so the band seams are checked too, and the 97×98 case
    /// several Winograd bands of each pass (20 of its 25 rows of 4×4 tiles: about 512 KiB of
    /// transforms; its 625 tiles per image split even when each image is its own thread's part).
    /// On one thread and on two (each image its own part: two partial kernel gradients summed).
    /// Winograd's filter transform runs eight channel pairs at a time along the rows of U: gathered
    /// (rows of the rotated filters, cin ≥ 8) and contiguous (cout = 19: two of eight, three alone).
    /// Each value may differ from the exact sum by units · u · Σ|terms| (u = 2⁻²⁴), the form of a
    /// float32 sum's error bound: a tolerance relative to the result itself fails on cancelling
    /// sums, such as the 97×98 kernel gradient (19 012 random-sign terms, result ≈ Σ|terms| / 100),
    /// as soon as the BLAS kernel blocks its sums in another order (Intel's against AMD's).
    /// Measured worst errors in those units: patch path 4.2, Winograd F(4×4, 3×3) 112 (its
    /// transform-domain values reach 100 times an input's, Bᵀ's rows sum to 10 in magnitude, Aᵀ's
    /// entries reach 8, and outputs come back through cancelling sums; docs/DECISIONS.md,
    /// "Winograd"); hence 16 and 512 units. Changing 1⁄24 to 1⁄24.01 in Gᵀ, or 8 to 8.001 in A,
    /// fails it.
    func testConvolutionMatchesADirectSumInDouble() {
        withEngineThreads(1) { checkConvolutionAgainstADirectSum(threads: 1) }
        withEngineThreads(2) { checkConvolutionAgainstADirectSum(threads: 2) }
    }

    func checkConvolutionAgainstADirectSum(threads: Int) {
        let cases: [(k: Int, stride: Int, padding: Padding, h: Int, w: Int, cin: Int, cout: Int, bands: Int)] = [
            (3, 1, .same, 7, 5, 13, 6, 1), (3, 1, .valid, 6, 9, 13, 6, 1), (3, 1, .same, 1, 4, 13, 6, 1),
            (3, 2, .same, 8, 7, 5, 3, 1), (3, 1, .same, 9, 11, 470, 3, 2), (5, 2, .same, 17, 17, 200, 2, 2),
            (3, 1, .same, 97, 98, 4, 3, 2), (3, 1, .same, 6, 7, 5, 19, 1),
        ]
        // The patch path; Winograd with every layer's images split across threads; with every
        // layer's 36 transform-domain GEMMs split (the way small layers go).
        for (winograd, splitTiles) in [(false, 0), (true, 0), (true, Int.max)] {
            let before = Winograd.enabled
            Winograd.enabled = winograd
            defer { Winograd.enabled = before }
            withWinogradTransformSplit(upTo: splitTiles) {
            for c in cases {
                let (oh, padTop) = convGeometry(input: c.h, kernel: c.k, stride: c.stride, padding: c.padding)
                let (ow, padLeft) = convGeometry(input: c.w, kernel: c.k, stride: c.stride, padding: c.padding)
                let shape = ConvShape(input: NHWC(n: 2, h: c.h, w: c.w, c: c.cin), kh: c.k, kw: c.k, stride: c.stride,
                                      padTop: padTop, padLeft: padLeft, oh: oh, ow: ow)
                XCTAssertEqual(Array(shape.bands).count, c.bands, "bands of \(c)")
                let x = randomTensor([2, c.h, c.w, c.cin], seed: 7), k = randomTensor([c.k, c.k, c.cin, c.cout], seed: 8)
                let dy = randomTensor([2, oh, ow, c.cout], seed: 9)
                let tape = Tape(recording: true, training: true)
                let xv = tape.constant(x), kv = tape.constant(k)
                let y = tape.conv2d(xv, kv, stride: c.stride, padding: c.padding)
                XCTAssertEqual(tape.value(y).shape, [2, oh, ow, c.cout])
                tape.backward(from: y, seed: dy)
                var direct = [Double](repeating: 0, count: dy.count)
                var input = [Double](repeating: 0, count: x.count), kernel = [Double](repeating: 0, count: k.count)
                var directSize = direct, inputSize = input, kernelSize = kernel
                for n in 0..<2 {
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            for ky in 0..<c.k {
                                for kx in 0..<c.k {
                                    let iy = oy * c.stride + ky - padTop, ix = ox * c.stride + kx - padLeft
                                    guard iy >= 0 && iy < c.h && ix >= 0 && ix < c.w else { continue }
                                    for i in 0..<c.cin {
                                        let xi = ((n * c.h + iy) * c.w + ix) * c.cin + i
                                        for o in 0..<c.cout {
                                            let kk = ((ky * c.k + kx) * c.cin + i) * c.cout + o
                                            let yo = ((n * oh + oy) * ow + ox) * c.cout + o
                                            let xk = Double(x.data[xi]) * Double(k.data[kk])
                                            let dyk = Double(dy.data[yo]) * Double(k.data[kk])
                                            let dyx = Double(dy.data[yo]) * Double(x.data[xi])
                                            direct[yo] += xk
                                            input[xi] += dyk
                                            kernel[kk] += dyx
                                            directSize[yo] += abs(xk)
                                            inputSize[xi] += abs(dyk)
                                            kernelSize[kk] += abs(dyx)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                let label = "\(c) winograd=\(winograd) transform split up to \(splitTiles) tiles, threads=\(threads)"
                let viaWinograd = winograd && c.k == 3 && c.stride == 1
                // |error| ≤ units · u · Σ|terms|, u = 2⁻²⁴: the bound of a float32 sum, whatever the
                // order of its partial sums (BLAS kernels block differently from one CPU to another).
                let units = viaWinograd ? 512.0 : 16.0
                func check(_ values: [Float]?, _ exact: [Double], _ sizes: [Double], _ what: String) {
                    XCTAssertEqual(values?.count, exact.count, "\(what) \(label)")
                    for (a, (b, size)) in zip(values ?? [], zip(exact, sizes)) {
                        XCTAssertEqual(Double(a), b, accuracy: units * 0x1p-24 * size, "\(what) \(label)")
                    }
                }
                check(tape.value(y).data, direct, directSize, "forward")
                check(tape.gradient(xv)?.data, input, inputSize, "dx")
                check(tape.gradient(kv)?.data, kernel, kernelSize, "dkernel")
            }
            }
        }
    }

    /// Runs `body` with Winograd layers of at most `tiles` tiles (all three passes) splitting their
    /// transform-domain GEMMs across threads, then restores the thresholds.
    func withWinogradTransformSplit<T>(upTo tiles: Int, _ body: () throws -> T) rethrows -> T {
        let before = (Winograd.transformSplitTiles, Winograd.kernelGradientTransformSplitTiles)
        (Winograd.transformSplitTiles, Winograd.kernelGradientTransformSplitTiles) = (tiles, tiles)
        defer { (Winograd.transformSplitTiles, Winograd.kernelGradientTransformSplitTiles) = before }
        return try body()
    }

    /// A small layer splits its 36 transform-domain GEMMs across threads, each GEMM over every
    /// image's tiles (Winograd.transformSplitTiles), so its results are the same bits on any thread
    /// count: the forward pass, the input gradient of each part (one upsampled on the fly) and the
    /// kernel gradient, on 1, 2 and 3 threads, with every layer taking that path: 3 images, so
    /// bands of tile rows split into uneven parts; 200 channels; and 400 rows, several bands in each
    /// pass (the kernel gradient's GEMMs overwrite dU in the first and add in the others). A part's
    /// tiles written at the wrong place in its band, or a band overwriting the kernel gradient the
    /// earlier ones summed, changes them.
    func testSmallWinogradLayersGiveTheSameBitsOnAnyThreadCount() {
        for (h, w, widths, cout) in [(10, 12, [6, 9], 5), (12, 16, [40, 160], 200), (400, 8, [6, 9], 5)] {
            let tensors = [randomTensor([3, h / 2, w / 2, widths[0]], seed: 61), randomTensor([3, h, w, widths[1]], seed: 62)]
            let kernel = randomTensor([3, 3, widths.reduce(0, +), cout], seed: 63)
            let seed = randomTensor([3, h, w, cout], seed: 64)
            func run(threads: Int) -> [[Float]] {
                withWinograd(true) { withEngineThreads(threads) { withWinogradTransformSplit(upTo: Int.max) {
                    let tape = Tape(recording: true, training: true)
                    let vars = tensors.map { tape.constant($0) }, k = tape.constant(kernel)
                    let y = tape.conv2d(concatenating: [.upsampled2x(vars[0]), .node(vars[1])], k, padding: .same)
                    tape.backward(from: y, seed: seed)
                    return [tape.value(y).data] + (vars + [k]).map { tape.gradient($0)?.data ?? [] }
                } } }
            }
            let one = run(threads: 1)
            for threads in [2, 3] {
                let many = run(threads: threads)
                for (name, (a, b)) in zip(["forward", "d upsampled part", "d part", "d kernel"], zip(one, many)) {
                    XCTAssertEqual(a.count, b.count, "\(name) \(h)×\(w)")
                    XCTAssertTrue(a.map(\.bitPattern) == b.map(\.bitPattern), "\(name) \(h)×\(w) differs on \(threads) threads")
                }
            }
        }
    }

    /// An op's first contribution to a gradient writes the buffer and later ones add to it
    /// (Tape.accumulate(_:writing:)): with the input read twice, both paths run, and an add that
    /// overwrote, or a write that left old values, would show as a wrong gradient.
    func testGradientsOfAnInputReadTwice() {
        let x = randomTensor([2, 4, 4, 3], seed: 16, range: 2), s = randomTensor([2, 3], seed: 17)
        let k = randomTensor([1, 1, 3, 5], seed: 18), y = randomTensor([2, 4, 4, 2], seed: 19)
        let k3 = randomTensor([3, 3, 3, 5], seed: 21), dw = randomTensor([3, 3, 3], seed: 22)
        let store = ParameterStore(seed: 1)
        store.declareBatchNorm("bn", channels: 3)
        store.set("bn/gamma", randomTensor([3], seed: 20, range: 2))
        // The step of the central differences. silu, sigmoid and batch norm are curved, and their
        // differences carry a truncation error that grows with the step: they keep the default. The
        // other six are linear in each input with the others fixed, so op + op·op is exactly quadratic
        // in each element and central differences have no truncation error at any step; what is left
        // is float32 rounding of the forward pass divided by the step. Winograd rounds more (README): at the default step,
        // the 3×3 conv's worst error was 0.29 of the tolerance on BLIS and 1.05 on OpenBLAS's AVX-512
        // kernels (one element, numeric 0.05525 against analytic 0.05200); at 0.4, 0.040 and 0.019.
        // A wrong backward does not shrink with the step: a 2.5 % slip in one coefficient of the
        // gradient transform reads 106× the tolerance at 0.01 and at 0.4 alike. So the linear ops use
        // 0.4, and the tolerance stays as it is.
        let curved = 1e-2 as Float, linear = 0.4 as Float
        let ops: [(String, Float, (Tape, Var, [Var]) -> Var)] = [
            ("silu", curved, { t, x, _ in t.silu(x) }), ("sigmoid", curved, { t, x, _ in t.sigmoid(x) }),
            ("batch norm", curved, { t, x, _ in t.batchNorm(x, name: "bn", store: store) }),
            ("concat", linear, { t, x, v in t.concat([x, v[2]]) }),
            ("scaled 1×1 conv", linear, { t, x, v in t.pointwiseConv2d(x, scaledBy: v[1], v[3]) }),
            ("1×1 conv", linear, { t, x, v in t.conv2d(x, v[3]) }), ("add", linear, { t, x, _ in t.add(x, x) }),
            ("3×3 conv", linear, { t, x, v in t.conv2d(x, v[4]) }),
            ("depthwise", linear, { t, x, v in t.depthwiseConv2d(x, v[5], stride: 2) }),
        ]
        for winograd in [false, true] {
            let before = Winograd.enabled
            Winograd.enabled = winograd
            defer { Winograd.enabled = before }
            for (name, step, op) in ops {
                assertGradients(gradientCheck(inputs: [x, s, y, k, k3, dw], store: store, step: step) { t, v in
                    t.add(op(t, v[0], v), t.multiply(op(t, v[0], v), op(t, v[0], v)))
                }, "\(name) read three times, winograd=\(winograd)")
            }
        }
        let awayFromZero = Tensor(shape: x.shape, data: x.data.map { $0 + ($0 >= 0 ? 0.1 : -0.1) })
        assertGradients(gradientCheck(inputs: [awayFromZero]) { t, v in t.add(t.relu(v[0]), t.relu(v[0])) }, "relu read twice")
    }

    /// Ops that split their elements, rows or channel pairs across threads compute each element
    /// exactly as one thread does: the same bits on two threads as on one, for shapes large enough
    /// to split (a part skipped, done twice or offset would differ).
    func testOpsSplitAcrossTwoThreadsGiveTheBitsOfOne() {
        let x = randomTensor([3, 24, 26, 40], seed: 30), skip = randomTensor([3, 48, 52, 24], seed: 31)
        let k = randomTensor([3, 3, 64, 72], seed: 32), image = randomTensor([1, 12, 10, 64], seed: 33)
        func run() -> [Tensor] {
            let tape = Tape(recording: true, training: true)
            let xv = tape.constant(x), sv = tape.constant(skip), kv = tape.constant(k), iv = tape.constant(image)
            let joined = tape.concat([tape.upsample2x(xv), sv])
            let convolved = tape.conv2d(iv, kv)
            let seedJoined = randomTensor(tape.shape(joined), seed: 34), seedConv = randomTensor(tape.shape(convolved), seed: 35)
            let loss = tape.add(tape.sum(tape.multiply(joined, tape.constant(seedJoined))),
                                tape.sum(tape.multiply(convolved, tape.constant(seedConv))))
            let values = [tape.value(joined), tape.value(convolved)]
            tape.backward(from: loss)
            return values + [xv, sv, kv, iv].map { tape.gradient($0)! }
        }
        let one = withWinograd(true) { withEngineThreads(1) { run() } }
        let two = withWinograd(true) { withEngineThreads(2) { run() } }
        for (name, (a, b)) in zip(["concat(upsample, skip)", "3×3 conv", "d upsampled", "d skip", "d kernel", "d image"], zip(one, two)) {
            XCTAssertEqual(a.shape, b.shape, name)
            XCTAssertTrue(a.data.elementsEqual(b.data) { $0.bitPattern == $1.bitPattern }, "\(name) differs on two threads")
        }
    }

    /// A convolution of channel parts (`conv2d(concatenating:)`, the U-Net decoder's upsampled map
    /// and skip) gives the bits of the convolution of their concatenation, upsampled parts through
    /// `upsample2x`: forward, kernel gradient and each part's gradient (an upsampled part's summed
    /// over 2×2 blocks), on one thread and two. Widths cross the transforms' eight-channel lanes
    /// (3 + 10; 8 + 5 + 1), the sizes leave edge tiles half outside (and, upsampled, tiles of two
    /// rows or columns), and the first part is also read by a later convolution, so its gradient is
    /// added to (the others' written). Without Winograd, or with a node named twice, it falls back
    /// to `upsample2x` and `concat` themselves; where it does not, the tape has neither node.
    func testConvolutionOfPartsGivesTheBitsOfItsConcatenation() {
        let cases: [(parts: [(width: Int, upsampled: Bool)], h: Int, w: Int, padding: Padding, cout: Int)] = [
            ([(3, false), (10, false)], 7, 5, .same, 6), ([(8, false), (5, false), (1, false)], 9, 11, .valid, 9),
            ([(16, true), (24, false)], 12, 14, .same, 17), ([(3, true)], 10, 6, .same, 5),
            ([(5, false), (9, true)], 6, 10, .valid, 4),
        ]
        for (index, c) in cases.enumerated() {
            let seed = UInt64(40 + 10 * index)
            let tensors = c.parts.enumerated().map { i, part in
                randomTensor([2, part.upsampled ? c.h / 2 : c.h, part.upsampled ? c.w / 2 : c.w, part.width], seed: seed + UInt64(i))
            }
            let k2 = randomTensor([3, 3, c.parts[0].width, c.cout], seed: seed + 6)
            func run(fused: Bool, twice: Bool = false) -> (values: [Tensor], nodes: Int) {
                let tape = Tape(recording: true, training: true)
                let vars = tensors.map { tape.constant($0) }, k2v = tape.constant(k2)
                var parts = zip(vars, c.parts).map { v, part in part.upsampled ? ConvPart.upsampled2x(v) : .node(v) }
                if twice { parts[1] = parts[0] }
                let cin = parts.map { tape.shape($0.node)[3] }.reduce(0, +)
                let kv = tape.constant(randomTensor([3, 3, cin, c.cout], seed: seed + 5))
                func joined() -> Var {
                    let maps = parts.map { $0.isUpsampled ? tape.upsample2x($0.node) : $0.node }
                    return maps.count == 1 ? maps[0] : tape.concat(maps)
                }
                let y = fused ? tape.conv2d(concatenating: parts, kv, padding: c.padding) : tape.conv2d(joined(), kv, padding: c.padding)
                let first = c.parts[0].upsampled ? tape.upsample2x(vars[0]) : vars[0]
                let total = tape.add(y, tape.conv2d(first, k2v, padding: c.padding))
                let seedGradient = randomTensor(tape.shape(total), seed: seed + 7)
                let values = [tape.value(y)]
                let nodes = tape.nodeCount
                tape.backward(from: total, seed: seedGradient)
                return (values + (vars + [kv, k2v]).map { tape.gradient($0) ?? Tensor(shape: [0], data: []) }, nodes)
            }
            for threads in [1, 2] {
                let label = "\(c.parts) \(c.h)×\(c.w) \(c.padding) threads=\(threads)"
                let (fused, fusedNodes) = withWinograd(true) { withEngineThreads(threads) { run(fused: true) } }
                let (joined, joinedNodes) = withWinograd(true) { withEngineThreads(threads) { run(fused: false) } }
                let built = (c.parts.count > 1 ? 1 : 0) + c.parts.filter(\.upsampled).count
                XCTAssertEqual(fusedNodes, joinedNodes - built, "no concatenation or upsampling node on the Winograd path \(label)")
                let names = ["forward"] + c.parts.indices.map { "d part \($0)" } + ["d kernel", "d second kernel"]
                for (name, (a, b)) in zip(names, zip(fused, joined)) {
                    XCTAssertEqual(a.shape, b.shape, "\(name) \(label)")
                    XCTAssertTrue(a.data.elementsEqual(b.data) { $0.bitPattern == $1.bitPattern }, "\(name) differs \(label)")
                }
            }
            let patches = withWinograd(false) { run(fused: true) }, patchesJoined = withWinograd(false) { run(fused: false) }
            XCTAssertEqual(patches.nodes, patchesJoined.nodes, "the patch path builds the maps \(c.parts)")
            XCTAssertEqual(patches.values, patchesJoined.values, "patch path \(c.parts)")
            if c.parts.count > 2 {
                let repeated = withWinograd(true) { run(fused: true, twice: true) }
                let repeatedJoined = withWinograd(true) { run(fused: false, twice: true) }
                XCTAssertEqual(repeated.nodes, repeatedJoined.nodes, "a node named twice builds the maps \(c.parts)")
                XCTAssertEqual(repeated.values, repeatedJoined.values, "a node named twice \(c.parts)")
            }
        }
    }

    func testSamePaddingMatchesTensorFlowGeometry() {
        // Stride 2 on even input: k=3 pads 0 before (1 after); k=5 pads 1 before (2 after).
        XCTAssertEqual(convGeometry(input: 8, kernel: 3, stride: 2, padding: .same).padBefore, 0)
        XCTAssertEqual(convGeometry(input: 8, kernel: 5, stride: 2, padding: .same).padBefore, 1)
        XCTAssertEqual(convGeometry(input: 7, kernel: 3, stride: 2, padding: .same).output, 4)
        XCTAssertEqual(convGeometry(input: 7, kernel: 3, stride: 1, padding: .valid).output, 5)
        // A hand-computed stride-2 same convolution: 4×4 ramp, 3×3 ones → window sums with
        // padding only at the bottom/right.
        let tape = Tape(recording: false, training: false)
        let x = tape.constant(Tensor(shape: [1, 4, 4, 1], data: (0..<16).map(Float.init)))
        let w = tape.constant(Tensor(shape: [3, 3, 1, 1], repeating: 1))
        let y = tape.value(tape.conv2d(x, w, stride: 2, padding: .same))
        // Windows: rows 0–2 × cols 0–2 = 45; rows 0–2 × cols 2–3 = 2+3+6+7+10+11 = 39;
        // rows 2–3 × cols 0–2 = 8+9+10+12+13+14 = 66; rows 2–3 × cols 2–3 = 10+11+14+15 = 50.
        XCTAssertEqual(y.data, [45, 39, 66, 50])
    }

    func testDepthwiseGradients() {
        for (k, stride) in [(3, 1), (3, 2), (5, 2), (5, 1)] {
            let x = randomTensor([2, 7, 6, 4], seed: 4), w = randomTensor([k, k, 4], seed: 5)
            assertGradients(gradientCheck(inputs: [x, w]) { t, v in t.depthwiseConv2d(v[0], v[1], stride: stride) },
                            "depthwise \(k)×\(k) stride \(stride)")
        }
    }

    /// The 1×1 convolution of an input scaled per image and channel (squeeze-excitation's product
    /// and the projection, `pointwiseConv2d(_:scaledBy:_:)`): finite differences for all three
    /// inputs, and every element of the output and of the three gradients against sums in Double
    /// on one, two and three threads — with 3 images of 81 pixels the threads' runs of pixels are
    /// cut inside an image, where a GEMM must switch to the next image's scaled kernel.
    func testScaledPointwiseConvolution() {
        let (n, h, w, cin, cout) = (3, 9, 9, 5, 4)
        let x = randomTensor([n, h, w, cin], seed: 40), s = randomTensor([n, cin], seed: 41)
        let k = randomTensor([1, 1, cin, cout], seed: 42), dy = randomTensor([n, h, w, cout], seed: 43)
        assertGradients(gradientCheck(inputs: [randomTensor([2, 3, 4, 5], seed: 44), randomTensor([2, 5], seed: 45),
                                               randomTensor([1, 1, 5, 6], seed: 46)]) { t, v in
            t.pointwiseConv2d(v[0], scaledBy: v[1], v[2])
        }, "scaled 1×1 conv")
        let area = h * w
        var y = [Double](repeating: 0, count: n * area * cout), dx = [Double](repeating: 0, count: x.count)
        var dk = [Double](repeating: 0, count: k.count), ds = [Double](repeating: 0, count: s.count)
        for image in 0..<n {
            for p in 0..<area {
                for c in 0..<cin {
                    let xi = Double(x.data[(image * area + p) * cin + c]), sc = Double(s.data[image * cin + c])
                    for j in 0..<cout {
                        let wj = Double(k.data[c * cout + j]), g = Double(dy.data[(image * area + p) * cout + j])
                        y[(image * area + p) * cout + j] += xi * sc * wj
                        dx[(image * area + p) * cin + c] += g * sc * wj
                        dk[c * cout + j] += xi * sc * g
                        ds[image * cin + c] += xi * g * wj
                    }
                }
            }
        }
        for threads in [1, 2, 3] {
            withEngineThreads(threads) {
                let tape = Tape(recording: true, training: true)
                let xv = tape.constant(x), sv = tape.constant(s), kv = tape.constant(k)
                let yv = tape.pointwiseConv2d(xv, scaledBy: sv, kv)
                XCTAssertEqual(tape.shape(yv), [n, h, w, cout])
                let got = tape.value(yv)
                tape.backward(from: yv, seed: dy)
                for (name, value, want) in [("forward", got, y), ("dx", tape.gradient(xv)!, dx), ("dkernel", tape.gradient(kv)!, dk),
                                            ("dscales", tape.gradient(sv)!, ds)] {
                    XCTAssertEqual(value.count, want.count, name)
                    for (i, (a, b)) in zip(value.data, want).enumerated() {
                        XCTAssertEqual(Double(a), b, accuracy: 1e-4, "\(name)[\(i)] on \(threads) threads")
                    }
                }
            }
        }
    }

    /// The depthwise forward and kernel gradient (interior columns four at a time, 16 channels at a
    /// time; the rest 32, eight, one) and input gradient against direct sums in Double, with channel
    /// counts on and off the vector widths and taps cut by every border (the 1×1 inputs: taps
    /// outside on both sides). All three also bit for bit against Float sums in the documented
    /// order (taps in order; output pixels in order; thread parts in order), whatever the blocking.
    func testDepthwiseMatchesADirectSumInDouble() {
        let cases = [(3, 1, 5, 7, 8), (3, 2, 8, 7, 12), (5, 2, 9, 6, 19), (5, 1, 4, 4, 16), (3, 2, 1, 1, 3),
                     (3, 1, 6, 5, 45), (5, 2, 7, 9, 72), (5, 2, 1, 1, 40), (5, 1, 2, 3, 33),
                     (3, 1, 4, 13, 32), (5, 1, 6, 14, 56), (3, 2, 5, 17, 16), (5, 2, 11, 21, 41)]
        for (k, stride, h, w, c) in cases {
            let x = randomTensor([2, h, w, c], seed: 25), kernel = randomTensor([k, k, c], seed: 26)
            let (oh, padTop) = convGeometry(input: h, kernel: k, stride: stride, padding: .same)
            let (ow, padLeft) = convGeometry(input: w, kernel: k, stride: stride, padding: .same)
            let dy = randomTensor([2, oh, ow, c], seed: 27)
            let tape = Tape(recording: true, training: true)
            let xv = tape.constant(x), kv = tape.constant(kernel)
            let yv = tape.depthwiseConv2d(xv, kv, stride: stride)
            let y = tape.value(yv)
            tape.backward(from: yv, seed: dy)
            let dx = tape.gradient(xv)!, dk = tape.gradient(kv)!
            XCTAssertEqual(y.shape, [2, oh, ow, c])
            var input = [Double](repeating: 0, count: x.count), weights = [Double](repeating: 0, count: kernel.count)
            var forwardInOrder = [Float](repeating: 0, count: y.count), inputInOrder = [Float](repeating: 0, count: x.count)
            let label = "\(k)×\(k) stride \(stride) \(h)×\(w)×\(c)"
            for n in 0..<2 {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        for ch in 0..<c {
                            var sum = 0.0
                            let o = ((n * oh + oy) * ow + ox) * c + ch
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let iy = oy * stride + ky - padTop, ix = ox * stride + kx - padLeft
                                    guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                                    let i = ((n * h + iy) * w + ix) * c + ch, t = (ky * k + kx) * c + ch
                                    sum += Double(x.data[i]) * Double(kernel.data[t])
                                    forwardInOrder[o] += x.data[i] * kernel.data[t]
                                    inputInOrder[i] += dy.data[o] * kernel.data[t]
                                    input[i] += Double(dy.data[o]) * Double(kernel.data[t])
                                    weights[t] += Double(dy.data[o]) * Double(x.data[i])
                                }
                            }
                            XCTAssertEqual(Double(y.data[o]), sum, accuracy: 1e-5, "\(label) at \(n),\(oy),\(ox),\(ch)")
                        }
                    }
                }
            }
            // The kernel gradient in its order: per thread part (output rows split as the op splits
            // them), each tap's products in the order of the output pixels; the parts then added in order.
            let parts = Parallel.parts(2 * oh, grain: 8)
            var partials = [[Float]](repeating: [Float](repeating: 0, count: kernel.count), count: parts)
            let taps = DepthwiseTaps(h: h, w: w, oh: oh, ow: ow, c: c, k: k, stride: stride, padTop: padTop, padLeft: padLeft)
            for part in 0..<parts {
                taps.forEach(rows: Parallel.range(part, of: parts, count: 2 * oh)) { o, i, t in
                    partials[part][t] += dy.data[o] * x.data[i]
                }
            }
            let kernelInOrder = (0..<kernel.count).map { i in partials.reduce(Float(0)) { $0 + $1[i] } }
            for (i, (got, want)) in zip(dx.data, input).enumerated() { XCTAssertEqual(Double(got), want, accuracy: 1e-5, "dx \(label) [\(i)]") }
            XCTAssertEqual(y.data, forwardInOrder, "forward in order \(label)")
            XCTAssertEqual(dx.data, inputInOrder, "dx in order \(label)")
            XCTAssertEqual(dk.data, kernelInOrder, "dkernel in order \(label)")
            for (i, (got, want)) in zip(dk.data, weights).enumerated() { XCTAssertEqual(Double(got), want, accuracy: 1e-4, "dkernel \(label) [\(i)]") }
        }
    }

    /// The depthwise input gradient added to one already there (x read twice: a residual around
    /// the convolution, whose backward writes dx first), bit for bit against Float sums started
    /// from that gradient in the documented order; stride 1 (the flipped-kernel forward pass) and
    /// stride 2, channel counts on and off the vector widths.
    func testDepthwiseInputGradientAddsInOrderToAnEarlierOne() {
        for (k, stride, h, w, c) in [(3, 1, 6, 9, 19), (5, 1, 7, 10, 40), (3, 1, 2, 3, 16), (3, 2, 6, 8, 24)] {
            let x = randomTensor([2, h, w, c], seed: 31), kernel = randomTensor([k, k, c], seed: 32)
            let (oh, padTop) = convGeometry(input: h, kernel: k, stride: stride, padding: .same)
            let (ow, padLeft) = convGeometry(input: w, kernel: k, stride: stride, padding: .same)
            let dy = randomTensor([2, oh, ow, c], seed: 33)
            let tape = Tape(recording: true, training: true)
            let xv = tape.constant(x), kv = tape.constant(kernel)
            let yv = tape.depthwiseConv2d(xv, kv, stride: stride)
            // With stride 2 the residual needs x at the output's size: a second depthwise pass instead.
            let other = stride == 1 ? xv : tape.depthwiseConv2d(xv, tape.constant(Tensor(shape: [k, k, c], repeating: 0.5)), stride: stride)
            let zv = tape.add(yv, other)
            tape.backward(from: zv, seed: dy)
            let dx = tape.gradient(xv)!
            // The residual's gradient first (dy itself, or the 0.5 pass's sums from zero), then the
            // convolution's products added to it in order.
            let taps = DepthwiseTaps(h: h, w: w, oh: oh, ow: ow, c: c, k: k, stride: stride, padTop: padTop, padLeft: padLeft)
            var want = stride == 1 ? dy.data : [Float](repeating: 0, count: x.count)
            if stride != 1 { taps.forEach(rows: 0..<(2 * oh)) { o, i, _ in want[i] += dy.data[o] * 0.5 } }
            taps.forEach(rows: 0..<(2 * oh)) { o, i, t in want[i] += dy.data[o] * kernel.data[t] }
            XCTAssertEqual(dx.data, want, "\(k)×\(k) stride \(stride) \(h)×\(w)×\(c)")
        }
    }

    func testBatchNormGradientsInTrainingAndInference() {
        for training in [true, false] {
            for activation in [nil, Activation.silu, .relu, .sigmoid] {
                let store = ParameterStore(seed: 1)
                store.declareBatchNorm("bn", channels: 3)
                store.set("bn/gamma", randomTensor([3], seed: 8, range: 2))
                store.set("bn/beta", randomTensor([3], seed: 9))
                store.set("bn/moving_variance", Tensor(shape: [3], data: [0.5, 1.5, 2]))
                let x = randomTensor([2, 3, 3, 3], seed: 6)
                assertGradients(gradientCheck(inputs: [x], store: store, training: training) { t, v in
                    t.batchNorm(v[0], name: "bn", store: store, activation: activation)
                }, "batch norm training=\(training) then \(activation.map { "\($0)" } ?? "nothing")")
            }
        }
    }

    /// Batch statistics in one pass (each 64-row block's squares about its own mean, blocks and
    /// thread parts merged by Chan's update) against a two-pass sum in Double, on values far from
    /// zero (1000 + a drift along the rows + noise: a sum of squares less the squared sum would
    /// cancel away every digit, and without the merge's δ² term the drift between blocks is lost),
    /// over rows enough for many blocks and unequal parts on one to three threads.
    func testBatchStatisticsInOnePassMatchTwoPassesInDouble() {
        let rows = 5_003, c = 7
        var g = SplitMix64(seed: 31)
        let x = Tensor(shape: [rows, c], data: (0..<(rows * c)).map { i in
            Float(1000 + 0.004 * Double(i / c) * Double(i % c + 1) + g.uniform(-0.5, 0.5))
        })
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        for r in 0..<rows { for ch in 0..<c { mean[ch] += Double(x.data[r * c + ch]) } }
        for ch in 0..<c { mean[ch] /= Double(rows) }
        for r in 0..<rows {
            for ch in 0..<c {
                let d = Double(x.data[r * c + ch]) - mean[ch]
                variance[ch] += d * d
            }
        }
        for ch in 0..<c { variance[ch] /= Double(rows) }
        for threads in [1, 2, 3] {
            withEngineThreads(threads) {
                let statistics = batchStatistics(x, rows: rows, channels: c)
                for ch in 0..<c {
                    XCTAssertEqual(Double(statistics.mean[ch]), mean[ch], accuracy: 1e-6 * mean[ch], "mean \(ch), \(threads) threads")
                    XCTAssertEqual(Double(statistics.variance[ch]), variance[ch], accuracy: 1e-5 * variance[ch],
                                   "variance \(ch), \(threads) threads")
                }
            }
        }
    }

    /// Batch norm with its activation as one op gives the same bits as the two ops apart: output,
    /// input, γ and β gradients, and the moving statistics, over more rows than one thread block
    /// (so several 64-row blocks and both thread parts take part).
    func testFusedBatchNormActivationEqualsTheTwoOpsExactly() {
        let x = randomTensor([3, 17, 11, 5], seed: 21, range: 3), dy = randomTensor([3, 17, 11, 5], seed: 22)
        for training in [true, false] {
            for activation in [Activation.silu, .relu, .sigmoid] {
                func run(fused: Bool) -> [[Float]] {
                    let store = ParameterStore(seed: 1)
                    store.declareBatchNorm("bn", channels: 5)
                    store.set("bn/gamma", randomTensor([5], seed: 23, range: 2))
                    store.set("bn/beta", randomTensor([5], seed: 24))
                    store.set("bn/moving_variance", Tensor(shape: [5], data: [0.5, 1.5, 2, 0.7, 1.1]))
                    let tape = Tape(recording: true, training: training)
                    let xv = tape.constant(x)
                    let y: Var
                    if fused {
                        y = tape.batchNorm(xv, name: "bn", store: store, activation: activation)
                    } else {
                        let z = tape.batchNorm(xv, name: "bn", store: store)
                        switch activation {
                        case .silu: y = tape.silu(z)
                        case .relu: y = tape.relu(z)
                        case .sigmoid: y = tape.sigmoid(z)
                        }
                    }
                    tape.backward(from: y, seed: dy)
                    let grads = tape.parameterGradients()
                    return [tape.value(y).data, tape.gradient(xv)?.data ?? [], grads["bn/gamma"]?.data ?? [], grads["bn/beta"]?.data ?? [],
                            store.value("bn/moving_mean").data, store.value("bn/moving_variance").data]
                }
                let fused = run(fused: true), apart = run(fused: false)
                for (k, what) in ["output", "dx", "dγ", "dβ", "moving mean", "moving variance"].enumerated() {
                    XCTAssertFalse(fused[k].isEmpty, what)
                    XCTAssertEqual(fused[k].map(\.bitPattern), apart[k].map(\.bitPattern), "\(what), \(activation), training=\(training)")
                }
            }
        }
    }

    /// The depthwise convolution of a batch-normalised input as one op
    /// (`depthwiseConv2d(normalising:…)`): the gradients of x, the kernel, γ and β against finite
    /// differences, in training and in inference (Grad-CAM records with running statistics), for
    /// both strides and kernel sizes, with and without an activation.
    func testDepthwiseOfANormalisedInputGradients() {
        for training in [true, false] {
            for (k, stride, activation) in [(3, 1, Activation.silu), (3, 2, nil), (5, 2, .silu), (5, 1, .relu)] {
                let store = ParameterStore(seed: 1)
                store.declareBatchNorm("bn", channels: 4)
                store.set("bn/gamma", randomTensor([4], seed: 8, range: 2))
                store.set("bn/beta", randomTensor([4], seed: 9))
                store.set("bn/moving_mean", randomTensor([4], seed: 10))
                store.set("bn/moving_variance", Tensor(shape: [4], data: [0.5, 1.5, 2, 0.8]))
                let x = randomTensor([2, 7, 6, 4], seed: 4, range: 2), w = randomTensor([k, k, 4], seed: 5)
                assertGradients(gradientCheck(inputs: [x, w], store: store, training: training) { t, v in
                    t.depthwiseConv2d(normalising: v[0], name: "bn", store: store, activation: activation, v[1], stride: stride)
                }, "normalised depthwise \(k)×\(k) stride \(stride) \(String(describing: activation)) training=\(training)")
            }
        }
    }

    /// The depthwise convolution of a batch-normalised input as one op against the two ops apart.
    /// The normalised tensor is never written: the convolution normalises the rows it reads band
    /// by band, and the backward pass makes the gradient at them one input row at a time. Output,
    /// kernel gradient and moving statistics: the same bits. dx, dγ and dβ: the same up to the
    /// order of batch norm's channel sums (within 10⁻⁴ and 10⁻³ of their largest element; a row of
    /// the input gradient made twice or not at all moves them by far more). For both strides and
    /// kernel sizes, with and without an activation, in inference, in training and recording with
    /// running statistics (Grad-CAM), on one to three threads (parts starting inside an image),
    /// and with rows wide enough (40 × 200 channels) that an image takes several bands, which
    /// share rows.
    func testDepthwiseOfANormalisedInputEqualsTheTwoOps() {
        let cases: [(k: Int, stride: Int, h: Int, w: Int, c: Int)] = [(3, 1, 30, 40, 200), (5, 2, 23, 40, 200), (3, 2, 9, 7, 19),
                                                                        (5, 1, 12, 10, 33), (3, 1, 1, 1, 8)]
        for (index, t) in cases.enumerated() {
            let seed = UInt64(60 + 10 * index)
            let x = randomTensor([3, t.h, t.w, t.c], seed: seed, range: 3), kernel = randomTensor([t.k, t.k, t.c], seed: seed + 1)
            func makeStore() -> ParameterStore {
                let store = ParameterStore(seed: 1)
                store.declareBatchNorm("bn", channels: t.c)
                store.set("bn/gamma", randomTensor([t.c], seed: seed + 2, range: 2))
                store.set("bn/beta", randomTensor([t.c], seed: seed + 3))
                store.set("bn/moving_mean", randomTensor([t.c], seed: seed + 4))
                store.set("bn/moving_variance", Tensor(shape: [t.c], data: randomTensor([t.c], seed: seed + 5).data.map { 1.2 + $0 }))
                return store
            }
            for activation in [Activation.silu, .relu, nil] {
                for (recording, training) in [(false, false), (true, true), (true, false)] {
                    for threads in [1, 2, 3] {
                        let what = "\(t), \(String(describing: activation)), training=\(training), \(threads) threads"
                        func run(fused: Bool) -> (output: Tensor, dx: [Float], dw: [Float], dGamma: [Float], dBeta: [Float], moving: [Float]) {
                            withEngineThreads(threads) {
                                let store = makeStore()
                                let tape = Tape(recording: recording, training: training)
                                let xv = tape.constant(x), kv = tape.constant(kernel)
                                let y = fused
                                    ? tape.depthwiseConv2d(normalising: xv, name: "bn", store: store, activation: activation, kv,
                                                           stride: t.stride)
                                    : tape.depthwiseConv2d(tape.batchNorm(xv, name: "bn", store: store, activation: activation), kv,
                                                           stride: t.stride)
                                let output = tape.value(y)
                                let moving = store.value("bn/moving_mean").data + store.value("bn/moving_variance").data
                                guard recording else { return (output, [], [], [], [], moving) }
                                tape.backward(from: y, seed: randomTensor(output.shape, seed: seed + 6))
                                let grads = tape.parameterGradients()
                                return (output, tape.gradient(xv)!.data, tape.gradient(kv)!.data, grads["bn/gamma"]!.data,
                                        grads["bn/beta"]!.data, moving)
                            }
                        }
                        let fused = run(fused: true), apart = run(fused: false)
                        XCTAssertEqual(fused.output.shape, apart.output.shape, what)
                        XCTAssertEqual(fused.output.data.map(\.bitPattern), apart.output.data.map(\.bitPattern), "output, \(what)")
                        XCTAssertEqual(fused.moving.map(\.bitPattern), apart.moving.map(\.bitPattern), "moving statistics, \(what)")
                        guard recording else { continue }
                        XCTAssertEqual(fused.dw.map(\.bitPattern), apart.dw.map(\.bitPattern), "kernel gradient, \(what)")
                        for (name, a, b, tolerance) in [("dx", fused.dx, apart.dx, 1e-4), ("dγ", fused.dGamma, apart.dGamma, 1e-3),
                                                        ("dβ", fused.dBeta, apart.dBeta, 1e-3)] {
                            XCTAssertEqual(a.count, b.count, "\(name), \(what)")
                            let largest = b.map { abs(Double($0)) }.max() ?? 0
                            let worst = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
                            XCTAssertLessThanOrEqual(worst, tolerance * largest, "\(name), \(what)")
                        }
                    }
                }
            }
        }
    }

    /// The expand convolution folded into the normalised depthwise convolution
    /// (`depthwiseConv2d(normalisingExpansionOf:…)`) against the 1×1 convolution and the normalised
    /// depthwise convolution apart. The folded op runs the expansion's GEMMs on runs of pixels (in
    /// training the forward too, with batch statistics of each run in cache; the kernel gradient in
    /// per-thread partials), which the BLAS may round differently from one GEMM over all pixels
    /// (OpenBLAS picks kernels by size), so every result is compared within 10⁻⁴ of its largest
    /// element (10⁻⁵ for the moving statistics) rather than bit for bit: a run skipped, or its
    /// kernel gradient added twice, moves them by far more. With runs (200 channels from 7: runs of
    /// 320–327 pixels, several per thread, the last one short) and without (840 channels from 20, a
    /// kernel too large for runs), in training and recording with running statistics, on one to
    /// three threads; and finite differences for x, both kernels, γ and β.
    func testDepthwiseOfANormalisedExpansionEqualsTheOpsApart() {
        let cases: [(k: Int, stride: Int, h: Int, w: Int, cin: Int, c: Int)] = [(3, 1, 30, 40, 7, 200), (5, 2, 9, 11, 7, 200),
                                                                                  (3, 1, 4, 5, 20, 840)]
        for (index, t) in cases.enumerated() {
            let seed = UInt64(90 + 10 * index)
            let x = randomTensor([3, t.h, t.w, t.cin], seed: seed, range: 2)
            let expand = randomTensor([1, 1, t.cin, t.c], seed: seed + 1), kernel = randomTensor([t.k, t.k, t.c], seed: seed + 2)
            func makeStore() -> ParameterStore {
                let store = ParameterStore(seed: 1)
                store.declareBatchNorm("bn", channels: t.c)
                store.set("bn/gamma", randomTensor([t.c], seed: seed + 3, range: 2))
                store.set("bn/beta", randomTensor([t.c], seed: seed + 4))
                store.set("bn/moving_variance", Tensor(shape: [t.c], data: randomTensor([t.c], seed: seed + 5).data.map { 1.2 + $0 }))
                return store
            }
            for training in [true, false] {
                for threads in [1, 2, 3] {
                    let what = "\(t), training=\(training), \(threads) threads"
                    func run(folded: Bool) -> [[Float]] {
                        withEngineThreads(threads) {
                            let store = makeStore()
                            let tape = Tape(recording: true, training: training)
                            let xv = tape.constant(x), ev = tape.constant(expand), kv = tape.constant(kernel)
                            let y = folded
                                ? tape.depthwiseConv2d(normalisingExpansionOf: xv, ev, name: "bn", store: store, activation: .silu, kv,
                                                       stride: t.stride)
                                : tape.depthwiseConv2d(normalising: tape.conv2d(xv, ev), name: "bn", store: store, activation: .silu, kv,
                                                       stride: t.stride)
                            let output = tape.value(y)
                            tape.backward(from: y, seed: randomTensor(output.shape, seed: seed + 6))
                            let grads = tape.parameterGradients()
                            return [output.data, tape.gradient(kv)!.data, grads["bn/gamma"]!.data, grads["bn/beta"]!.data,
                                    store.value("bn/moving_mean").data + store.value("bn/moving_variance").data,
                                    tape.gradient(xv)!.data, tape.gradient(ev)!.data]
                        }
                    }
                    let folded = run(folded: true), apart = run(folded: false)
                    let names = ["output", "depthwise kernel gradient", "dγ", "dβ", "moving statistics", "dx", "expand kernel gradient"]
                    for (k, name) in names.enumerated() {
                        XCTAssertFalse(folded[k].isEmpty, name)
                        XCTAssertEqual(folded[k].count, apart[k].count, "\(name), \(what)")
                        let largest = apart[k].map { abs(Double($0)) }.max() ?? 0
                        let worst = zip(folded[k], apart[k]).map { abs(Double($0) - Double($1)) }.max() ?? 0
                        XCTAssertLessThanOrEqual(worst, (name == "moving statistics" ? 1e-5 : 1e-4) * largest, "\(name), \(what)")
                    }
                }
            }
        }
        for (stride, training) in [(1, true), (2, true), (1, false)] {
            let store = ParameterStore(seed: 1)
            store.declareBatchNorm("bn", channels: 6)
            store.set("bn/gamma", randomTensor([6], seed: 8, range: 2))
            store.set("bn/beta", randomTensor([6], seed: 9))
            store.set("bn/moving_variance", Tensor(shape: [6], data: [0.5, 1.5, 2, 0.8, 1.1, 0.9]))
            let x = randomTensor([2, 5, 6, 3], seed: 4, range: 2), e = randomTensor([1, 1, 3, 6], seed: 5)
            let w = randomTensor([3, 3, 6], seed: 6)
            assertGradients(gradientCheck(inputs: [x, e, w], store: store, training: training) { t, v in
                t.depthwiseConv2d(normalisingExpansionOf: v[0], v[1], name: "bn", store: store, activation: .silu, v[2], stride: stride)
            }, "normalised expansion, depthwise stride \(stride), training=\(training)")
        }
    }

    func testActivationsShapeOpsAndElementwise() {
        let x = randomTensor([2, 4, 4, 3], seed: 10, range: 2)
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.silu(v[0]) }, "silu")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.sigmoid(v[0]) }, "sigmoid")
        let awayFromZero = Tensor(shape: x.shape, data: x.data.map { $0 + ($0 >= 0 ? 0.1 : -0.1) })
        assertGradients(gradientCheck(inputs: [awayFromZero]) { t, v in t.relu(v[0]) }, "relu")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.softmax(v[0]) }, "softmax")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.globalAveragePool(v[0]) }, "global average pool")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.zeroPad(v[0]) }, "zero pad")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.upsample2x(v[0]) }, "upsample")
        let y = randomTensor([2, 4, 4, 2], seed: 11)
        assertGradients(gradientCheck(inputs: [x, y]) { t, v in t.concat([v[0], v[1]]) }, "concat")
        assertGradients(gradientCheck(inputs: [x, x]) { t, v in t.add(v[0], v[1]) }, "add")
        let d = randomTensor([3, 5], seed: 13), w = randomTensor([5, 4], seed: 14), b = randomTensor([4], seed: 15)
        assertGradients(gradientCheck(inputs: [d, w, b]) { t, v in t.dense(v[0], v[1], bias: v[2]) }, "dense")
        let positive = Tensor(shape: [2, 3], data: [0.2, 0.5, 0.9, 1.3, 0.7, 0.4])
        assertGradients(gradientCheck(inputs: [positive]) { t, v in t.log(v[0]) }, "log")
        assertGradients(gradientCheck(inputs: [d]) { t, v in t.mean(t.multiply(v[0], v[0])) }, "mean of square")
    }

    func testDropConnectKeepsOrDropsWholeImagesAndScales() {
        let x = Tensor(shape: [64, 1, 1, 2], repeating: 1)
        let tape = Tape(recording: true, training: true, generator: SplitMix64(seed: 3))
        let y = tape.value(tape.dropConnect(tape.constant(x), rate: 0.25))
        for n in 0..<64 { XCTAssertEqual(y.data[2 * n], y.data[2 * n + 1]) }
        XCTAssertEqual(Set(y.data), [0, Float(1) / 0.75])
        let kept = y.data.filter { $0 > 0 }.count / 2
        XCTAssertTrue((36...60).contains(kept), "\(kept) of 64 kept at rate 0.25")
        let inference = Tape(recording: false, training: false)
        XCTAssertEqual(inference.value(inference.dropConnect(inference.constant(x), rate: 0.25)), x)
        assertGradients(gradientCheck(inputs: [randomTensor([4, 2, 2, 3], seed: 1)]) { t, v in t.dropConnect(v[0], rate: 0.5) }, "drop-connect")
    }

    func testDeliberatelyWrongBackwardFails() {
        // Sigmoid with a derivative off by 5 %: the check must reject it.
        let x = randomTensor([2, 3, 3, 2], seed: 20, range: 2)
        let result = gradientCheck(inputs: [x]) { t, v in
            let xv = t.value(v[0])
            let y = Tensor(shape: xv.shape, data: xv.data.map { 1 / (1 + expf(-$0)) })
            return t.record(y) { tape, dy in
                tape.accumulate(v[0]) { dx in for i in 0..<dy.count { dx[i] += 1.05 * dy.data[i] * y.data[i] * (1 - y.data[i]) } }
            }
        }
        XCTAssertFalse(result.failures.isEmpty, "a 5 % error in a derivative passed the gradient check")
    }
}

final class LossOpGradientTests: XCTestCase {
    func testTheOpsLossesAreBuiltFrom() {
        let x = randomTensor([3, 4], seed: 40, range: 2)
        let positive = Tensor(shape: [3, 4], data: x.data.map { Swift.abs($0) + 0.2 })
        let awayFromZero = Tensor(shape: x.shape, data: x.data.map { $0 + ($0 >= 0 ? 0.1 : -0.1) })
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.exp(v[0]) }, "exp")
        assertGradients(gradientCheck(inputs: [awayFromZero]) { t, v in t.abs(v[0]) }, "abs")
        assertGradients(gradientCheck(inputs: [positive]) { t, v in t.pow(v[0], 0.75) }, "pow 0.75")
        assertGradients(gradientCheck(inputs: [positive]) { t, v in t.pow(v[0], 2) }, "pow 2")
        let inside = Tensor(shape: x.shape, data: x.data.map { $0 * 0.4 })  // clip bounds ±1 not reached
        assertGradients(gradientCheck(inputs: [inside]) { t, v in t.clip(v[0], -1, 1) }, "clip")
        assertGradients(gradientCheck(inputs: [x, positive]) { t, v in t.subtract(v[0], v[1]) }, "subtract")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.sumLastAxis(v[0]) }, "sum last axis")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.meanLastAxis(v[0]) }, "mean last axis")
        assertGradients(gradientCheck(inputs: [x]) { t, v in t.maxLastAxis(v[0]).max }, "max last axis")
        let tape = Tape(recording: false, training: false)
        let m = tape.maxLastAxis(tape.constant(Tensor(shape: [2, 3], data: [1, 5, 5, -1, -3, -2])))
        XCTAssertEqual(m.argmax, [1, 0])  // first maximum on ties, as NumPy
        XCTAssertEqual(tape.value(m.max).data, [5, -1])
        XCTAssertEqual(tape.value(tape.clip(tape.constant(Tensor(shape: [3], data: [-2, 0.5, 3])), 0, 1)).data, [0, 0.5, 1])
    }
}

/// The taps of a depthwise convolution of [n, h, w, c] onto [n, oh, ow, c] that read inside the input.
private struct DepthwiseTaps {
    let h, w, oh, ow, c, k, stride, padTop, padLeft: Int

    /// Calls `body(o, i, t)` with the offsets of an output element, the input element and the kernel
    /// element of each such tap, for output rows `rows` (n·oh + oy): rows, columns, taps (ky, kx),
    /// channels, each in order — so a given tap's products come in the order of the output pixels.
    func forEach(rows: Range<Int>, _ body: (_ o: Int, _ i: Int, _ t: Int) -> Void) {
        for row in rows {
            let n = row / oh, oy = row % oh
            for ox in 0..<ow { for ky in 0..<k { for kx in 0..<k {
                let iy = oy * stride + ky - padTop, ix = ox * stride + kx - padLeft
                guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                let o = (row * ow + ox) * c, i = ((n * h + iy) * w + ix) * c, t = (ky * k + kx) * c
                for ch in 0..<c { body(o + ch, i + ch, t + ch) }
            } } }
        }
    }
}

final class FastMathTests: XCTestCase {
    func testFastExpAgreesWithLibmAcrossTheRange() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let exact = expf(x)
            worst = max(worst, Swift.abs(fastExp(x) - exact) / exact)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 4e-7, "relative error of fastExp")  // a few ulp of Float
        XCTAssertEqual(fastExp(0), 1)
        XCTAssertGreaterThan(fastExp(100), 1e38)   // clamped, finite
        XCTAssertGreaterThan(fastExp(-100), 0)
    }
}
