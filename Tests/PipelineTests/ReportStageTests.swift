// The report stage on real evaluate artifacts: it finds its inputs by the folders given, refuses a
// folder of the wrong stage by name, writes the same bytes twice, and lists every upstream artifact.

import Artifacts
import Foundation
import SeededRandom
import TestSupport
import XCTest
@testable import Pipeline

final class ReportStageTests: ScratchTestCase {
    /// An evaluate artifact of two prediction files whose rows are named like Table 2's.
    private func table2(_ root: String) throws -> StageResult {
        var g = SplitMix64(seed: 5)
        var paths: [String] = []
        for name in ["cce", "focal"] {
            var text = "image,label,p_bacterial,p_normal,p_viral\n"
            for i in 0..<45 {
                let label = i % 3
                var p = (0..<3).map { _ in g.unit() + 0.05 }
                p[label] += name == "cce" ? 1.5 : 0.5
                let sum = p.reduce(0, +)
                text += "img\(i),\(label),\(p[0] / sum),\(p[1] / sum),\(p[2] / sum)\n"
            }
            let path = scratch + "/\(name)-predictions-test.csv"
            try writeFileAtomically(Array(text.utf8), to: path)
            paths.append(path)
        }
        return try runEvaluate(try context(root), paths: paths, validationPaths: [], variant: "t2",
                               settings: EvaluateSettings(names: ["cce", "focal"], resamples: 30, level: 0.95, bins: 5,
                                                          renormalize: false, seed: 1))
    }

    func testTheReportShowsTheTableBesideThePapersAndIsByteIdentical() throws {
        let evaluation = try table2(scratch + "/a")
        let sources = ReportSources(segmentation: nil, table2: evaluation.folder, table3: nil, table4: nil, gradcam: [])
        let first = try runReport(try context(scratch + "/a"), sources: sources, name: "r", settings: ReportSettings(profile: "ci"))
        let again = try runReport(try context(scratch + "/a", force: true), sources: sources, name: "r", settings: ReportSettings(profile: "ci"))
        XCTAssertEqual(first.manifest.outputs, again.manifest.outputs)
        XCTAssertEqual(first.manifest.inputs.map(\.key), [evaluation.manifest.key])
        let markdown = String(decoding: try readFile(first.folder + "/report.md"), as: UTF8.self)
        // Rows under the paper's names, beside the paper's values; the source artifact by key.
        XCTAssertTrue(markdown.contains("| CCE | "), markdown)
        XCTAssertTrue(markdown.contains(" / 0.9279 ("))      // CCE's paper accuracy
        XCTAssertTrue(markdown.contains("| Categorical focal (γ=1) | "))
        XCTAssertTrue(markdown.contains("evaluate/t2/\(evaluation.manifest.key)"))
        // The two rows make one Table 2 claim checkable: calibrated CCE is not among them.
        XCTAssertTrue(markdown.contains("0 of 0 claims that could be checked hold (25 need rows this run did not produce)"), markdown)
        XCTAssertTrue(markdown.contains("scored on the test split (45 images;"), markdown)
        let paths = Set(first.manifest.outputs.map(\.path))
        XCTAssertTrue(paths.isSuperset(of: ["report.md", "report.html", "figures/table2-cce-confusion.svg", "figures/table2-cce-roc.svg"]), "\(paths)")
        let html = String(decoding: try readFile(first.folder + "/report.html"), as: UTF8.self)
        XCTAssertTrue(html.contains("<svg"))
    }

    func testAFolderOfTheWrongStageOrNoArtifactIsNamed() throws {
        let evaluation = try table2(scratch + "/a")
        let wrong = ReportSources(segmentation: evaluation.folder, table2: nil, table3: nil, table4: nil, gradcam: [])
        XCTAssertThrowsError(try runReport(try context(scratch + "/a"), sources: wrong, name: "r", settings: ReportSettings(profile: "ci"))) {
            XCTAssertEqual("\($0)", "\(evaluation.folder): unreadable manifest: a 'evaluate' artifact; expected 'segment-evaluate'")
        }
        let missing = ReportSources(segmentation: nil, table2: scratch + "/nowhere", table3: nil, table4: nil, gradcam: [])
        XCTAssertThrowsError(try runReport(try context(scratch + "/a"), sources: missing, name: "r", settings: ReportSettings(profile: "ci"))) {
            XCTAssertTrue("\($0)".hasPrefix(self.scratch + "/nowhere: incomplete artifact: not a complete artifact"), "\($0)")
        }
    }
}
