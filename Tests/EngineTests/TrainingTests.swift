// Optimisers and callbacks on hand-computed cases, checkpoints, determinism, and both networks
// learning on synthetic phantoms.

import Foundation
import XCTest
import SeededRandom
@testable import Engine
@testable import Models
import Datasets
import Synthetic
import TestSupport
import Training

final class TrainingTests: XCTestCase {
    func testKerasSGDWithNesterovAndDecayByHand() {
        let store = ParameterStore(seed: 0)
        store.declare("w", shape: [1], initializer: .ones)
        var sgd = SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, decay: 0.5)
        let g = ["w": Tensor(shape: [1], data: [2])]
        // Step 1: lr 0.1, v = −0.2, w = 1 + 0.9·(−0.2) − 0.1·2 = 0.62.
        sgd.step(store, gradients: g)
        XCTAssertEqual(store.value("w").data[0], 0.62, accuracy: 1e-6)
        // Step 2: lr = 0.1/1.5, v = 0.9·(−0.2) − 2/15, w = 0.62 + 0.9·v − 2/15.
        sgd.step(store, gradients: g)
        let v: Float = 0.9 * -0.2 - 2.0 / 15
        XCTAssertEqual(store.value("w").data[0], 0.62 + 0.9 * v - 2.0 / 15, accuracy: 1e-6)
    }

    func testKerasAdamByHand() {
        let store = ParameterStore(seed: 0)
        store.declare("w", shape: [1], initializer: .zeros)
        var adam = Adam(learningRate: 0.01)
        adam.step(store, gradients: ["w": Tensor(shape: [1], data: [0.5])])
        // t = 1: m = 0.05, v = 0.00025, lr_t = 0.01·√0.001/0.1, w = −lr_t·m/(√v + 1e-7) ≈ −0.01.
        let lrT = 0.01 * (0.001 as Double).squareRoot() / 0.1
        XCTAssertEqual(Double(store.value("w").data[0]), -lrT * 0.05 / ((0.00025 as Double).squareRoot() + 1e-7), accuracy: 1e-7)
    }

    /// A parameter large enough that its update is split across threads: every element follows
    /// the Keras formulas (in Double, two steps of each optimiser), and two threads give the bits of one.
    func testOptimizersUpdateEveryElementOfASplitParameter() {
        let count = 50_000
        var generator = SplitMix64(seed: 40)
        let start = (0..<count).map { _ in Float(generator.uniform(-1, 1)) }
        let gradients = (0..<2).map { _ in (0..<count).map { _ in Float(generator.uniform(-1, 1)) } }
        func train(_ optimizer: inout some Optimizer, threads: Int) -> [Float] {
            withEngineThreads(threads) {
                let store = ParameterStore(seed: 0)
                store.declare("w", shape: [count], initializer: .zeros)
                store.set("w", Tensor(shape: [count], data: start))
                for g in gradients { optimizer.step(store, gradients: ["w": Tensor(shape: [count], data: g)]) }
                return store.value("w").data
            }
        }
        var adam1 = Adam(learningRate: 0.01), adam2 = Adam(learningRate: 0.01)
        var sgd1 = SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, decay: 0.5), sgd2 = sgd1
        let adam = train(&adam1, threads: 1), sgd = train(&sgd1, threads: 1)
        XCTAssertTrue(adam.elementsEqual(train(&adam2, threads: 2)) { $0.bitPattern == $1.bitPattern }, "Adam on two threads")
        XCTAssertTrue(sgd.elementsEqual(train(&sgd2, threads: 2)) { $0.bitPattern == $1.bitPattern }, "SGD on two threads")
        var worst = (adam: 0.0, sgd: 0.0)
        for i in 0..<count {
            var (w, m, v) = (Double(start[i]), 0.0, 0.0)
            for (t, g) in gradients.map({ Double($0[i]) }).enumerated() {
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                let lrT = 0.01 * (1 - pow(0.999, Double(t + 1))).squareRoot() / (1 - pow(0.9, Double(t + 1)))
                w -= lrT * m / (v.squareRoot() + 1e-7)
            }
            worst.adam = max(worst.adam, abs(w - Double(adam[i])))
            var (s, velocity) = (Double(start[i]), 0.0)
            for (t, g) in gradients.map({ Double($0[i]) }).enumerated() {
                let lr = 0.1 / (1 + 0.5 * Double(t))
                velocity = 0.9 * velocity - lr * g
                s += 0.9 * velocity - lr * g
            }
            worst.sgd = max(worst.sgd, abs(s - Double(sgd[i])))
        }
        XCTAssertLessThan(worst.adam, 1e-5)
        XCTAssertLessThan(worst.sgd, 1e-5)
    }

    func testCallbacksFollowKeras() {
        var plateau = ReduceLROnPlateau(factor: 0.5, patience: 2, minDelta: 0.01)
        var lr: Float = 1
        for loss: Float in [1.0, 0.995, 0.99] { lr = plateau.update(current: loss, learningRate: lr) }
        XCTAssertEqual(lr, 0.5)  // two epochs without a 0.01 improvement
        var stop = EarlyStopping(patience: 3, minDelta: 0)
        XCTAssertEqual([1.0, 0.9, 0.95, 0.92, 0.91].map { stop.shouldStop(current: $0) }, [false, false, false, false, true])
        var best = BestCheckpoint()
        XCTAssertEqual([0.5, 0.6, 0.4, 0.4].enumerated().map { best.isBest(current: $0.element, epoch: $0.offset) }, [true, false, true, false])
        XCTAssertEqual(best.bestEpoch, 2)
    }

    func testCheckpointRoundTripAndMismatchNamesEveryProblem() throws {
        let store = ParameterStore(seed: 3)
        store.declare("a/kernel", shape: [2, 3], initializer: .glorotUniform)
        store.declareBatchNorm("bn", channels: 2)
        let bytes = try Safetensors.encode(store.allTensors, metadata: ["format": "multiloss-cxr/weights", "version": "1"])
        XCTAssertEqual(bytes, try Safetensors.encode(store.allTensors, metadata: ["format": "multiloss-cxr/weights", "version": "1"]))
        let (tensors, metadata) = try Safetensors.decode(bytes, source: "w.safetensors")
        XCTAssertEqual(metadata["format"], "multiloss-cxr/weights")
        let copy = ParameterStore(seed: 9)
        copy.declare("a/kernel", shape: [2, 3], initializer: .zeros)
        copy.declareBatchNorm("bn", channels: 2)
        try copy.load(tensors, source: "w.safetensors")
        XCTAssertEqual(copy.allTensors, store.allTensors)

        let other = ParameterStore(seed: 9)
        other.declare("a/kernel", shape: [3, 2], initializer: .zeros)
        other.declare("b/kernel", shape: [1], initializer: .zeros)
        XCTAssertThrowsError(try other.load(tensors, source: "w.safetensors")) { error in
            guard case let .mismatch(source, missing, unused, misshaped) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "w.safetensors")
            XCTAssertEqual(missing, ["b/kernel"])
            XCTAssertEqual(unused, ["bn/beta", "bn/gamma", "bn/moving_mean", "bn/moving_variance"])
            XCTAssertEqual(misshaped, ["a/kernel: file [2, 3], model [3, 2]"])
        }
        XCTAssertThrowsError(try Safetensors.decode(Array(bytes.prefix(40)), source: "cut.safetensors")) { error in
            XCTAssertTrue("\(error)".hasPrefix("cut.safetensors: not a readable safetensors checkpoint"), "\(error)")
        }
    }

    /// A few phantoms as a batch: images [N,S,S,3] (gray replicated, /255), masks, one-hot labels.
    func phantoms(_ count: Int, size: Int) -> (images: Tensor, masks: Tensor, labels: Tensor) {
        var images: [Float] = [], masks: [Float] = [], labels: [Float] = []
        for i in 0..<count {
            var g = SplitMix64(seed: 12, stream: UInt64(i))
            let label = CXRClass.allCases[i % 3]
            let p = SyntheticCXR.render(label: label, width: size, height: size, generator: &g)
            for v in p.image.pixels { images += [v / 255, v / 255, v / 255] }
            masks += p.lungs.bits.map { $0 ? 1 : 0 }
            labels += CXRClass.allCases.map { $0 == label ? 1 : 0 }
        }
        return (Tensor(shape: [count, size, size, 3], data: images), Tensor(shape: [count, size, size, 1], data: masks),
                Tensor(shape: [count, 3], data: labels))
    }

    /// Trains the classifier `steps` steps on a fixed batch and returns the losses and weights.
    func trainClassifier(seed: UInt64, steps: Int) -> (losses: [Float], weights: [String: Tensor]) {
        let batch = phantoms(6, size: 64)
        let store = ParameterStore(seed: seed)
        var sgd = SGD(learningRate: 1e-2, momentum: 0.9, nesterov: true, decay: 1e-6)
        var generator = SplitMix64(seed: seed, stream: 1)
        let losses = (0..<steps).map { _ in
            classifierTrainStep(store: store, optimizer: &sgd, images: batch.images, labels: batch.labels, generator: &generator).loss
        }
        return (losses, store.allTensors)
    }

    func testSameSeedGivesByteIdenticalWeightsAfterTraining() throws {
        try withEngineThreads(2) {
            let a = trainClassifier(seed: 21, steps: 3), b = trainClassifier(seed: 21, steps: 3)
            XCTAssertEqual(try Safetensors.encode(a.weights, metadata: [:]), try Safetensors.encode(b.weights, metadata: [:]))
            let c = trainClassifier(seed: 22, steps: 1)
            XCTAssertNotEqual(a.weights["predictions/kernel"], c.weights["predictions/kernel"])
        }
    }

    func testClassifierLossFallsOnSyntheticPhantoms() {
        let losses = trainClassifier(seed: 5, steps: 8).losses
        XCTAssertLessThan(losses.last!, 0.7 * losses.first!, "losses \(losses)")
    }

    func testUNetLossFallsOnSyntheticPhantoms() {
        let batch = phantoms(2, size: 64)
        let store = ParameterStore(seed: 6)
        var adam = Adam(learningRate: 1e-3)
        var generator = SplitMix64(seed: 1)
        let losses = (0..<6).map { _ in
            unetTrainStep(store: store, optimizer: &adam, images: batch.images, masks: batch.masks, generator: &generator).loss
        }
        XCTAssertLessThan(losses.last!, 0.8 * losses.first!, "losses \(losses)")
    }
}

final class ResumeTests: XCTestCase {
    /// Two steps, checkpoint, two more — against four uninterrupted steps: byte-identical.
    func testResumedTrainingEndsByteIdentical() throws {
        func steps(_ store: ParameterStore, _ sgd: inout SGD, _ g: inout SplitMix64, _ count: Int) {
            var data = SplitMix64(seed: 3)
            let images = Tensor(shape: [2, 32, 32, 3], data: (0..<(2 * 32 * 32 * 3)).map { _ in Float(data.unit()) })
            let labels = Tensor(shape: [2, 3], data: [1, 0, 0, 0, 0, 1])
            for _ in 0..<count { _ = classifierTrainStep(store: store, optimizer: &sgd, images: images, labels: labels, generator: &g) }
        }
        func fresh() -> ParameterStore { Classifier.parameters(seed: 4) }
        let straight = fresh()
        var sgdA = SGD(learningRate: 1e-2, momentum: 0.9, nesterov: true, decay: 1e-6)
        var gA = SplitMix64(seed: 8)
        steps(straight, &sgdA, &gA, 4)

        let first = fresh()
        var sgdB = SGD(learningRate: 1e-2, momentum: 0.9, nesterov: true, decay: 1e-6)
        var gB = SplitMix64(seed: 8)
        steps(first, &sgdB, &gB, 2)
        let state = TrainingState(epoch: 0, batchInEpoch: 2, learningRate: sgdB.learningRate, plateau: ReduceLROnPlateau(),
                                  earlyStopping: EarlyStopping(), best: BestCheckpoint(), generators: ["dropConnect": gB])
        let bytes = try TrainingCheckpoint.encode(store: first, optimizer: sgdB.state, state: state)

        let resumed = fresh()
        let (optimizer, restored, _) = try TrainingCheckpoint.decode(bytes, source: "ckpt.safetensors", into: resumed)
        XCTAssertEqual(restored, state)
        var sgdC = SGD(learningRate: restored.learningRate, momentum: 0.9, nesterov: true, decay: 1e-6)
        sgdC.state = optimizer
        var gC = restored.generators["dropConnect"]!
        steps(resumed, &sgdC, &gC, 2)
        XCTAssertEqual(try Safetensors.encode(resumed.allTensors, metadata: [:]), try Safetensors.encode(straight.allTensors, metadata: [:]))

        // Non-finite numbers in the state (best = +∞ before the first epoch) are spelt as in every JSON
        // output; a checkpoint of an earlier build, which spelt them "inf", still resumes.
        let (tensors, metadata) = try Safetensors.decode(bytes, source: "ckpt")
        let json = try XCTUnwrap(metadata["training_state"])
        XCTAssertTrue(json.contains("\"Infinity\"") && !json.contains("\"inf\""), json)
        var older = metadata
        older["training_state"] = json.replacingOccurrences(of: "\"Infinity\"", with: "\"inf\"")
        let olderBytes = try Safetensors.encode(tensors, metadata: older)
        XCTAssertEqual(try TrainingCheckpoint.decode(olderBytes, source: "old.safetensors", into: fresh()).state, state)

        let weightsOnly = try Safetensors.encode(first.allTensors, metadata: [:])
        XCTAssertThrowsError(try TrainingCheckpoint.decode(weightsOnly, source: "w.safetensors", into: fresh())) { error in
            XCTAssertTrue("\(error)".contains("not a training checkpoint"), "\(error)")
        }
    }
}
