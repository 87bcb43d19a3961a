// Grad-CAM against Keras' GradientTape (gradcam.safetensors, from make_gradcam_goldens.py), the
// classic-CAM identity of a GAP + dense head, the softmax-probability gradient against finite
// differences, the backward pass that stops at the layer, and the overlay's colour map and lung share.

import Foundation
import XCTest
@testable import Engine
@testable import GradCAM
import Imaging
@testable import Models
import SeededRandom

final class GradCAMTests: XCTestCase {
    /// The maximum of |a − b| over the maximum of |b| (maps are compared at their own scale).
    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-30)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    func testMapsMatchKerasGradientTape() throws {
        let golden = KerasGoldenTests.load("gradcam.safetensors")
        let fixture = KerasGoldenTests.load("classifier.safetensors")
        let store = Classifier.parameters(seed: 0)
        try store.load(fixture.filter { !$0.key.hasPrefix("__") }, source: "classifier.safetensors")
        let x = try XCTUnwrap(fixture["__x"]), y = try XCTUnwrap(fixture["__y"])
        let labels = (0..<4).map { i in (0..<3).first { y.data[i * 3 + $0] == 1 }! }
        for (method, predictedKey, truthKey) in [(CAMMethod.gradcam, "__gradcam", "__gradcam_truth"),
                                                 (.gradcamPaper, "__gradcam_paper", "__gradcam_paper_truth")] {
            for (target, key) in [(CAMTarget.predicted, predictedKey), (.truth, truthKey)] {
                let batch = classifierCAM(store, images: x, labels: labels, layer: Classifier.dcl, method: method, target: target)
                let want = try XCTUnwrap(golden[key])
                XCTAssertEqual(want.shape, [4, batch.h, batch.w], key)
                XCTAssertEqual(batch.maps.count, 4)
                for i in 0..<4 {
                    let slice = Array(want.data[(i * batch.h * batch.w)..<((i + 1) * batch.h * batch.w)])
                    XCTAssertGreaterThan(slice.max()!, 0, "\(key) image \(i): an all-zero golden would prove nothing")
                    XCTAssertLessThanOrEqual(relativeError(batch.maps[i], slice), 1e-4, "\(key) image \(i)")
                }
                if target == .predicted {
                    XCTAssertEqual(batch.targets.map(Float.init), golden["__gradcam_class"]?.data)
                } else {
                    XCTAssertEqual(batch.targets, labels)
                }
            }
        }
    }

    func testGradCAMOfAPoolingAndDenseHeadIsTheClassicCAM() {
        // For logits = W·GAP(A) + b, dlogit_t/dA[h,w,c] = W[c,t]/(h·w) everywhere, so Grad-CAM is
        // ReLU(Σ_c W[c,t]·A_c)/(h·w): the classic CAM up to a positive factor.
        var g = SplitMix64(seed: 3)
        let a = Tensor(shape: [2, 4, 4, 5], data: (0..<160).map { _ in Float(g.uniform(0, 1)) })
        let weights = Tensor(shape: [5, 3], data: (0..<15).map { _ in Float(g.uniform(-0.6, 1)) })
        let bias = Tensor(shape: [3], data: [0.1, -0.2, 0.3])
        let batch = camBatch(method: .gradcam, target: .index(2), labels: [0, 0]) { tape in
            let layer = tape.constant(a)
            return (tape.dense(tape.globalAveragePool(layer), tape.constant(weights), bias: tape.constant(bias)), layer)
        }
        for image in 0..<2 {
            for p in 0..<16 {
                var cam: Float = 0
                for c in 0..<5 { cam += weights.data[c * 3 + 2] * a.data[(image * 16 + p) * 5 + c] }
                XCTAssertEqual(batch.maps[image][p] * 16, max(cam, 0), accuracy: 1e-5)
            }
        }
        XCTAssertTrue(batch.maps.flatMap { $0 }.contains { $0 > 0 })
    }

    func testSoftmaxProbabilityGradientAgainstFiniteDifferences() throws {
        // The classifier's head (GAP, Dense 'predictions', softmax) on a real image's DCL maps: the
        // tape's gradient of the target probability against central differences in the maps.
        let store = Classifier.parameters(seed: 5)
        var g = SplitMix64(seed: 6)
        let x = Tensor(shape: [1, 32, 32, 3], data: (0..<(32 * 32 * 3)).map { _ in Float(g.unit()) })
        let probe = Tape(recording: false, training: false)
        let dcl = probe.value(Classifier.forward(Layers(tape: probe, store: store), probe.constant(x)).dcl)
        func probability(_ maps: Tensor) -> Double {
            let tape = Tape(recording: false, training: false)
            let logits = Layers(tape: tape, store: store).dense(tape.globalAveragePool(tape.constant(maps)), "predictions", units: 3,
                                                                initializer: .glorotUniform)
            return Double(tape.value(tape.softmax(logits)).data[1])
        }
        let tape = Tape(recording: true, training: false)
        let layer = tape.constant(dcl)
        let p = tape.softmax(Layers(tape: tape, store: store).dense(tape.globalAveragePool(layer), "predictions", units: 3,
                                                                    initializer: .glorotUniform))
        tape.backward(from: p, seed: Tensor(shape: [1, 3], data: [0, 1, 0]), stoppingAt: layer)
        let gradient = try XCTUnwrap(tape.gradient(layer))
        var checked = 0
        for j in stride(from: 0, to: dcl.count, by: 97) {
            var plus = dcl, minus = dcl
            plus.data[j] += 0.05
            minus.data[j] -= 0.05
            let numeric = (probability(plus) - probability(minus)) / 0.1
            XCTAssertEqual(Double(gradient.data[j]), numeric, accuracy: 2e-5 + 1e-3 * abs(numeric), "element \(j)")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 10)
        XCTAssertGreaterThan(gradient.data.map(abs).max()!, 1e-4)
    }

    func testBackwardStopsAtTheLayer() {
        let store = Classifier.parameters(seed: 2)
        let tape = Tape(recording: true, training: false)
        let out = Classifier.forward(Layers(tape: tape, store: store), tape.constant(Tensor(shape: [1, 32, 32, 3], repeating: 0.5)))
        tape.backward(from: out.logits, seed: Tensor(shape: [1, 3], data: [1, 0, 0]), stoppingAt: out.dcl)
        let gradients = tape.parameterGradients()
        XCTAssertNotNil(tape.gradient(out.dcl))
        XCTAssertNotNil(gradients["predictions/kernel"])
        XCTAssertNil(gradients["extra_conv_eff0/kernel"], "the layer's own op must not run")
        XCTAssertNil(gradients["stem_conv/kernel"], "nothing before the layer runs")
    }

    func testOverlayColoursAndLungShare() {
        XCTAssertTrue(hotColor(0) == (0, 0, 0))
        XCTAssertTrue(hotColor(1) == (1, 1, 1))
        XCTAssertTrue(hotColor(0.375) == (1, 0, 0))
        XCTAssertTrue(hotColor(0.75) == (1, 1, 0))
        // A 2×2 map with all its mass in the top row, lungs the top half of a 4×4 image.
        let lungs = Mask(width: 4, height: 4, bits: (0..<16).map { $0 < 8 })
        XCTAssertEqual(try XCTUnwrap(lungShare(map: [1, 1, 0, 0], h: 2, w: 2, lungs: lungs)), 1, accuracy: 0.2)
        XCTAssertEqual(try XCTUnwrap(lungShare(map: [1, 1, 1, 1], h: 2, w: 2, lungs: lungs)), 0.5, accuracy: 1e-6)
        XCTAssertNil(lungShare(map: [0, 0, 0, 0], h: 2, w: 2, lungs: lungs))
        // Overlay: zero heat leaves the image; full heat at one pixel adds 0.4·white, saturated.
        let image = GrayImage(width: 2, height: 1, pixels: [100, 250])
        let overlay = camOverlay(image, map: [0, 1], h: 1, w: 2)
        XCTAssertEqual(Array(overlay.pixels[0..<3]), [100, 100, 100])
        XCTAssertEqual(Array(overlay.pixels[3..<6]), [255, 255, 255])
    }
}
