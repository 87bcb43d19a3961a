// `report`: one reproduction's tables and figures beside the paper's, as Markdown and one
// self-contained HTML page.

import ArgumentParser
import Foundation
import Pipeline
import StageCLI

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Tables 1–5, the 25 significance claims, the figures, protocol and provenance of one reproduction.",
        discussion: """
            Give the artifact folders the stages printed (so each is found by its key, never by \
            guessing the newest): --segmentation a segment-evaluate artifact (Table 1), --table2/3/4 \
            evaluate artifacts whose rows carry the Makefile's names (losses; top3-vote …; \
            model-level-top3, model-level-top5, proposed), --gradcam any gradcam artifacts. Every \
            option may be left out; the report says what is missing. Writes \
            artifacts/report/NAME/KEY/ with report.md, report.html (inline SVG, embedded PNG, \
            nothing fetched from the network) and figures/. Each cell reads ours / paper \
            (difference), with the paper's two mistyped MCC intervals corrected and marked; the \
            paper's 25 significance claims are checked with its inferred rule (SPEC §8) and McNemar; \
            the protocol section lists what this run did differently from the paper, read from the \
            manifests of every artifact upstream; provenance lists each artifact's key, wall time, \
            threads, BLAS and convolution, and the source commit.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "A segment-evaluate artifact folder (Table 1).")
    var segmentation: String?

    @Option(help: "An evaluate artifact folder of the twelve classifiers (Table 2).")
    var table2: String?

    @Option(help: "An evaluate artifact folder of the prediction-level ensembles (Table 3).")
    var table3: String?

    @Option(help: "An evaluate artifact folder of the model-level ensembles and the proposed model (Table 4, Table 5).")
    var table4: String?

    @Option(parsing: .upToNextOption, help: "gradcam artifact folders (Fig 6).")
    var gradcam: [String] = []

    @Option(help: "Artifact name.")
    var name = "reproduction"

    func validate() throws {
        guard segmentation != nil || table2 != nil || table3 != nil || table4 != nil || !gradcam.isEmpty else {
            throw ValidationError("give at least one artifact: --segmentation, --table2, --table3, --table4 or --gradcam")
        }
    }

    func run() throws {
        try runStage("report") {
            let context = try common.context(stage: "report")
            let sources = ReportSources(segmentation: segmentation, table2: table2, table3: table3, table4: table4, gradcam: gradcam)
            let result = try runReport(context, sources: sources, name: name, settings: ReportSettings(profile: common.profile))
            if result.reused { context.sink(.note("reusing the complete artifact (same inputs; --force to redo)")) }
            context.sink(.note("\(result.folder)/report.html"))
            return result.folder
        }
    }
}

ReportCommand.main()
