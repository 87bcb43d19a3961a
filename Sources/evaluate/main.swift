// `evaluate`: every metric of Tables 2–5 for prediction files, with intervals, significance,
// calibration and figures.

import ArgumentParser
import Foundation
import Pipeline
import StageCLI

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Score prediction files: metrics, intervals, significance, calibration, figures.",
        discussion: """
            Each input is a CSV with the header image,label,p_bacterial,p_normal,p_viral (label: \
            a class name or 0/1/2; each row's probabilities sum to 1 within 1e-4). Writes \
            artifacts/evaluate/NAME/KEY/ with metrics.json, table.md (one Table 2-style row per \
            file) and plots/*.svg (confusion matrix, ROC, PR, reliability). With several files, \
            every other file is compared with the first on the same images: the paper's inferred \
            rule (SPEC §8), McNemar, a paired bootstrap of ΔMCC and DeLong. The paper's AUROC is \
            the micro average, its AUPRC the trapezoid under the micro PR curve, and its \
            "Clopper–Pearson" MCC interval a Wald interval; all are labelled as such.
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "Prediction CSV files.")
    var predictions: [String]

    @Option(help: "Artifact name (default: the first file's name without extension).")
    var name: String?

    @Option(parsing: .upToNextOption, help: "Model names for the files, in order (default: their file names).")
    var names: [String] = []

    @Option(parsing: .upToNextOption, help: "Validation prediction files, one per input, for temperature scaling.")
    var validation: [String] = []

    @Flag(help: "Divide rows whose probabilities do not sum to 1 by their sum (counted in the output) instead of failing.")
    var renormalize = false

    @Option(help: "Bootstrap resamples (default: the configuration's evaluate.bootstrapResamples).")
    var resamples: Int?

    func validate() throws {
        guard !predictions.isEmpty else { throw ValidationError("give at least one prediction file") }
        guard names.isEmpty || names.count == predictions.count else {
            throw ValidationError("--names needs one name per prediction file (\(predictions.count))")
        }
        if let resamples, resamples < 10 { throw ValidationError("--resamples must be at least 10") }
    }

    func run() throws {
        try runStage("evaluate") {
            let context = try common.context(stage: "evaluate")
            let config = context.config
            var modelNames = names.isEmpty ? predictions.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension } : names
            for i in modelNames.indices where modelNames[..<i].contains(modelNames[i]) { modelNames[i] += "-\(i + 1)" }
            let settings = EvaluateSettings(
                names: modelNames, resamples: resamples ?? config.evaluate.bootstrapResamples,
                level: config.evaluate.confidenceLevel, bins: config.evaluate.calibrationBins,
                renormalize: renormalize, seed: config.seed)
            let sink = context.sink
            let result = try runEvaluate(context, paths: predictions, validationPaths: validation, variant: name ?? modelNames[0],
                                         settings: settings)
            if result.reused { sink(.note("reusing the complete artifact (same files and settings; --force to redo)")) }
            if let table = FileManager.default.contents(atPath: result.folder + "/table.md") {
                sink(.note("\n" + String(decoding: table, as: UTF8.self)))
            }
            return result.folder
        }
    }
}

Evaluate.main()
