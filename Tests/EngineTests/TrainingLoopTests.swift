// The epoch loop's resume: a run stopped after any of an epoch's writes (weights, log line, timing,
// checkpoint), or inside an epoch at a step, and rerun ends with the same log, weights and epoch
// count as an uninterrupted one, and log.jsonl holds no wall times (so it is byte-identical between runs).

import Artifacts
import Foundation
import SeededRandom
import TestSupport
import XCTest
@testable import Engine
@testable import Training

final class TrainingLoopTests: ScratchTestCase {
    struct Killed: Error {}

    /// Fits w toward 3 with noisy SGD (three steps an epoch, the noise drawn from the run's generator)
    /// for four epochs in `folder`'s artifact; `kill` stops the run after that write of epoch
    /// `killEpoch`, `stopAt` at that position. Returns the artifact's log.jsonl, manifest summary and weights.
    func run(_ root: String, kill: String? = nil, killEpoch: Int = 2, stopAt: TrainingPosition? = nil) throws
        -> (log: String, summary: JSONValue, weights: Data?)
    {
        let store = ArtifactStore(root: root, environment: RunEnvironment(threads: 1, blasProvider: "test", convolution: "test"))
        let artifact = try store.locate(stage: "toy", variant: "v", settings: ["toy": 1], inputKeys: [], formatVersion: 1, force: false)
        let resuming = FileManager.default.fileExists(atPath: artifact.folder + "/training.safetensors")
        var writer = try artifact.begin(inputs: [], seed: 1, resume: resuming)
        let parameters = ParameterStore(seed: 1)
        parameters.declare("w", shape: [1], initializer: .zeros)
        let callbacks = CallbackSettings(plateauFactor: 0.5, plateauPatience: 10, earlyStoppingPatience: 10, minDelta: 0, minLearningRate: 0)
        var loop = try TrainingLoop(folder: artifact.folder, parameters: parameters, optimizer: SGD(learningRate: 0.1), epochs: 4,
                                    callbacks: callbacks, generators: ["g": SplitMix64(seed: 2)], label: "toy",
                                    weightsMetadata: [:], resuming: resuming, sink: { _ in })
        var writes: [String] = []
        loop.afterWrite = { file, epoch in
            writes.append("\(file)\(epoch)")
            if file == kill && epoch == killEpoch { throw Killed() }
        }
        try loop.run(writer: &writer, sink: { _ in }, continueAfter: { $0 != stopAt }, epoch: { _, generators in
            let scale = Float(generators["g", default: SplitMix64(seed: 2)].unit())  // one draw per epoch: the "batch order"
            return EpochSteps(count: 3) { _, sgd, generators throws(TrainingError) in
                let w = parameters.value("w").data[0]
                let noise = Float(generators["g", default: SplitMix64(seed: 2)].unit()) - 0.5
                sgd.step(parameters, gradients: ["w": Tensor(shape: [1], data: [2 * (w - 3) * scale + noise])])
                return Double((w - 3) * (w - 3))
            }
        }, validate: {
            let w = parameters.value("w").data[0]
            return Validation(loss: (w - 3) * (w - 3), accuracy: 0.5)
        })
        // Each epoch this process ran wrote its log line, and its checkpoint unless it was the last
        // (which `finish` follows).
        XCTAssertEqual(writes.filter { $0.hasPrefix("checkpoint") }, writes.filter { $0.hasPrefix("log") && $0 != "log4" }.map { "checkpoint" + $0.dropFirst(3) })
        let best = try loop.finish(writer: &writer)
        let manifest = try writer.finish(summary: .object(loop.summary(best: best)))
        return (try String(contentsOfFile: artifact.folder + "/log.jsonl", encoding: .utf8), manifest.summary,
                FileManager.default.contents(atPath: artifact.folder + "/model.safetensors"))
    }

    func testAStopAfterAnyWriteOfAnEpochResumesToTheSameLog() throws {
        let straight = try run(scratch + "/straight")
        XCTAssertEqual(straight.log.split(separator: "\n").count, 4)
        XCTAssertFalse(straight.log.contains("seconds"))
        XCTAssertEqual(straight.summary.objectValue?["epochsRun"], .number(4))
        guard case let .array(seconds)? = straight.summary.objectValue?["epochSeconds"] else { return XCTFail("no epochSeconds") }
        XCTAssertEqual(seconds.count, 4)
        XCTAssertEqual(try run(scratch + "/again").log, straight.log)
        // Killed after any write of epoch 2, or of the last epoch (4), which writes no checkpoint.
        for (point, epoch) in [("model", 2), ("log", 2), ("timing", 2), ("checkpoint", 2), ("model", 4), ("log", 4), ("timing", 4)] {
            let root = scratch + "/killed-after-\(point)-\(epoch)"
            XCTAssertThrowsError(try run(root, kill: point, killEpoch: epoch), point)
            let resumed = try run(root)
            XCTAssertEqual(resumed.log, straight.log, "killed after the \(point) write")
            XCTAssertEqual(resumed.summary.objectValue?["epochsRun"], .number(4), point)
            guard case let .array(times)? = resumed.summary.objectValue?["epochSeconds"] else { return XCTFail(point) }
            XCTAssertEqual(times.count, 4, point)
            // The epochs' parts (steps, validation) survive the resume too, each within its epoch.
            guard case let .array(steps)? = resumed.summary.objectValue?["epochStepSeconds"],
                  case let .array(validation)? = resumed.summary.objectValue?["epochValidationSeconds"] else { return XCTFail(point) }
            XCTAssertEqual(steps.count, 4, point)
            XCTAssertEqual(validation.count, 4, point)
            for ((epoch, step), check) in zip(zip(times, steps), validation) {
                guard case let .number(e) = epoch, case let .number(s) = step, case let .number(v) = check else { return XCTFail(point) }
                XCTAssertLessThanOrEqual(s + v, e + 0.002, point)
            }
        }
    }

    func testAStopInsideAnEpochResumesAtThatStep() throws {
        let straight = try run(scratch + "/straight")
        let root = scratch + "/stopped"
        for (epoch, step) in [(1, 1), (1, 2), (3, 1)] {
            XCTAssertThrowsError(try run(root, stopAt: TrainingPosition(epoch: epoch, step: step))) { error in
                guard case .interrupted(epoch, step, _) = error as? TrainingError else { return XCTFail("\(error)") }
            }
            let checkpoint = try TrainingCheckpoint.decode(try readFile(root + "/toy/v/" + (try self.key()) + "/training.safetensors"),
                                                           source: "checkpoint", into: ParameterStore(seed: 1, declaring: "w"))
            XCTAssertEqual(checkpoint.state.epoch, epoch)
            XCTAssertEqual(checkpoint.state.batchInEpoch, step)
        }
        let resumed = try run(root)
        XCTAssertEqual(resumed.log, straight.log)
        XCTAssertNotNil(straight.weights)
        XCTAssertEqual(resumed.weights, straight.weights)
        XCTAssertEqual(resumed.summary.objectValue?["epochsRun"], .number(4))
    }

    private func key() throws -> String {
        try ArtifactStore.key(stage: "toy", config: ["toy": 1], inputKeys: [], formatVersion: 1)
    }
}

private extension ParameterStore {
    convenience init(seed: UInt64, declaring name: String) {
        self.init(seed: seed)
        declare(name, shape: [1], initializer: .zeros)
    }
}
