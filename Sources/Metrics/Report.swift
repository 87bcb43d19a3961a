// Everything `evaluate` reports for one model, and for a pair of models on the same images, as
// Codable values (the schema of metrics.json, documented in the README).

import Artifacts

/// Per-class numbers.
public struct ClassMetrics: Sendable, Codable, Equatable {
    public var name: String
    public var support: Int
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var auroc: Double
}

/// Calibration before and, when a validation file was given, after temperature scaling.
public struct CalibrationReport: Sendable, Codable, Equatable {
    public var brier: Double
    public var negativeLogLikelihood: Double
    public var equalWidth: CalibrationSummary
    public var equalMass: CalibrationSummary
    /// Temperature fitted on the validation predictions, and this file's calibration after it.
    public var temperature: Double?
    public var scaledEqualWidth: CalibrationSummary?
    public var scaledBrier: Double?
    public var scaledNegativeLogLikelihood: Double?
}

/// The curves behind the plots, each thinned to about `maxCurvePoints` points when longer (every
/// area in the report is computed on the full curve).
public struct CurveSet: Sendable, Codable, Equatable {
    public var rocMicro: Curve
    public var rocPerClass: [Curve]
    public var prMicro: Curve
    public var prPerClass: [Curve]
}

/// Every metric of one prediction file.
public struct ModelReport: Sendable, Codable, Equatable {
    public var name: String
    public var images: Int
    public var accuracy: Double
    /// The paper's AUROC (micro).
    public var aurocMicro: Double
    public var aurocMacro: Double
    /// scikit-learn tutorial's interpolated macro (the paper code's "macro").
    public var aurocMacroInterpolated: Double
    /// The paper's AUPRC (trapezoid under the micro PR curve).
    public var auprcMicro: Double
    public var averagePrecisionMicro: Double
    public var precisionWeighted: Double
    public var recallWeighted: Double
    public var f1Weighted: Double
    public var precisionMacro: Double
    public var recallMacro: Double
    public var f1Macro: Double
    public var mcc: Double
    public var kappa: Double
    public var perClass: [ClassMetrics]
    public var confusion: ConfusionMatrix
    /// MCC as the paper printed its interval (labelled: not Clopper–Pearson) and the plain Wald.
    public var mccPaperCI: Interval
    public var mccWaldCI: Interval
    /// Stratified bootstrap intervals, keyed by metric name.
    public var bootstrap: [String: BootstrapResult]
    public var calibration: CalibrationReport
    public var curves: CurveSet
}

/// Points kept per stored curve (a 624-image file's curves have fewer, and are kept whole).
public let maxCurvePoints = 4000

private func confusion(_ p: Predictions) -> ConfusionMatrix {
    ConfusionMatrix(labels: p.labels, predicted: p.predicted, classes: p.classes)
}

/// The full report of `predictions`.
///
/// - Parameters:
///   - validation: predictions of the same model on validation images, for temperature scaling.
///   - generator: drives the bootstrap; the same seed gives byte-identical intervals for any `threads`.
///   - sink: progress of the bootstrap.
public func evaluate<G: RandomNumberGenerator>(_ predictions: Predictions, name: String, classNames: [String],
                                               resamples: Int, level: Double, bins: Int,
                                               validation: Predictions?, generator: inout G, threads: Int = 1,
                                               sink: EventSink = { _ in }) -> ModelReport {
    let cm = confusion(predictions)
    // Each curve once, the pooled one and each class's side by side: sorting the scores is most of
    // the cost on large files.
    let counts = parallelMap(Array(-1..<predictions.classes), threads: threads) { k in
        let s = k < 0 ? predictions.pooled : predictions.oneVsRest(k)
        return BinaryCounts(truth: s.truth, scores: s.scores)
    }
    let micro = counts[0], perClassCounts = Array(counts.dropFirst())
    let rocMicro = rocCurve(micro), prMicro = precisionRecallCurve(micro)
    let rocPerClass = perClassCounts.map(rocCurve), prPerClass = perClassCounts.map(precisionRecallCurve)
    let perClass = (0..<predictions.classes).map { k -> ClassMetrics in
        ClassMetrics(name: classNames[k], support: cm.support[k], precision: cm.precision[k],
                     recall: cm.recall[k], f1: cm.f1[k], auroc: rocPerClass[k].area)
    }
    let intervals = Dictionary(uniqueKeysWithValues: bootstrapIntervals(
        predictions, resamples: resamples, level: level, generator: &generator, threads: threads, sink: sink,
        task: "\(name): \(resamples) bootstrap resamples").map { ($0.key.rawValue, $0.value) })
    var calibration = CalibrationReport(
        brier: predictions.brier, negativeLogLikelihood: predictions.negativeLogLikelihood,
        equalWidth: predictions.calibrationEqualWidth(bins: bins), equalMass: predictions.calibrationEqualMass(bins: bins))
    if let validation {
        let t = validation.fitTemperature()
        let scaled = predictions.temperatureScaled(t)
        calibration.temperature = t
        calibration.scaledEqualWidth = scaled.calibrationEqualWidth(bins: bins)
        calibration.scaledBrier = scaled.brier
        calibration.scaledNegativeLogLikelihood = scaled.negativeLogLikelihood
    }
    let curves = CurveSet(rocMicro: rocMicro.thinned(maxPoints: maxCurvePoints),
                          rocPerClass: rocPerClass.map { $0.thinned(maxPoints: maxCurvePoints) },
                          prMicro: prMicro.thinned(maxPoints: maxCurvePoints),
                          prPerClass: prPerClass.map { $0.thinned(maxPoints: maxCurvePoints) })
    return ModelReport(
        name: name, images: predictions.count, accuracy: cm.accuracy, aurocMicro: rocMicro.area,
        aurocMacro: rocPerClass.map(\.area).reduce(0, +) / Double(predictions.classes),
        aurocMacroInterpolated: interpolatedMacroArea(rocPerClass),
        auprcMicro: prMicro.area, averagePrecisionMicro: averagePrecision(prMicro),
        precisionWeighted: cm.weighted(cm.precision), recallWeighted: cm.weighted(cm.recall), f1Weighted: cm.weighted(cm.f1),
        precisionMacro: cm.macro(cm.precision), recallMacro: cm.macro(cm.recall), f1Macro: cm.macro(cm.f1),
        mcc: cm.mcc, kappa: cm.kappa, perClass: perClass, confusion: cm,
        mccPaperCI: paperCI(cm.mcc, n: predictions.count), mccWaldCI: waldCI(cm.mcc, n: predictions.count),
        bootstrap: intervals, calibration: calibration, curves: curves)
}

/// Two models compared on the same images.
public struct Comparison: Sendable, Codable, Equatable {
    public var reference: String
    public var other: String
    public var paperRule: TestResult
    public var mcnemar: TestResult
    public var mccDelta: Double
    public var mccDeltaInterval: Interval
    public var pairedBootstrap: TestResult
    /// DeLong per class (one-vs-rest) and for the pooled micro scores (treated as independent,
    /// an approximation: an image's three scores are not).
    public var delongPerClass: [TestResult]
    public var delongMicro: TestResult?
}

/// Errors comparing prediction files.
public enum ComparisonError: Error, CustomStringConvertible, Equatable {
    case differentImages(reference: String, other: String)

    public var description: String {
        switch self {
        case let .differentImages(reference, other):
            "\(other) and \(reference) do not hold the same images with the same labels in the same order"
        }
    }
}

/// Compares `other` against `reference` on the same images.
///
/// - Throws: `ComparisonError.differentImages` when the files do not pair up.
public func compare<G: RandomNumberGenerator>(reference: Predictions, referenceName: String, other: Predictions,
                                              otherName: String, resamples: Int, generator: inout G,
                                              threads: Int = 1) throws(ComparisonError) -> Comparison {
    guard reference.ids == other.ids, reference.labels == other.labels else {
        throw .differentImages(reference: referenceName, other: otherName)
    }
    let n = reference.count
    let paired = pairedBootstrapMCC(reference, other, resamples: resamples, generator: &generator, threads: threads)
    let perClass = (0..<reference.classes).compactMap { k -> TestResult? in
        let a = reference.oneVsRest(k), b = other.oneVsRest(k)
        return delong(truth: a.truth, scoresA: a.scores, scoresB: b.scores)?.test
    }
    let a = reference.pooled, b = other.pooled
    return Comparison(
        reference: referenceName, other: otherName,
        paperRule: paperSignificance(reference: confusion(reference).mcc, other: confusion(other).mcc, n: n),
        mcnemar: mcnemar(reference, other), mccDelta: paired.delta, mccDeltaInterval: paired.interval,
        pairedBootstrap: paired.test, delongPerClass: perClass,
        delongMicro: delong(truth: a.truth, scoresA: a.scores, scoresB: b.scores)?.test)
}
