// Forward and backward of conv, depthwise conv, batch norm and an MBConv block against
// TensorFlow/Keras, and three SGD steps of the classifier reproducing Keras' losses from the same
// initial weights (Fixtures/make_goldens.py; versions in the files' metadata).

import Foundation
import XCTest
@testable import Engine
@testable import Models

final class KerasGoldenTests: XCTestCase {
    static func load(_ name: String) -> [String: Tensor] {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
        return try! Safetensors.decode([UInt8](Data(contentsOf: url)), source: name).tensors
    }

    static let ops = load("ops.safetensors")

    func assertClose(_ got: Tensor?, _ want: Tensor?, _ what: String, tolerance: Float = 2e-5, file: StaticString = #filePath, line: UInt = #line) {
        guard let got, let want else { return XCTFail("\(what): missing tensor", file: file, line: line) }
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let scale = max(1, want.data.map(abs).max() ?? 1)
        let worst = zip(got.data, want.data).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance * scale, "\(what): worst difference \(worst) (scale \(scale))", file: file, line: line)
    }

    func testConvolutionsMatchKeras() {
        for prefix in ["conv3s1same", "conv3s2same", "conv5s2same", "conv3s1valid", "conv1s2same"] {
            let o = Self.ops
            let stride = prefix.contains("s2") ? 2 : 1
            let tape = Tape(recording: true, training: true)
            let x = tape.constant(o[prefix + "/x"]!), w = tape.constant(o[prefix + "/kernel"]!), b = tape.constant(o[prefix + "/bias"]!)
            let y = tape.conv2d(x, w, bias: b, stride: stride, padding: prefix.hasSuffix("valid") ? .valid : .same)
            assertClose(tape.value(y), o[prefix + "/y"], prefix + " forward")
            tape.backward(from: y, seed: o[prefix + "/r"]!)
            assertClose(tape.gradient(x), o[prefix + "/dx"], prefix + " dx")
            assertClose(tape.gradient(w), o[prefix + "/dkernel"], prefix + " dkernel")
            assertClose(tape.gradient(b), o[prefix + "/dbias"], prefix + " dbias")
        }
    }

    func testDepthwiseConvolutionsMatchKeras() {
        for (prefix, stride) in [("dw3s1", 1), ("dw5s2", 2)] {
            let o = Self.ops
            let kernel = o[prefix + "/depthwise_kernel"]!
            let tape = Tape(recording: true, training: true)
            let x = tape.constant(o[prefix + "/x"]!)
            let w = tape.constant(kernel.reshaped(Array(kernel.shape.prefix(3))))
            let y = tape.depthwiseConv2d(x, w, stride: stride)
            assertClose(tape.value(y), o[prefix + "/y"], prefix + " forward")
            tape.backward(from: y, seed: o[prefix + "/r"]!)
            assertClose(tape.gradient(x), o[prefix + "/dx"], prefix + " dx")
            assertClose(tape.gradient(w).map { $0.reshaped(kernel.shape) }, o[prefix + "/ddepthwise_kernel"], prefix + " dkernel")
        }
    }

    func testBatchNormTrainingMatchesKeras() {
        let o = Self.ops
        let store = ParameterStore(seed: 0)
        store.declareBatchNorm("bn", channels: 4)
        store.set("bn/gamma", o["bn/gamma"]!)
        store.set("bn/beta", o["bn/beta"]!)
        let tape = Tape(recording: true, training: true)
        let x = tape.constant(o["bn/x"]!)
        let y = tape.batchNorm(x, name: "bn", store: store)
        assertClose(tape.value(y), o["bn/y"], "bn forward")
        tape.backward(from: y, seed: o["bn/r"]!)
        assertClose(tape.gradient(x), o["bn/dx"], "bn dx")
        let grads = tape.parameterGradients()
        assertClose(grads["bn/gamma"], o["bn/dgamma"], "bn dgamma")
        assertClose(grads["bn/beta"], o["bn/dbeta"], "bn dbeta")
        assertClose(store.value("bn/moving_mean"), o["bn/moving_mean_after"], "moving mean after one step")
    }

    func testMBConvBlockMatchesKeras() {
        let o = Self.ops
        let store = ParameterStore(seed: 0)
        let tape = Tape(recording: true, training: true)
        let x = tape.constant(o["mbconv/x"]!)
        let y = EfficientNetB0.mbConv(Layers(tape: tape, store: store), x, name: "blk", inputFilters: 8, outputFilters: 8,
                                      expandRatio: 6, kernel: 3, stride: 1, dropRate: 0, keep: { _, _ in })
        // The block declared its parameters during that pass; load Keras' and run again.
        var weights: [String: Tensor] = [:]
        for (name, tensor) in o where name.hasPrefix("mbconv/blk_") { weights[String(name.dropFirst("mbconv/".count))] = tensor }
        XCTAssertNoThrow(try store.load(weights, source: "ops.safetensors"))
        let rerun = Tape(recording: true, training: true)
        let x2 = rerun.constant(o["mbconv/x"]!)
        let y2 = EfficientNetB0.mbConv(Layers(tape: rerun, store: store), x2, name: "blk", inputFilters: 8, outputFilters: 8,
                                       expandRatio: 6, kernel: 3, stride: 1, dropRate: 0, keep: { _, _ in })
        XCTAssertEqual(tape.shape(y), [2, 6, 6, 8])
        assertClose(rerun.value(y2), o["mbconv/y"], "MBConv forward", tolerance: 1e-4)
        rerun.backward(from: y2, seed: o["mbconv/r"]!)
        assertClose(rerun.gradient(x2), o["mbconv/dx"], "MBConv dx", tolerance: 1e-4)
        let grads = rerun.parameterGradients()
        for name in store.trainableNames {
            assertClose(grads[name], o["mbconv/d" + name], "MBConv d\(name)", tolerance: 1e-4)
        }
    }

    func testThreeSGDStepsOfTheClassifierReproduceKerasLosses() throws {
        let fixture = Self.load("classifier.safetensors")
        let store = Classifier.parameters(seed: 0)
        let x = fixture["__x"]!, y = fixture["__y"]!
        try store.load(fixture.filter { !$0.key.hasPrefix("__") }, source: "classifier.safetensors")
        var sgd = SGD(learningRate: 1e-3, momentum: 0.9, nesterov: true, decay: 1e-6)
        var losses: [Float] = []
        for _ in 0..<3 {
            let tape = Tape(recording: true, training: true)
            let logits = Classifier.forward(Layers(tape: tape, store: store, options: ModelOptions(dropConnect: 0)), tape.constant(x)).logits
            let logp = tape.log(tape.softmax(logits))
            let loss = tape.scale(tape.sum(tape.multiply(logp, tape.constant(y))), -1 / Float(x.shape[0]))
            losses.append(tape.value(loss).data[0])
            tape.backward(from: loss)
            sgd.step(store, gradients: tape.parameterGradients())
        }
        XCTAssertEqual(losses.count, fixture["__losses"]!.count, "Keras losses in the fixture")
        for (got, want) in zip(losses, fixture["__losses"]!.data) {
            XCTAssertEqual(got, want, accuracy: 1e-4 * want, "losses \(losses) vs Keras \(fixture["__losses"]!.data)")
        }
    }
}
