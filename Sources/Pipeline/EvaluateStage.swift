// The `evaluate` stage: prediction files in, one artifact out with metrics.json, a Table 2-style
// Markdown table, significance of every other file against the first, and SVG figures.

import Artifacts
import Datasets
import Foundation
import Metrics
import Report
import SeededRandom

/// What decides an evaluation artifact besides its input files.
public struct EvaluateSettings: Codable, Sendable, Equatable {
    public var names: [String]
    public var resamples: Int
    public var level: Double
    public var bins: Int
    public var renormalize: Bool
    public var seed: UInt64

    public init(names: [String], resamples: Int, level: Double, bins: Int, renormalize: Bool, seed: UInt64) {
        self.names = names
        self.resamples = resamples
        self.level = level
        self.bins = bins
        self.renormalize = renormalize
        self.seed = seed
    }
}

/// metrics.json.
public struct EvaluationFile: Codable, Sendable {
    public var formatVersion: Int
    public var classes: [String]
    public var models: [ModelReport]
    /// Every other file against the first.
    public var comparisons: [Comparison]
    public var notes: [String]
}

/// Version of the evaluation artifact's files (part of its key).
public let evaluationFormatVersion = 2

/// Why an evaluation failed, naming the file.
public enum EvaluateError: Error, CustomStringConvertible {
    case predictions(PredictionFileError)
    case comparison(ComparisonError)
    case validationCount(predictions: Int, validation: Int)
    case artifact(ArtifactError)

    public var description: String {
        switch self {
        case let .predictions(error): error.description
        case let .comparison(error): error.description
        case let .validationCount(predictions, validation):
            "\(validation) validation files for \(predictions) prediction files: give one per prediction file, in the same order"
        case let .artifact(error): error.description
        }
    }
}

/// Evaluates `paths` (and compares them) into the artifact `variant`.
///
/// - Parameter validationPaths: empty, or one validation prediction file per input, for
///   temperature scaling.
public func runEvaluate(_ context: StageContext, paths: [String], validationPaths: [String], variant: String,
                        settings: EvaluateSettings) throws(EvaluateError) -> StageResult {
    let sink = context.sink
    guard validationPaths.isEmpty || validationPaths.count == paths.count else {
        throw .validationCount(predictions: paths.count, validation: validationPaths.count)
    }
    var notes: [String] = []
    var models: [(String, Predictions)] = []
    var hashes: [String] = []
    for (path, name) in zip(paths, settings.names) {
        do {
            let (predictions, fixed) = try readPredictions(path: path, renormalize: settings.renormalize)
            if fixed > 0 {
                let note = "\(path): renormalised \(fixed) rows whose probabilities did not sum to 1"
                notes.append(note)
                sink(.warning(note))
            }
            models.append((name, predictions))
            hashes.append(SHA256.hex(predictionCSV(predictions).utf8))
        } catch { throw .predictions(error) }
    }
    var validation: [Predictions] = []
    for path in validationPaths {
        do {
            let predictions = try readPredictions(path: path, renormalize: settings.renormalize).predictions
            validation.append(predictions)
            hashes.append(SHA256.hex(predictionCSV(predictions).utf8))
        } catch { throw .predictions(error) }
    }
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "evaluate", variant: variant, settings: settings, inputKeys: hashes,
                                       formatVersion: evaluationFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }

    let classNames = CXRClass.allCases.map(\.name)
    var reports: [ModelReport] = []
    for (index, (name, predictions)) in models.enumerated() {
        var generator = SplitMix64(seed: settings.seed, stream: UInt64(index))
        reports.append(evaluate(predictions, name: name, classNames: classNames, resamples: settings.resamples,
                                level: settings.level, bins: settings.bins,
                                validation: validation.isEmpty ? nil : validation[index], generator: &generator,
                                threads: context.threads, sink: sink))
    }
    var comparisons: [Comparison] = []
    for index in models.indices.dropFirst() {
        var generator = SplitMix64(seed: settings.seed, stream: 0xC0DE + UInt64(index))
        do {
            comparisons.append(try compare(reference: models[0].1, referenceName: models[0].0, other: models[index].1,
                                           otherName: models[index].0, resamples: settings.resamples, generator: &generator,
                                           threads: context.threads))
        } catch { throw .comparison(error) }
    }
    do {
        var writer = try run.begin(inputs: zip(paths + validationPaths, hashes).map {
                                       ManifestInput(name: ($0.0 as NSString).lastPathComponent, path: $0.0, key: $0.1) },
                                   seed: settings.seed)
        let file = EvaluationFile(formatVersion: evaluationFormatVersion, classes: classNames, models: reports,
                                  comparisons: comparisons, notes: notes)
        try writer.write(try canonicalJSON(file), to: "metrics.json")
        try writer.write(Array(evaluationMarkdown(reports, comparisons).utf8), to: "table.md")
        for report in reports {
            let stem = "plots/" + fileSafe(report.name)
            try writer.write(Array(confusionMatrixSVG(report.confusion, classNames: classNames,
                                                      title: "Confusion matrix — \(report.name)").utf8), to: stem + "-confusion.svg")
            try writer.write(Array(rocSVG(report, classNames: classNames).utf8), to: stem + "-roc.svg")
            try writer.write(Array(prSVG(report, classNames: classNames).utf8), to: stem + "-pr.svg")
            try writer.write(Array(reliabilitySVG(report).utf8), to: stem + "-reliability.svg")
        }
        let summary: JSONValue = .object(Dictionary(uniqueKeysWithValues: reports.map {
            ($0.name, JSONValue.object(["accuracy": .number($0.accuracy), "mcc": .number($0.mcc), "aurocMicro": .number($0.aurocMicro)]))
        }))
        let manifest = try writer.finish(summary: summary)
        return writer.result(manifest)
    } catch let error as ArtifactError {
        throw .artifact(error)
    } catch {
        throw .artifact(.io(path: run.folder, message: "\(error)"))
    }
}
