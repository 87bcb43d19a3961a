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
        let decoder = gradientCheck(inputs: [low, skip], store: store, step: 1e-3, atol: 5e-3, samples: 8) { tape, v in
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

final class InferenceMemoryTests: XCTestCase {
    func testBufferPoolDoesNotGrowWithArraysItNeverLent() {
        // An elementwise op's output is not taken from the pool but is handed back with its tape;
        // step after step the pool must not keep such arrays (it grew by them every step before).
        let size = 4999
        for _ in 0..<12 {
            let tape = Tape(recording: true, training: true)
            let x = tape.constant(Tensor(shape: [size], repeating: 1))
            tape.backward(from: tape.sum(tape.scale(x, 2)))
        }
        XCTAssertLessThanOrEqual(BufferPool.shared.pooledArrays(of: size), 2)
        // Arrays it did lend come back and are reused: a pooled op output of a fresh size.
        for _ in 0..<12 {
            let tape = Tape(recording: true, training: true)
            _ = tape.relu(tape.constant(Tensor(shape: [1, 1, 1, 5003], repeating: 1)))
        }
        XCTAssertEqual(BufferPool.shared.pooledArrays(of: 5003), 1)
    }

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
}
