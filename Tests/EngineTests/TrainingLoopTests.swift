// The epoch loop's resume: a run stopped after any of an epoch's writes (weights, log line, timing,
// checkpoint) and rerun ends with the same log and epoch count as an uninterrupted one, and
// log.jsonl holds no wall times (so it is byte-identical between runs).

import Artifacts
import Foundation
import SeededRandom
import TestSupport
import XCTest
@testable import Engine
@testable import Training

final class TrainingLoopTests: ScratchTestCase {
    struct Killed: Error {}

    /// Fits w toward 3 with plain SGD for four epochs in `folder`'s artifact; `kill` stops the run
    /// after that write of epoch 2. Returns the artifact's log.jsonl and manifest summary.
    func run(_ root: String, kill: String? = nil) throws -> (log: String, summary: JSONValue) {
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
        loop.afterWrite = { file, epoch in if file == kill && epoch == 2 { throw Killed() } }
        try loop.run(writer: &writer, sink: { _ in }, continueAfter: { _ in true }, trainEpoch: { _, sgd, _ throws(TrainingError) in
            let w = parameters.value("w").data[0]
            sgd.step(parameters, gradients: ["w": Tensor(shape: [1], data: [2 * (w - 3)])])
            return Double((w - 3) * (w - 3))
        }, validate: {
            let w = parameters.value("w").data[0]
            return Validation(loss: (w - 3) * (w - 3), accuracy: 0.5)
        })
        let best = try loop.finish(writer: &writer)
        let manifest = try writer.finish(summary: .object(loop.summary(best: best)))
        return (try String(contentsOfFile: artifact.folder + "/log.jsonl", encoding: .utf8), manifest.summary)
    }

    func testAStopAfterAnyWriteOfAnEpochResumesToTheSameLog() throws {
        let straight = try run(scratch + "/straight")
        XCTAssertEqual(straight.log.split(separator: "\n").count, 4)
        XCTAssertFalse(straight.log.contains("seconds"))
        XCTAssertEqual(straight.summary.objectValue?["epochsRun"], .number(4))
        guard case let .array(seconds)? = straight.summary.objectValue?["epochSeconds"] else { return XCTFail("no epochSeconds") }
        XCTAssertEqual(seconds.count, 4)
        XCTAssertEqual(try run(scratch + "/again").log, straight.log)
        for point in ["model", "log", "timing", "checkpoint"] {
            let root = scratch + "/killed-after-\(point)"
            XCTAssertThrowsError(try run(root, kill: point), point)
            let resumed = try run(root)
            XCTAssertEqual(resumed.log, straight.log, "killed after the \(point) write")
            XCTAssertEqual(resumed.summary.objectValue?["epochsRun"], .number(4), point)
            guard case let .array(times)? = resumed.summary.objectValue?["epochSeconds"] else { return XCTFail(point) }
            XCTAssertEqual(times.count, 4, point)
        }
    }
}
