// The losses of SPEC §1.2 and §4: Keras' values on SPEC §11's anchor batch, hand-computed
// segmentation values, the class-weight reduction rules of §4.0, and gradients by finite differences.

import Foundation
import XCTest
@testable import Engine
@testable import Losses

final class ClassificationLossTests: XCTestCase {
    // SPEC §11: y = [[1,0,0],[0,1,0]], p = [[.7,.2,.1],[.3,.6,.1]].
    let y = Tensor(shape: [2, 3], data: [1, 0, 0, 0, 1, 0])
    let p = Tensor(shape: [2, 3], data: [0.7, 0.2, 0.1, 0.3, 0.6, 0.1])

    func value(_ build: (Tape, Var) -> Var) -> [Float] {
        let tape = Tape(recording: false, training: false)
        return tape.value(build(tape, tape.constant(p))).data
    }

    func testKerasValuesOfSPECAnchors() {
        func loss(_ l: ClassificationLoss) -> Float {
            value { tape, p in classificationLoss(l, tape: tape, probabilities: p, labels: y, classWeights: nil) }[0]
        }
        XCTAssertEqual(loss(.cce), 0.43375027, accuracy: 1e-6)
        XCTAssertEqual(loss(.kl), 0.4337474, accuracy: 1e-6)
        XCTAssertEqual(loss(.hinge), 0.6, accuracy: 1e-6)
        XCTAssertEqual(loss(.smoothedFocal), 0.3187335, accuracy: 1e-6)
        let smoothed = value { tape, p in
            let t = ClassificationLossTerms(tape: tape, probabilities: p, labels: y)
            return t.crossEntropy(targets: t.smoothed(0.2))
        }
        XCTAssertEqual(smoothed[0], 0.5699198, accuracy: 1e-6)
        XCTAssertEqual(smoothed[1], 0.676486, accuracy: 1e-6)
        let entropyLoss = value { tape, p in
            let t = ClassificationLossTerms(tape: tape, probabilities: p, labels: y)
            return tape.subtract(tape.mean(t.crossEntropy(targets: y)), tape.scale(t.meanEntropy(), 1e-3))
        }
        XCTAssertEqual(entropyLoss[0], 0.4329004, accuracy: 1e-6)
        // Both predictions right, mean confidence 0.65: the DCA gap is 0.35, so calibrated CCE = CCE + 10·0.35.
        XCTAssertEqual(loss(.calibratedCCE), 0.43375027 + 3.5, accuracy: 1e-5)
        // Focal with γ = 1, α = 1: mean of (1 − q)·(−log q) for the true classes.
        XCTAssertEqual(loss(.focal), Float((0.3 * -log(0.7) + 0.4 * -log(0.6)) / 2), accuracy: 1e-6)
    }

    func testClassWeightReductionsFollowKeras() {
        let weights: [Float] = [0.5, 2, 1]
        func loss(_ l: ClassificationLoss, _ w: [Float]?) -> Float {
            value { tape, p in classificationLoss(l, tape: tape, probabilities: p, labels: y, classWeights: w) }[0]
        }
        // Per-sample (CCE): Σ w_i ℓ_i / N = (0.5·(−ln .7) + 2·(−ln .6))/2.
        XCTAssertEqual(loss(.cce, weights), Float((0.5 * -log(0.7) + 2 * -log(0.6)) / 2), accuracy: 1e-6)
        // Scalar (focal): mean(w)·L = 1.25·L.
        XCTAssertEqual(loss(.focal, weights), 1.25 * loss(.focal, nil), accuracy: 1e-6)
        XCTAssertEqual(loss(.calibratedCCE, weights), 1.25 * loss(.calibratedCCE, nil), accuracy: 1e-5)
    }

    func testEveryLossGradientThroughSoftmax() {
        let logits = randomTensor([4, 3], seed: 50, range: 1.5)
        let labels = Tensor(shape: [4, 3], data: [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0])
        for loss in ClassificationLoss.allCases {
            let result = gradientCheck(inputs: [logits], step: 1e-3, atol: 2e-3) { tape, v in
                classificationLoss(loss, tape: tape, probabilities: tape.softmax(v[0]), labels: labels, classWeights: [0.7, 1.3, 1.2])
            }
            assertGradients(result, loss.rawValue)
        }
    }

    func testCalibrationTermIsDifferentiableUnlessCodeCompat() {
        // With the paper's DCA, calibrated CCE's gradient differs from plain CCE's; with the code's
        // stop-gradient it equals mean CCE's exactly (SPEC §4.1: max difference 0.0).
        let logits = randomTensor([4, 3], seed: 51)
        let labels = Tensor(shape: [4, 3], data: [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0])
        func gradient(_ loss: ClassificationLoss, _ settings: ClassificationLossSettings) -> [Float] {
            let tape = Tape(recording: true, training: false)
            let z = tape.constant(logits)
            tape.backward(from: classificationLoss(loss, tape: tape, probabilities: tape.softmax(z), labels: labels,
                                                   classWeights: nil, settings: settings))
            return tape.gradient(z)!.data
        }
        let plain = gradient(.cce, ClassificationLossSettings())
        let paper = gradient(.calibratedCCE, ClassificationLossSettings())
        let code = gradient(.calibratedCCE, .codeCompat)
        XCTAssertEqual(zip(plain, code).map { Swift.abs($0 - $1) }.max()!, 0, accuracy: 1e-7)
        XCTAssertGreaterThan(zip(plain, paper).map { Swift.abs($0 - $1) }.max()!, 1e-3)
    }

    func testNamesAreStableLowerCaseAndHyphenated() {
        XCTAssertEqual(ClassificationLoss.allCases.count, 12)
        for loss in ClassificationLoss.allCases {
            XCTAssertEqual(loss.rawValue, loss.rawValue.lowercased())
            XCTAssertFalse(loss.rawValue.contains("_") || loss.rawValue.contains(" "))
        }
        XCTAssertEqual(SegmentationLoss.allCases.map(\.rawValue), ["bce", "weighted-bce-dice", "focal", "tversky", "focal-tversky"])
    }
}

final class SegmentationLossTests: XCTestCase {
    // Two 2×2 "images": masks and logits by hand.
    let masks = Tensor(shape: [2, 2, 2, 1], data: [1, 1, 0, 0, 1, 0, 1, 0])
    let logits = Tensor(shape: [2, 2, 2, 1], data: [2, 0.5, -1, 0.3, 1.5, -2, 0.2, -0.4])

    /// The SPEC §1.2 formulas in Double, independently of the tape.
    func reference(_ loss: SegmentationLoss) -> Double {
        let z = logits.data.map(Double.init), y = masks.data.map(Double.init)
        let p = z.map { 1 / (1 + exp(-$0)) }
        let m = Double(z.count)
        let bce = zip(z, y).map { max($0, 0) - $0 * $1 + log(1 + exp(-abs($0))) }.reduce(0, +) / m
        let tp = zip(y, p).map { $0 * $1 }.reduce(0, +)
        let fn = zip(y, p).map { $0 * (1 - $1) }.reduce(0, +)
        let fp = zip(y, p).map { (1 - $0) * $1 }.reduce(0, +)
        let dice = (2 * tp + 1) / (y.reduce(0, +) + p.reduce(0, +) + 1)
        let ti = (tp + 1e-10) / (tp + 0.7 * fn + 0.3 * fp + 1e-10)
        switch loss {
        case .bce: return bce
        case .weightedBCEDice: return bce + 1 - dice
        case .tversky: return 1 - ti
        case .focalTversky: return pow(1 - ti, 0.75)
        case .focal:
            var positive = 0.0, negative = 0.0
            for (pi, yi) in zip(p, y) {
                let pt1 = yi == 1 ? pi : 1, pt0 = yi == 0 ? pi : 0
                positive += 0.25 * pow(1 - pt1, 2) * log(pt1 + 1e-7)
                negative += 0.75 * pow(pt0, 2) * log(1 - pt0 + 1e-7)
            }
            return -positive / m - negative / m
        }
    }

    func testValuesMatchTheFormulasAndGradientsMatchFiniteDifferences() {
        for loss in SegmentationLoss.allCases {
            let tape = Tape(recording: false, training: false)
            let z = tape.constant(logits)
            let value = tape.value(segmentationLoss(loss, tape: tape, probabilities: tape.sigmoid(z), logits: z, masks: masks)).data[0]
            XCTAssertEqual(Double(value), reference(loss), accuracy: 1e-6, loss.rawValue)
            let result = gradientCheck(inputs: [logits], step: 1e-3, atol: 1e-3) { tape, v in
                segmentationLoss(loss, tape: tape, probabilities: tape.sigmoid(v[0]), logits: v[0], masks: masks)
            }
            assertGradients(result, loss.rawValue)
        }
    }
}
