// The regression record and its comparison: what is recorded from a store (keys, grouped output
// hashes, headline numbers, the report's text left out), how differences are traced to the first
// stage run that diverged, when bytes are compared, and the subset's patient-disjoint draw.

import Artifacts
import Foundation
import Metrics
@testable import Regression
import TestSupport
import XCTest

final class RegressionCompareTests: XCTestCase {
    private let build = RegressionBuild(blas: "blis", blasKernel: "haswell", convolution: "winograd", threads: 2)

    /// prepare → two U-Nets → evaluate → report, and a classifier reading only prepare.
    private func record(_ edit: (inout [String: RegressionRun]) -> Void = { _ in }, build: RegressionBuild? = nil) -> RegressionRecord {
        func run(_ id: String, _ inputs: [String], numbers: [String: Double] = [:]) -> RegressionRun {
            RegressionRun(id: id, key: "key-" + id, inputs: inputs, outputs: ["out.bin": "hash-" + id], volatile: [], numbers: numbers)
        }
        var runs: [String: RegressionRun] = [:]
        let list = [
            run("prepare/lungs", [], numbers: ["counts.train.normal": 9]),
            run("segment-train/bce-lungs", ["prepare/lungs"], numbers: ["bestValDice": 0.8]),
            run("segment-train/focal-lungs", ["prepare/lungs"], numbers: ["bestValDice": 0.7]),
            run("segment-evaluate/lungs", ["segment-train/bce-lungs", "segment-train/focal-lungs", "prepare/lungs"],
                numbers: ["and.dice": 0.83]),
            run("classify-train/cce-cxr", ["prepare/lungs"], numbers: ["bestValAccuracy": 0.6]),
            run("report/r", ["segment-evaluate/lungs", "classify-train/cce-cxr"], numbers: ["claimsHeld": 5]),
        ]
        for r in list { runs[r.id] = r }
        edit(&runs)
        return RegressionRecord(formatVersion: 1, build: build ?? self.build,
                                runs: list.map(\.id).compactMap { runs[$0] } + runs.keys.filter { id in !list.contains { $0.id == id } }.sorted().compactMap { runs[$0] })
    }

    func testIdenticalRecordsPass() {
        let comparison = compare(record(), baseline: record())
        XCTAssertTrue(comparison.passed)
        XCTAssertTrue(comparison.bytesCompared)
        XCTAssertEqual(comparison.runs, 6)
        XCTAssertNil(comparison.firstDiverging)
    }

    func testFirstDivergingStageAndItsConsequences() {
        // The bce U-Net's weights change by a few ulps: its bytes differ, and so do the evaluation and
        // report downstream — but not the focal U-Net or the classifier, which never read it.
        let changed = record { runs in
            runs["segment-train/bce-lungs"]!.outputs["out.bin"] = "other"
            runs["segment-evaluate/lungs"]!.outputs["out.bin"] = "other"
            runs["segment-evaluate/lungs"]!.numbers["and.dice"] = 0.84
            runs["report/r"]!.outputs["out.bin"] = "other"
        }
        let comparison = compare(changed, baseline: record())
        XCTAssertFalse(comparison.passed)
        XCTAssertEqual(comparison.firstDiverging, "segment-train/bce-lungs")
        XCTAssertEqual(comparison.differences.map(\.id), ["segment-train/bce-lungs", "segment-evaluate/lungs", "report/r"])
        XCTAssertEqual(comparison.differences.map(\.consequenceOf), [nil, "segment-train/bce-lungs", "segment-train/bce-lungs"])
        XCTAssertEqual(comparison.differences[0].findings, ["bytes of out.bin"])
        XCTAssertEqual(comparison.differences[1].findings, ["bytes of out.bin", "and.dice 0.83 → 0.84"])
        let text = describe(comparison, baselinePath: "baseline.json")
        XCTAssertTrue(text.contains("| segment-train/bce-lungs | bytes of out.bin | **first diverging stage** |"), text)
        XCTAssertTrue(text.contains("| segment-evaluate/lungs | bytes of out.bin; and.dice 0.83 → 0.84 | consequence of segment-train/bce-lungs |"), text)
        XCTAssertTrue(text.contains("| report/r | bytes of out.bin | consequence of segment-train/bce-lungs |"), text)
        XCTAssertTrue(text.contains("3 of 6 stage runs differ; first diverging stage: segment-train/bce-lungs"), text)
    }

    func testIndependentDivergenceIsItsOwnRootCause() {
        let changed = record { runs in
            runs["segment-train/focal-lungs"]!.outputs["out.bin"] = "other"
            runs["classify-train/cce-cxr"]!.outputs["out.bin"] = "other"
            runs["report/r"]!.outputs["out.bin"] = "other"
        }
        let comparison = compare(changed, baseline: record())
        XCTAssertEqual(comparison.firstDiverging, "segment-train/focal-lungs")
        let causes = Dictionary(uniqueKeysWithValues: comparison.differences.map { ($0.id, $0.consequenceOf) })
        XCTAssertEqual(causes["classify-train/cce-cxr"], .some(nil), "the classifier does not read the U-Net")
        XCTAssertEqual(causes["report/r"], "segment-train/focal-lungs", "the earliest diverged ancestor is named")
    }

    func testKeyDriftMissingAndNewRuns() {
        let changed = record { runs in
            runs["prepare/lungs"]!.key = "other-key"
            runs["classify-train/cce-cxr"] = nil
            runs["classify-train/focal-cxr"] = RegressionRun(id: "classify-train/focal-cxr", key: "k", inputs: ["prepare/lungs"],
                                                             outputs: [:], volatile: [], numbers: [:])
        }
        let comparison = compare(changed, baseline: record())
        XCTAssertEqual(comparison.firstDiverging, "prepare/lungs")
        let findings = Dictionary(uniqueKeysWithValues: comparison.differences.map { ($0.id, $0.findings) })
        XCTAssertEqual(findings["prepare/lungs"], ["key key-prepare/lungs → other-key (configuration or input drift)"])
        XCTAssertEqual(findings["classify-train/cce-cxr"], ["missing (the baseline has this stage run)"])
        XCTAssertEqual(findings["classify-train/focal-cxr"], ["new stage run (not in the baseline)"])
    }

    func testAnotherBuildComparesOnlyWhatDoesNotDependOnRounding() {
        let openblas = RegressionBuild(blas: "openblas", blasKernel: "Haswell", convolution: "winograd", threads: 2)
        // Another BLAS: every trained output differs, even numbers far apart — not compared.
        let trained = record({ runs in
            for id in runs.keys where !id.hasPrefix("prepare") { runs[id]!.outputs["out.bin"] = "other" }
            runs["segment-train/bce-lungs"]!.numbers["bestValDice"] = 0.5
            runs["classify-train/cce-cxr"]!.key = "ranked-differently"
        }, build: openblas)
        let comparison = compare(trained, baseline: record())
        XCTAssertFalse(comparison.bytesCompared)
        XCTAssertTrue(comparison.passed, describe(comparison, baselinePath: "b"))
        XCTAssertEqual(comparison.notCompared, ["segment-evaluate/lungs", "classify-train/cce-cxr", "report/r"])
        XCTAssertTrue(describe(comparison, baselinePath: "b").contains("3 stage runs are NOT compared"))

        // The datasets are compared in full and the U-Nets' keys still are.
        let drifted = record({ runs in
            runs["prepare/lungs"]!.outputs["out.bin"] = "other"
            runs["segment-train/focal-lungs"]!.key = "other-key"
        }, build: openblas)
        let failed = compare(drifted, baseline: record())
        XCTAssertEqual(failed.differences.map(\.id), ["prepare/lungs", "segment-train/focal-lungs"])
        XCTAssertEqual(failed.firstDiverging, "prepare/lungs")
        XCTAssertEqual(failed.differences[1].consequenceOf, "prepare/lungs")
    }

    func testNumbersAreComparedExactly() {
        let changed = record { runs in runs["segment-train/bce-lungs"]!.numbers["bestValDice"] = 0.8000001 }
        let comparison = compare(changed, baseline: record())
        XCTAssertEqual(comparison.differences.map(\.findings), [["bestValDice 0.8 → 0.8000001"]])
    }
}

final class RegressionRecordTests: ScratchTestCase {
    private func write(_ store: ArtifactStore, stage: String, variant: String, inputs: [(String, String)],
                       files: [String: [UInt8]], summary: JSONValue) throws -> (folder: String, key: String) {
        let run = try store.locate(stage: stage, variant: variant, settings: ["v": variant], inputKeys: inputs.map(\.1),
                                   formatVersion: 1, force: false)
        var writer = try run.begin(inputs: inputs.map { ManifestInput(name: "in", path: $0.0, key: $0.1) }, seed: 0)
        for (path, bytes) in files.sorted(by: { $0.key < $1.key }) {
            try FileManager.default.createDirectory(atPath: (run.folder + "/" + path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try writer.write(bytes, to: path)
        }
        _ = try writer.finish(summary: summary)
        return (run.folder, run.key)
    }

    func testRecordsKeysGroupedHashesAndHeadlineNumbers() throws {
        let store = ArtifactStore(root: scratch, environment: RunEnvironment(threads: 2, blasProvider: "blis", convolution: "winograd"))
        let prepare = try write(store, stage: "prepare", variant: "lungs", inputs: [], files: ["images.csv": Array("a".utf8)],
                                summary: .object(["counts": .object(["train": .object(["normal": .number(9)])]),
                                                  "imageRoot": .string("/somewhere"), "trainingSeconds": .number(4.5)]))
        let truth = [true, true, false, false], predicted = [true, false, false, false]
        let row = SegmentationRow(name: "bce", models: ["m"], scores: [MaskScore(predicted: predicted, truth: truth)])
        let evaluation = SegmentationEvaluation(formatVersion: 1, dataset: "lungs", split: "test", images: 1, comparedAt: "128²",
                                                threshold: 0.5, selectionMetric: .dice, models: [row], ranking: ["m"], ensemble: nil)
        let segmentation = try write(store, stage: "segment-evaluate", variant: "lungs", inputs: [(prepare.folder, prepare.key)],
                                     files: ["metrics.json": try canonicalJSON(evaluation), "plots/a.svg": [1], "plots/b.svg": [2]],
                                     summary: .object(["images": .number(1)]))
        // Like evaluate's prediction files: an input inside another artifact, keyed by its content.
        let report = try write(store, stage: "report", variant: "r", inputs: [(segmentation.folder + "/metrics.json", "content-hash")],
                               files: ["report.md": Array("wall time 3 s".utf8), "figures/x.svg": [3]],
                               summary: .object(["claimsHeld": .number(4), "computeSeconds": .number(12)]))

        let build = RegressionBuild(blas: "blis", blasKernel: "haswell", convolution: "winograd", threads: 2)
        let record = try recordRegression(report: report.folder, store: store, build: build)
        XCTAssertEqual(record.runs.map(\.id), ["prepare/lungs", "segment-evaluate/lungs", "report/r"])
        XCTAssertEqual(record.runs.map(\.key), [prepare.key, segmentation.key, report.key])
        XCTAssertEqual(record.runs.map(\.inputs), [[], ["prepare/lungs"], ["segment-evaluate/lungs"]])

        XCTAssertEqual(record.runs[0].numbers, ["counts.train.normal": 9], "paths and timings are not headline numbers")
        // Dice of one image: 2·1/(1+2) = 2/3; IoU 1/2.
        XCTAssertEqual(record.runs[1].numbers["bce.dice"]!, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(record.runs[1].numbers["bce.iou"]!, 0.5, accuracy: 1e-12)
        XCTAssertEqual(record.runs[2].numbers, ["claimsHeld": 4])

        // Files in a sub-folder fold into one digest over their names and hashes.
        var hasher = SHA256()
        hasher.update(Array("plots/a.svg\t\(SHA256.hex([1]))\nplots/b.svg\t\(SHA256.hex([2]))\n".utf8))
        XCTAssertEqual(record.runs[1].outputs["plots/ (2 files)"], hasher.hexDigest())
        XCTAssertEqual(record.runs[1].outputs["metrics.json"], SHA256.hex(try canonicalJSON(evaluation)))
        // The report's text carries wall times: listed as volatile, never hashed.
        XCTAssertEqual(record.runs[2].volatile, ["report.md"])
        XCTAssertEqual(Set(record.runs[2].outputs.keys), ["figures/ (1 files)"])
    }

    func testRecordRefusesAFolderThatIsNotAReport() {
        let store = ArtifactStore(root: scratch, environment: RunEnvironment(threads: 2, blasProvider: "blis", convolution: "winograd"))
        XCTAssertThrowsError(try recordRegression(report: scratch + "/nothing", store: store,
                                                  build: RegressionBuild(blas: "blis", blasKernel: "x", convolution: "w", threads: 1))) { error in
            XCTAssertTrue("\(error)".contains("nothing"), "\(error)")
        }
    }
}

final class RegressionSubsetTests: XCTestCase {
    func testOneFilePerPatientDistinctAndExcluded() {
        let files = [("p1_a.jpeg", "p1"), ("p1_0.jpeg", "p1"), ("p2_a.jpeg", "p2"), ("p3_a.jpeg", "p3"), ("p4_a.jpeg", "p4")]
            .map { (file: $0.0, patient: $0.1) }
        let drawn = drawOnePerPatient(files, count: 3, excluding: ["p2"], seed: 7, stream: 1)
        XCTAssertEqual(drawn.count, 3)
        XCTAssertEqual(Set(drawn.map(\.patient)).count, 3)
        XCTAssertFalse(drawn.contains { $0.patient == "p2" })
        XCTAssertEqual(drawn.first { $0.patient == "p1" }?.file, "p1_0.jpeg", "a patient's first file in code-point order")
        // Same seed, same draw, whatever the listing order; too few patients gives what there is.
        XCTAssertEqual(drawOnePerPatient(files.reversed(), count: 3, excluding: ["p2"], seed: 7, stream: 1).map(\.file), drawn.map(\.file))
        XCTAssertEqual(drawOnePerPatient(files, count: 9, excluding: [], seed: 7, stream: 1).count, 4)
    }

    /// The committed subset (when present) is what its description says: patient-disjoint splits and
    /// lung pairs, the sizes asked for, binary masks the size of their images.
    func testCommittedSubsetIsPatientDisjoint() throws {
        let root = Repository.root + "/data/regress"
        let listing = root + "/subset.json"
        guard FileManager.default.fileExists(atPath: listing) else { throw XCTSkip("no data/regress in this checkout") }
        let summary = try decodeJSON(SubsetSummary.self, from: try readFile(listing))
        var patientsBySplit: [String: Set<String>] = [:]
        for file in summary.files where file.path.hasPrefix("kermany/") {
            let split = String(file.path.split(separator: "/")[1])
            patientsBySplit[split, default: []].insert(patientOf(file.path))
            XCTAssertEqual(SHA256.hex(try readFile(root + "/" + file.path)), file.sourceSHA256, "\(file.path) is its source, byte for byte")
        }
        let lungPatients = Set(summary.files.filter { $0.path.hasPrefix("lungs/images/") }.map { patientOf($0.path) })
        XCTAssertEqual(patientsBySplit["train"]?.count, 90)
        XCTAssertEqual(patientsBySplit["test"]?.count, 30)
        XCTAssertEqual(lungPatients.count, 40)
        XCTAssertTrue(patientsBySplit["train"]!.isDisjoint(with: patientsBySplit["test"]!))
        XCTAssertTrue(lungPatients.isDisjoint(with: patientsBySplit["train"]!.union(patientsBySplit["test"]!)))
        XCTAssertLessThan(summary.bytes, 5 << 20)
    }

    private func patientOf(_ path: String) -> String {
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        if name.hasPrefix("person") { return String(name.split(separator: "_")[0]) }
        let parts = name.split(separator: "-").map(String.init)
        if let im = parts.firstIndex(of: "IM") { return parts[...(im + 1)].joined(separator: "-") }
        return name
    }
}
