// `prepare` as a user runs it: --help, exit codes, the artifact folder as the last stdout line,
// and a rerun that reuses it.

import Artifacts
import Foundation
import Imaging
import TestSupport
import XCTest

/// Runs a built stage executable (found beside the test bundle).
func runStage(_ name: String, _ arguments: [String], in folder: String, environment: [String: String] = [:]) throws -> ExecutableResult {
    try runExecutable(name, arguments, in: folder, bundleOf: PrepareCommandTests.self, environment: environment)
}

final class PrepareCommandTests: ScratchTestCase {
    static let config = Repository.config

    func prepare(_ extra: [String]) throws -> ExecutableResult {
        try runStage("prepare", ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "--progress", "none"] + extra,
                     in: scratch)
    }

    func testHelpExplainsLayouts() throws {
        let result = try runStage("prepare", ["--help"], in: scratch)
        XCTAssertEqual(result.status, 0)
        for layout in ["kermany", "montgomery", "shenzhen", "pairs", "synthetic", "--validation"] {
            XCTAssertTrue(result.stdout.contains(layout), layout)
        }
    }

    func testLastStdoutLineIsTheArtifactAndARerunReusesIt() throws {
        let first = try prepare(["--layout", "synthetic", "--source", "syn", "--name", "s"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let folder = try XCTUnwrap(first.stdout.split(separator: "\n").last.map(String.init))
        XCTAssertTrue(folder.hasPrefix("art/prepare/s/"), folder)
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch + "/" + folder + "/manifest.json"))
        let second = try prepare(["--layout", "synthetic", "--source", "syn", "--name", "s", "--progress", "text"])
        XCTAssertEqual(second.stdout.split(separator: "\n").last.map(String.init), folder)
        XCTAssertTrue(second.stderr.contains("reusing the complete artifact"), second.stderr)
    }

    func testExitCodesNameTheProblem() throws {
        let missing = try prepare(["--layout", "kermany", "--source", "nowhere", "--name", "k"])
        XCTAssertEqual(missing.status, 66)
        XCTAssertTrue(missing.stderr.contains("nowhere: missing folder"), missing.stderr)
        XCTAssertEqual(missing.stdout, "")

        try writeFileAtomically(Array("not a jpeg".utf8), to: scratch + "/bad/train/NORMAL/IM-0001-0001.jpeg")
        try writeFileAtomically(try GrayImage(width: 4, height: 4, filledWith: 9).jpegData(),
                                to: scratch + "/bad/train/PNEUMONIA/person1_virus_1.jpeg")
        let corrupt = try prepare(["--layout", "kermany", "--source", "bad", "--name", "k"])
        XCTAssertEqual(corrupt.status, 65)
        XCTAssertTrue(corrupt.stderr.contains("IM-0001-0001.jpeg: corrupt or unreadable image"), corrupt.stderr)

        let usage = try prepare(["--layout", "dicom", "--source", "bad", "--name", "k"])
        XCTAssertEqual(usage.status, 64)
        XCTAssertTrue(usage.stderr.contains("dicom"), usage.stderr)

        let profile = try runStage("prepare", ["--config", Self.config, "--profile", "huge", "--layout", "kermany",
                                               "--source", "bad", "--name", "k"], in: scratch)
        XCTAssertEqual(profile.status, 78)
        XCTAssertTrue(profile.stderr.contains("no profile 'huge'"), profile.stderr)

        // --artifacts naming a file: an I/O error that says so, not a Foundation error number.
        try writeFileAtomically(Array("x".utf8), to: scratch + "/afile")
        let file = try runStage("prepare", ["--config", Self.config, "--profile", "ci", "--artifacts", "afile", "--layout", "synthetic",
                                            "--source", "syn", "--name", "s", "--progress", "none"], in: scratch)
        XCTAssertEqual(file.status, 74)
        XCTAssertTrue(file.stderr.contains("afile is a file, not a folder") && !file.stderr.contains("NSCocoaErrorDomain"), file.stderr)
    }

    func testEvaluateRejectsAMalformedFileNamingRowAndColumn() throws {
        try writeFileAtomically(Array("image,label,p_bacterial,p_normal,p_viral\na,normal,0.2,0.3,0.5\nb,normal,0.2,0.9,0.5\n".utf8),
                                to: scratch + "/p.csv")
        let result = try runStage("evaluate", ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "p.csv"], in: scratch)
        XCTAssertEqual(result.status, 65)
        XCTAssertTrue(result.stderr.contains("p.csv: row 3, column 'p_bacterial..p_viral': probabilities sum to 1.6"), result.stderr)
        let missing = try runStage("evaluate", ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "none.csv"], in: scratch)
        XCTAssertEqual(missing.status, 66)
    }

    func testSegmentAndMaskCropExplainThemselvesAndNameWhatIsMissing() throws {
        let help = try runStage("segment", ["train", "--help"], in: scratch)
        XCTAssertEqual(help.status, 0)
        for loss in ["bce", "weighted-bce-dice", "focal", "tversky", "focal-tversky"] { XCTAssertTrue(help.stdout.contains(loss), loss) }
        let common = ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "--progress", "none"]
        let unknownLoss = try runStage("segment", ["train"] + common + ["--loss", "dice", "--data", "x"], in: scratch)
        XCTAssertEqual(unknownLoss.status, 64)
        XCTAssertTrue(unknownLoss.stderr.contains("dice"), unknownLoss.stderr)
        let noData = try runStage("segment", ["train"] + common + ["--loss", "bce", "--data", "lungs"], in: scratch)
        XCTAssertEqual(noData.status, 66)
        XCTAssertTrue(noData.stderr.contains("named 'lungs'"), noData.stderr)
        let noModel = try runStage("segment", ["evaluate"] + common + ["--model", "art/nothing", "--data", "lungs"], in: scratch)
        XCTAssertEqual(noModel.status, 66)
        let noMasks = try runStage("mask-crop", common + ["--data", "cxr"], in: scratch)
        XCTAssertEqual(noMasks.status, 66)
        XCTAssertTrue(noMasks.stderr.contains("named 'cxr'"), noMasks.stderr)
        XCTAssertEqual(try prepare(["--layout", "synthetic", "--source", "syn", "--name", "s"]).status, 0)
        let noEncoder = try runStage("classify-train", common + ["--loss", "cce", "--data", "s"], in: scratch)
        XCTAssertEqual(noEncoder.status, 66)
        XCTAssertTrue(noEncoder.stderr.contains("segment train --loss focal-tversky --data lungs"), noEncoder.stderr)
        let noWeights = try runStage("classify-train", common + ["--loss", "cce", "--data", "s", "--encoder-weights", "absent.safetensors"], in: scratch)
        XCTAssertEqual(noWeights.status, 66)
        XCTAssertTrue(noWeights.stderr.contains("absent.safetensors: no such file"), noWeights.stderr)
        let both = try runStage("classify-train", common + ["--loss", "cce", "--data", "s", "--encoder", "random", "--encoder-weights", "x"], in: scratch)
        XCTAssertEqual(both.status, 64)
        XCTAssertTrue(both.stderr.contains("alternatives"), both.stderr)
        let segmentNoWeights = try runStage("segment", ["train"] + common + ["--loss", "bce", "--data", "s", "--encoder-weights", "absent.safetensors"], in: scratch)
        XCTAssertEqual(segmentNoWeights.status, 66)
        XCTAssertTrue(segmentNoWeights.stderr.contains("absent.safetensors"), segmentNoWeights.stderr)
    }

    func testEnsembleExplainsItselfAndNamesWhatIsMissing() throws {
        let help = try runStage("ensemble", ["fit", "--help"], in: scratch)
        XCTAssertEqual(help.status, 0)
        for word in ["vote", "average", "weighted", "stacking", "--top", "--members", "--rank-on"] {
            XCTAssertTrue(help.stdout.contains(word), word)
        }
        let common = ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "--progress", "none"]
        let both = try runStage("ensemble", common + ["--method", "vote", "--data", "x", "--top", "3", "--members", "cce", "kl"], in: scratch)
        XCTAssertEqual(both.status, 64)
        XCTAssertTrue(both.stderr.contains("--top K or --members"), both.stderr)
        let unknown = try runStage("ensemble", common + ["--method", "boosting", "--data", "x", "--top", "3"], in: scratch)
        XCTAssertEqual(unknown.status, 64)
        let none = try runStage("ensemble", common + ["--method", "vote", "--data", "x", "--members", "cce", "kl"], in: scratch)
        XCTAssertEqual(none.status, 66)
        XCTAssertTrue(none.stderr.contains("member 'cce'") && none.stderr.contains("classify-train --loss cce --data x"), none.stderr)
        let notAnEnsemble = try runStage("ensemble", ["predict"] + common + ["--model", "art/nothing", "--data", "x"], in: scratch)
        XCTAssertEqual(notAnEnsemble.status, 66)
    }

    func testSlurmCPUsPerTaskIsTheThreadCountUnlessGiven() throws {
        let arguments = ["--config", Self.config, "--profile", "ci", "--artifacts", "art", "--progress", "none",
                         "--layout", "synthetic", "--source", "syn", "--name", "s"]
        func threads(_ extra: [String], _ environment: [String: String]) throws -> Int {
            let result = try runStage("prepare", arguments + extra + ["--force"], in: scratch, environment: environment)
            XCTAssertEqual(result.status, 0, result.stderr)
            let folder = try XCTUnwrap(result.stdout.split(separator: "\n").last.map(String.init))
            let manifest = try decodeJSON(Manifest.self, from: try readFile(scratch + "/" + folder + "/manifest.json"))
            return manifest.threads
        }
        XCTAssertEqual(try threads([], ["SLURM_CPUS_PER_TASK": "3"]), 3)
        XCTAssertEqual(try threads(["--threads", "1"], ["SLURM_CPUS_PER_TASK": "3"]), 1)
        let bad = try runStage("prepare", arguments, in: scratch, environment: ["SLURM_CPUS_PER_TASK": "many"])
        XCTAssertEqual(bad.status, 78)
        XCTAssertTrue(bad.stderr.contains("SLURM_CPUS_PER_TASK") && bad.stderr.contains("'many'"), bad.stderr)
    }

    func testCtrlCStopsTrainingAtAStepWithExit70AndTheRerunResumes() throws {
        // A configuration whose ci profile trains long enough to be interrupted.
        let text = try String(contentsOfFile: Self.config, encoding: .utf8)
        var tree = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var profiles = try XCTUnwrap(tree["profiles"] as? [String: Any])
        var ci = try XCTUnwrap(profiles["ci"] as? [String: Any])
        var segment = try XCTUnwrap(ci["segment"] as? [String: Any])
        segment["epochs"] = 200
        ci["segment"] = segment
        profiles["ci"] = ci
        tree["profiles"] = profiles
        try writeFileAtomically(Array(try JSONSerialization.data(withJSONObject: tree)), to: scratch + "/long.json")
        let common = ["--config", "long.json", "--profile", "ci", "--artifacts", "art", "--progress", "text"]
        XCTAssertEqual(try runStage("prepare", common + ["--layout", "synthetic", "--source", "syn", "--name", "s"], in: scratch).status, 0)
        XCTAssertEqual(try runStage("prepare", common + ["--layout", "montgomery", "--source", "syn/montgomery", "--name", "lungs",
                                                         "--test-fraction", "0.25"], in: scratch).status, 0)

        // Interrupt during epoch 2 (epoch 1's checkpoint written): exit 70, and the rerun resumes.
        let first = try interrupt(["train"] + common + ["--loss", "bce", "--data", "lungs"], after: "epoch 2/")
        XCTAssertEqual(first.status, 70, first.text)
        XCTAssertTrue(first.text.contains("interrupted (signal 2)") && first.text.contains("rerun to resume"), first.text)
        // It stops at the step the signal arrived in (its checkpoint written there), or at the epoch's end.
        let atStep = first.text.range(of: #"stopped at epoch 2, step (\d+);"#, options: .regularExpression).map { String(first.text[$0]) }
        XCTAssertTrue(atStep != nil || first.text.contains("stopped after epoch 2;"), first.text)
        let second = try interrupt(["train"] + common + ["--loss", "bce", "--data", "lungs"], after: "resuming from")
        XCTAssertEqual(second.status, 70, second.text)
        if let atStep, let step = atStep.split(separator: " ").last?.dropLast() {
            XCTAssertTrue(second.text.contains("training.safetensors at epoch 2, step \(step)"), second.text)
        } else {
            XCTAssertTrue(second.text.contains("training.safetensors after epoch 2"), second.text)
        }
    }

    /// Runs `segment` with `arguments`, sends SIGINT once `marker` appears on standard error, and
    /// returns the exit status and everything it wrote there.
    func interrupt(_ arguments: [String], after marker: String) throws -> (status: Int32, text: String) {
        let bundle = Bundle(for: PrepareCommandTests.self).bundleURL
        let process = Process()
        process.executableURL = (bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle).appendingPathComponent("segment")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: scratch)
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        let collected = TextBox()
        err.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while !collected.text.contains(marker) && Date() < deadline && process.isRunning { usleep(20_000) }
        process.interrupt()
        process.waitUntilExit()
        err.fileHandleForReading.readabilityHandler = nil
        collected.append(err.fileHandleForReading.readDataToEndOfFile())
        return (process.terminationStatus, collected.text)
    }
}

/// Text gathered from a pipe's readability handler (another thread).
final class TextBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ more: Data) { lock.withLock { data.append(more) } }
    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
}
