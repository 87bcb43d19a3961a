// The architectures: parameter counts and shapes of SPEC §11, and gradient checks of the composite
// blocks (MBConv with squeeze-excitation and drop-connect, a U-Net decoder stage, the classifier head).

import XCTest
import SeededRandom
@testable import Engine
@testable import Models

final class ModelTests: XCTestCase {
    func testUNetParameterCountsMatchKeras() {
        let store = ParameterStore(seed: 1)
        let tape = Tape(recording: false, training: false)
        let out = UNet.forward(Layers(tape: tape, store: store), tape.constant(Tensor(zeros: [1, 32, 32, 3])))
        XCTAssertEqual(tape.shape(out.probabilities), [1, 32, 32, 1])
        XCTAssertEqual(store.counts.total, 10_115_501)
        XCTAssertEqual(store.counts.trainable, 10_071_501)
    }

    func testClassifierParameterCountsAndShapesMatchKeras() {
        let store = ParameterStore(seed: 1)
        let tape = Tape(recording: false, training: false)
        let layers = Layers(tape: tape, store: store)
        let out = Classifier.forward(layers, tape.constant(Tensor(zeros: [1, 256, 256, 3])))
        XCTAssertEqual(store.counts.total, 1_386_115)
        XCTAssertEqual(store.counts.trainable, 1_369_955)
        XCTAssertEqual(tape.shape(out.dcl), [1, 16, 16, 512])
        XCTAssertEqual(tape.shape(out.logits), [1, 3])
        let trunk = EfficientNetB0.encode(layers, tape.constant(Tensor(zeros: [1, 256, 256, 3])), outputs: ["block5c_add"], stopAfter: "block5c")
        XCTAssertEqual(trunk["block5c_add"].map { tape.shape($0) }, [1, 16, 16, 112])
    }

    func testKerasNamesAndSEWidthFromTheBlockInput() {
        let store = ParameterStore(seed: 1)
        let tape = Tape(recording: false, training: false)
        _ = UNet.forward(Layers(tape: tape, store: store), tape.constant(Tensor(zeros: [1, 32, 32, 3])))
        XCTAssertEqual(store.value("block5c_se_reduce/kernel").shape, [1, 1, 672, 28])   // int(112·0.25)
        XCTAssertEqual(store.value("block1a_se_reduce/kernel").shape, [1, 1, 32, 8])     // int(32·0.25)
        XCTAssertEqual(store.value("block2a_dwconv/depthwise_kernel").shape, [3, 3, 96, 1])
        XCTAssertEqual(store.value("decoder_stage0a_conv/kernel").shape, [3, 3, 1280 + 672, 256])
        XCTAssertEqual(store.value("final_conv/kernel").shape, [3, 3, 16, 1])
        XCTAssertTrue(store.frozen.contains("top_bn/moving_variance"))
    }

    func testInitialisationDependsOnlyOnSeedAndName() {
        let a = ParameterStore(seed: 7), b = ParameterStore(seed: 7), c = ParameterStore(seed: 8)
        b.declare("other", shape: [3], initializer: .glorotUniform)  // a different creation order
        for store in [a, b, c] { store.declare("w", shape: [3, 3, 4, 5], initializer: EfficientNetB0.convInitializer) }
        XCTAssertEqual(a.value("w"), b.value("w"))
        XCTAssertNotEqual(a.value("w"), c.value("w"))
        // Truncated normal: nothing beyond two standard deviations (σ = √(2/45)/0.8796).
        let sigma = Float((2.0 / 45).squareRoot() / 0.879_625_661)
        XCTAssertLessThanOrEqual(a.value("w").data.map(abs).max()!, 2 * sigma + 1e-6)
        XCTAssertGreaterThan(a.value("w").data.map(abs).max()!, sigma)
    }

    func testParameterFactoriesMatchAModelRunAtAnotherSize() {
        // The factories apply the model to one 32×32 image; a store filled by a 64×64 batch of two
        // (the shapes follow the channels, the values the seed and names) must hold the same tensors.
        for (factory, model) in [(UNet.parameters(seed: 9), { (l: Layers, x: Var) in _ = UNet.forward(l, x) }),
                                 (Classifier.parameters(seed: 9), { (l: Layers, x: Var) in _ = Classifier.forward(l, x) })] {
            let store = ParameterStore(seed: 9)
            let tape = Tape(recording: false, training: false)
            model(Layers(tape: tape, store: store), tape.constant(Tensor(zeros: [2, 64, 64, 3])))
            XCTAssertEqual(factory.names, store.names)
            XCTAssertEqual(factory.allTensors, store.allTensors)
        }
        XCTAssertNotEqual(Classifier.parameters(seed: 9).allTensors, Classifier.parameters(seed: 10).allTensors)
    }

    func testMBConvBlockGradients() {
        for (input, output, stride) in [(8, 8, 1), (8, 12, 2)] {
            let store = ParameterStore(seed: 3)
            let x = randomTensor([2, 6, 6, input], seed: 30)
            let result = gradientCheck(inputs: [x], store: store, samples: 6) { tape, v in
                EfficientNetB0.mbConv(Layers(tape: tape, store: store), v[0], name: "blk", inputFilters: input, outputFilters: output,
                                      expandRatio: 6, kernel: 3, stride: stride, dropRate: 0.25, keep: { _, _ in })
            }
            assertGradients(result, "MBConv \(input)→\(output) stride \(stride)")
        }
    }

    func testDecoderStageAndClassifierHeadGradients() {
        let store = ParameterStore(seed: 4)
        let low = randomTensor([2, 3, 3, 4], seed: 31), skip = randomTensor([2, 6, 6, 2], seed: 32)
        // A step of 2e-3, not 1e-3: the Float forward's rounding (about 7e-6 in the projected loss)
        // moved the half step's estimate of one sample by 0.007, at the tolerance's edge.
        let decoder = gradientCheck(inputs: [low, skip], store: store, step: 2e-3, atol: 5e-3, samples: 8) { tape, v in
            let layers = Layers(tape: tape, store: store)
            var h = tape.concat([tape.upsample2x(v[0]), v[1]])
            for part in ["a", "b"] {
                h = layers.conv(h, "decoder_stage0\(part)_conv", filters: 3, kernel: 3, bias: false, initializer: .heUniform)
                h = tape.relu(layers.batchNorm(h, "decoder_stage0\(part)_bn"))
            }
            return h
        }
        assertGradients(decoder, "U-Net decoder stage")
        let headStore = ParameterStore(seed: 5)
        let trunk = randomTensor([2, 4, 4, 6], seed: 33)
        let head = gradientCheck(inputs: [trunk], store: headStore, step: 1e-3, atol: 5e-3, samples: 8) { tape, v in
            let layers = Layers(tape: tape, store: headStore)
            let dcl = tape.relu(layers.conv(tape.zeroPad(v[0]), "extra_conv_eff0", filters: 5, kernel: 3, padding: .valid,
                                            bias: true, initializer: .glorotUniform))
            return tape.softmax(layers.dense(tape.globalAveragePool(dcl), "predictions", units: 3, initializer: .glorotUniform))
        }
        assertGradients(head, "classifier head")
    }
}

final class MemoryTests: XCTestCase {
    func testReleasingIntermediatesLeavesInferenceOutputsUnchanged() {
        // Inference frees block intermediates; a recording tape (which keeps everything) must give
        // the same outputs, and reading a released value is a programming error caught early.
        let store = ParameterStore(seed: 2)
        let x = randomTensor([1, 64, 64, 3], seed: 9)
        let inference = Tape(recording: false, training: false)
        let unet = inference.value(UNet.forward(Layers(tape: inference, store: store), inference.constant(x)).probabilities)
        let classifier = inference.value(Classifier.forward(Layers(tape: inference, store: store), inference.constant(x)).logits)
        let full = Tape(recording: true, training: false)
        XCTAssertEqual(full.value(UNet.forward(Layers(tape: full, store: store), full.constant(x)).probabilities), unet)
        XCTAssertEqual(full.value(Classifier.forward(Layers(tape: full, store: store), full.constant(x)).logits), classifier)
    }

    func testATrainingTapeLetsGoOfReleasedIntermediatesWithTheSameGradients() {
        // An upsampled map only a concatenation reads: released at the block's end, the tape no
        // longer holds it (nor the ReLU output, which ReLU's backward keeps for itself), and the
        // gradients are those of a tape that held everything.
        func run(release: Bool) -> (freed: Int, gradient: [Float]) {
            let tape = Tape(recording: true, training: true)
            let x = tape.constant(Tensor(shape: [1, 2, 2, 1], data: [1, -2, 3, 4]))
            let mark = tape.nodeCount
            let up = tape.upsample2x(tape.relu(x))
            let joined = tape.concat([up, up])
            let before = tape.heldElements
            if release { tape.releaseIntermediates(since: mark, keeping: [joined]) }
            let freed = before - tape.heldElements
            tape.backward(from: tape.sum(tape.multiply(joined, joined)))
            return (freed, tape.gradient(x)!.data)
        }
        let released = run(release: true), held = run(release: false)
        XCTAssertEqual(released.freed, 4 + 16)
        XCTAssertEqual(held.freed, 0)
        XCTAssertEqual(released.gradient, held.gradient)
        XCTAssertEqual(held.gradient, [16, 0, 48, 64])  // d/dx Σ 2·4·relu(x)² = 16·relu(x)·[x > 0]
    }

    func testRecipesRebuildTheForwardBitsAndBackwardLetsGoOfTheirValuesFirst() {
        // Batch norm (with and without an activation, training statistics), upsampling and
        // concatenation record recipes; what a backward closure rebuilds
        // from them must be the forward's value bit for bit, though the running statistics have
        // moved since. Backward then drops the values the tape still held of every recipe node
        // before the first closure runs (whoever reads them rebuilds them).
        let store = ParameterStore(seed: 3)
        let tape = Tape(recording: true, training: true)
        let layers = Layers(tape: tape, store: store)
        let x = tape.constant(randomTensor([2, 8, 8, 4], seed: 21))
        let expanded = layers.batchNorm(layers.conv(x, "expand", filters: 8, kernel: 1, bias: false, initializer: .heUniform),
                                        "expand_bn", activation: .silu)
        let depthwise = layers.batchNorm(layers.depthwise(expanded, "dw", kernel: 3, stride: 2, initializer: .heUniform),
                                         "dw_bn", activation: .relu)
        let scales = tape.sigmoid(layers.dense(tape.globalAveragePool(depthwise), "se", units: 8, initializer: .glorotUniform))
        let projected = layers.batchNorm(layers.pointwiseConv(depthwise, scaledBy: scales, "project", filters: 8, initializer: .heUniform),
                                         "project_bn")
        let upsampled = tape.upsample2x(projected)
        let joined = tape.concat([upsampled, expanded])
        let rebuilt = [expanded, depthwise, projected, upsampled, joined]
        for v in rebuilt {
            let same = tape.saved(v)().data.map(\.bitPattern) == tape.value(v).data.map(\.bitPattern)
            XCTAssertTrue(same, "node \(v.id) of shape \(tape.shape(v)) is rebuilt with other bits")
        }
        XCTAssertNotEqual(store.value("expand_bn/moving_mean").data, [Float](repeating: 0, count: 8))

        var heldAtProbe = 0
        let top = tape.record(tape.value(joined)) { tape, dy in
            heldAtProbe = tape.heldElements
            tape.accumulate(joined) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] } }
        }
        let before = tape.heldElements, rebuiltElements = rebuilt.map { tape.value($0).count }.reduce(0, +)
        tape.backward(from: top)
        XCTAssertEqual(heldAtProbe, before + tape.value(top).count - rebuiltElements)  // + the seed gradient
        XCTAssertNotNil(tape.gradient(x))
    }

    func testBackwardFreesWhatItPassedWithoutChangingGradients() {
        // Parameter gradients of a U-Net step are bitwise the same whether backward keeps every
        // node or frees each as it passes it (a closure reading a freed node would trap or differ).
        let x = randomTensor([2, 32, 32, 3], seed: 12)
        func gradients(keepingAll: Bool) -> [String: Tensor] {
            let store = ParameterStore(seed: 6)
            let tape = Tape(recording: true, training: true)
            let y = UNet.forward(Layers(tape: tape, store: store), tape.constant(x)).probabilities
            let loss = tape.sum(tape.multiply(y, y))
            tape.backward(from: loss, keeping: keepingAll ? (0..<tape.nodeCount).map { Var(id: $0) } : [])
            return tape.parameterGradients()
        }
        let kept = gradients(keepingAll: true), freed = gradients(keepingAll: false)
        XCTAssertEqual(kept.count, freed.count)
        for (name, g) in kept { XCTAssertEqual(freed[name]?.data.map(\.bitPattern), g.data.map(\.bitPattern), name) }

        // A chain of 20 activations over a probe that reads what the tape holds when backward
        // reaches it: the input and the probe's value and gradient, and the output (kept, with its
        // seed) and the gradient flowing into the probe — everything above has been dropped.
        // Keeping every gradient to the end held 20 values and 20 gradients more.
        let size = 6007
        let tape = Tape(recording: true, training: true)
        let input = tape.constant(Tensor(shape: [size], repeating: 1))
        var heldAtProbe = 0
        var h = tape.record(tape.value(input)) { tape, dy in
            heldAtProbe = tape.heldElements
            tape.accumulate(input) { dx in for i in 0..<size { dx[i] += dy.data[i] } }
        }
        for _ in 0..<20 { h = tape.silu(h) }
        tape.backward(from: h)
        XCTAssertEqual(heldAtProbe, 5 * size)
        XCTAssertEqual(tape.heldElements, 4 * size)  // input, its gradient, output, its seed

        // What backward passed is gone; what it was asked to keep is not.
        let small = Tape(recording: true, training: true)
        let leaf = small.constant(Tensor(shape: [4], data: [1, -2, 3, -4]))
        let middle = small.relu(leaf), other = small.scale(middle, 3)
        let output = small.sum(small.add(other, middle))
        small.backward(from: output, keeping: [middle])
        XCTAssertEqual(small.gradient(middle)?.data, [4, 4, 4, 4])
        XCTAssertEqual(small.value(middle).data, [1, 0, 3, 0])
        XCTAssertEqual(small.gradient(leaf)?.data, [4, 0, 4, 0])
        XCTAssertEqual(small.value(output).data, [4 * 4])
    }
}
