// regress.json: what one run of the study produced, stage run by stage run — its artifact key, a
// hash of every output, and the headline numbers a reader would check — recorded from the
// manifests of every artifact upstream of a report, so nothing is found by guessing.

import Artifacts
import Foundation
import Metrics
import Pipeline

/// The build a record was made with. Two records are compared byte for byte only when these agree:
/// another BLAS library, another kernel set, another convolution algorithm or thread count rounds
/// differently.
public struct RegressionBuild: Codable, Sendable, Equatable, CustomStringConvertible {
    public var blas: String
    /// The kernels the BLAS picked for this CPU (BLIS architecture, OpenBLAS core).
    public var blasKernel: String
    public var convolution: String
    public var threads: Int

    public init(blas: String, blasKernel: String, convolution: String, threads: Int) {
        self.blas = blas
        self.blasKernel = blasKernel
        self.convolution = convolution
        self.threads = threads
    }

    public var description: String { "\(blas) (\(blasKernel) kernels), \(convolution) convolution, \(threads) threads" }
}

/// One stage run of the study.
public struct RegressionRun: Codable, Sendable, Equatable {
    /// "stage/variant": the same in every run of the same study.
    public var id: String
    public var key: String
    /// The ids of the runs it read.
    public var inputs: [String]
    /// SHA-256 per output file; files under a sub-folder are folded into one digest per folder
    /// ("masks/", with the file count), so a record stays readable.
    public var outputs: [String: String]
    /// Outputs that hold wall times or the source commit (the report's text): listed, never compared.
    public var volatile: [String]
    /// Headline numbers, by dotted path ending in the field ("top3-average.mcc", "bce.dice", …).
    public var numbers: [String: Double]
}

/// regress.json.
public struct RegressionRecord: Codable, Sendable {
    public var formatVersion: Int
    public var build: RegressionBuild
    /// Runs in pipeline order.
    public var runs: [RegressionRun]

    public static let currentFormat = 1
}

/// Outputs whose bytes depend on when and from which commit a run was made.
let volatileOutputs: [String: Set<String>] = ["report": ["report.md", "report.html"]]

/// The record of every artifact `report` (a report artifact folder) was made from.
///
/// - Throws: `ArtifactError` when `report` is not a complete report artifact, or a metrics file an
///   input names is unreadable.
public func recordRegression(report: String, store: ArtifactStore, build: RegressionBuild) throws -> RegressionRecord {
    guard let manifest = store.completeManifest(at: report), manifest.stage == "report" else {
        throw ArtifactError.incomplete(path: report, message: "not a complete report artifact (run `make reproduce` or `report` first)")
    }
    let graph = lineage(of: [report], store: store)
    // An input is named by its artifact's key, or (a prediction file, keyed by its content) by a
    // path inside the artifact's folder.
    var idOfKey: [String: String] = [:], idOfFolder: [String: String] = [:]
    for (folder, m) in graph {
        idOfKey[m.key] = "\(m.stage)/\(m.variant)"
        idOfFolder[folder] = "\(m.stage)/\(m.variant)"
    }
    var runs: [RegressionRun] = []
    for (folder, m) in graph {
        let volatile = volatileOutputs[m.stage] ?? []
        var outputs: [String: String] = [:]
        var grouped: [String: [OutputFile]] = [:]
        for file in m.outputs where !volatile.contains(file.path) {
            if let slash = file.path.firstIndex(of: "/") {
                grouped[String(file.path[...slash]), default: []].append(file)
            } else {
                outputs[file.path] = file.sha256
            }
        }
        for (group, files) in grouped {
            var hasher = SHA256()
            for file in files.sorted(by: { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }) {
                hasher.update(Array("\(file.path)\t\(file.sha256)\n".utf8))
            }
            outputs["\(group) (\(files.count) files)"] = hasher.hexDigest()
        }
        var seen = Set<String>()
        let inputs = m.inputs.compactMap { input in
            idOfKey[input.key] ?? idOfFolder[input.path] ?? idOfFolder[(input.path as NSString).deletingLastPathComponent]
        }.filter { seen.insert($0).inserted }
        runs.append(RegressionRun(id: "\(m.stage)/\(m.variant)", key: m.key, inputs: inputs, outputs: outputs,
                                  volatile: m.outputs.map(\.path).filter { volatile.contains($0) }.sorted(),
                                  numbers: try headlineNumbers(m, folder: folder)))
    }
    return RegressionRecord(formatVersion: RegressionRecord.currentFormat, build: build, runs: runs)
}

/// Summary fields worth a reader's attention, by their last name (timings and paths are left out).
let headlineFields: Set<String> = [
    "images", "masks", "train", "val", "test", "bacterial", "normal", "viral",
    "bestEpoch", "epochsRun", "bestValDice", "bestValIoU", "bestValAccuracy", "bestValLoss",
    "truthInsideBox", "emptyMasks", "weights", "lungShareMean", "lungShareCorrect", "lungShareWrong",
    "accuracy", "mcc", "aurocMicro", "claimsHeld", "artifacts",
]

/// The headline numbers of one artifact: its summary's fields named in `headlineFields`, flattened,
/// and for a segmentation evaluation the Dice and IoU of every model and of the AND.
func headlineNumbers(_ manifest: Manifest, folder: String) throws -> [String: Double] {
    var numbers: [String: Double] = [:]
    func walk(_ value: JSONValue, path: [String], kept: Bool) {
        switch value {
        case let .number(x) where kept: numbers[path.joined(separator: ".")] = x
        case let .object(fields):
            for (name, field) in fields { walk(field, path: path + [name], kept: kept || headlineFields.contains(name)) }
        case let .array(items):
            for (index, item) in items.enumerated() { walk(item, path: path + ["\(index)"], kept: kept) }
        default: break
        }
    }
    walk(manifest.summary, path: [], kept: false)
    // Counts under "counts.train.normal" are kept through their parents' names; timings never are.
    numbers = numbers.filter { !$0.key.lowercased().contains("second") }
    if manifest.stage == "segment-evaluate" {
        let file = try decodeJSON(SegmentationEvaluation.self, from: try readFile(folder + "/metrics.json"))
        for row in file.models + (file.ensemble.map { [$0] } ?? []) {
            let name = row.models.count > 1 ? "and" : row.name
            numbers["\(name).dice"] = row.dice.mean
            numbers["\(name).iou"] = row.iou.mean
        }
    }
    return numbers
}
