// `segment evaluate` (SPEC §1.2, Table 1): trained U-Nets scored per image at each ground-truth
// mask's own size, ranked by the selection metric, and the bitwise AND of the top k scored too.
// The ranking and the chosen members go into the manifest, where `segment predict --ensemble-of`
// finds them.

import Artifacts
import Datasets
import Foundation
import Imaging
import Metrics
import Report

/// What decides a segmentation evaluation besides the models and the dataset.
struct SegmentEvaluateSettings: Codable, Equatable {
    var split: String
    var threshold: Double
    var selectionMetric: SelectionMetric
    var ensembleSize: Int
}

/// Version of the segmentation evaluation's files.
public let segmentationEvaluationFormatVersion = 1

/// Scores `models` on the rows of `split` (nil: every row with a mask), ranks them by
/// `segment.selectionMetric`, and scores the AND of the top `segment.ensembleSize`.
public func runSegmentEvaluate(_ context: StageContext, models: [TrainedSegmenter], data: (dataset: Dataset, key: String),
                               split: Split?, variant: String) throws(StageError) -> StageResult {
    let (dataset, config, sink, threads) = (data.dataset, context.config.segment, context.sink, context.threads)
    let settings = SegmentEvaluateSettings(split: split?.rawValue ?? "all", threshold: config.threshold,
                                           selectionMetric: config.selectionMetric, ensembleSize: config.ensembleSize)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "segment-evaluate", variant: variant, settings: settings,
                                       inputKeys: models.map(\.manifest.key) + [data.key],
                                       formatVersion: segmentationEvaluationFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    let rows = dataset.rows.filter { split == nil || $0.split == split }
    guard !rows.isEmpty else { throw .emptySplit(dataset: dataset.folder, split: split?.rawValue ?? "any") }

    // Per image: every model's mask at the ground truth's size, and its score.
    var scores = [[MaskScore]](repeating: [], count: models.count)
    var predictedMasks: [[Mask]] = []
    var truths: [Mask] = []
    let chunk = 16
    for start in stride(from: 0, to: rows.count, by: chunk) {
        let part = Array(rows[start..<min(start + chunk, rows.count)])
        let pairs: [(GrayImage, Mask)]
        do {
            pairs = try parallelMap(part, threads: threads) { (row: DatasetRow) throws(IngestError) -> (GrayImage, Mask) in
                guard let maskPath = dataset.maskPath(row) else {
                    throw .missingMask(image: dataset.imagePath(row), expected: "a ground-truth lung mask to score against")
                }
                do throws(ImagingError) {
                    let image = try GrayImage(contentsOf: dataset.imagePath(row))
                    return (image, try Mask(contentsOf: maskPath, sizedLike: image, imagePath: dataset.imagePath(row)))
                } catch { throw .image(error) }
            }
        } catch { throw .data(error) }
        let perModel = models.map { $0.masks(pairs.map(\.0), threshold: config.threshold) }
        for (m, masks) in perModel.enumerated() {
            for (mask, pair) in zip(masks, pairs) { scores[m].append(MaskScore(predicted: mask.bits, truth: pair.1.bits)) }
        }
        for i in 0..<pairs.count { predictedMasks.append(perModel.map { $0[i] }) }
        truths += pairs.map(\.1)
        sink(.progress(task: "scoring \(models.count) U-Nets on \(rows.count) images", done: min(start + chunk, rows.count), total: rows.count))
    }

    let individual = models.enumerated().map { SegmentationRow(name: $1.name, models: [$1.folder], scores: scores[$0]) }
    let ranked = individual.indices.sorted {
        let a = individual[$0].value(of: config.selectionMetric), b = individual[$1].value(of: config.selectionMetric)
        return a != b ? a > b : $0 < $1
    }
    var ensemble: SegmentationRow?
    var ensembleScores: [MaskScore] = []
    if models.count > 1 {
        let members = Array(ranked.prefix(config.ensembleSize))
        ensembleScores = zip(predictedMasks, truths).map { masks, truth in
            let anded = members.dropFirst().reduce(masks[members[0]]) { (try? $0.and(masks[$1])) ?? $0 }
            return MaskScore(predicted: anded.bits, truth: truth.bits)
        }
        ensemble = SegmentationRow(name: "Ensemble (AND of " + members.map { models[$0].name }.joined(separator: ", ") + ")",
                                   models: members.map { models[$0].folder }, scores: ensembleScores)
    }
    let evaluation = SegmentationEvaluation(
        formatVersion: segmentationEvaluationFormatVersion, dataset: dataset.folder, split: settings.split, images: rows.count,
        comparedAt: "each ground-truth mask's own size: predicted at the U-Net's input size, probabilities resampled bilinearly, then p > threshold",
        threshold: config.threshold, selectionMetric: config.selectionMetric, models: individual,
        ranking: ranked.map { models[$0].folder }, ensemble: ensemble)

    var csvRows: [[String]] = []
    for (i, row) in rows.enumerated() {
        for (m, model) in models.enumerated() {
            let s = scores[m][i]
            csvRows.append([row.path, model.name, formatFixed(s.dice, decimals: 6), formatFixed(s.iou, decimals: 6), formatFixed(s.accuracy, decimals: 6)])
        }
        if let ensemble, !ensembleScores.isEmpty {
            let s = ensembleScores[i]
            csvRows.append([row.path, ensemble.name, formatFixed(s.dice, decimals: 6), formatFixed(s.iou, decimals: 6), formatFixed(s.accuracy, decimals: 6)])
        }
    }
    do {
        var writer = try run.begin(inputs: models.map { ManifestInput(name: "model", path: $0.folder, key: $0.manifest.key) }
                                       + [ManifestInput(name: "dataset", path: dataset.folder, key: data.key)],
                                   seed: 0)
        try writer.write(Array(csvText(header: ["image", "model", "dice", "iou", "accuracy"], rows: csvRows).utf8), to: "per-image.csv")
        try writer.write(try canonicalJSON(evaluation), to: "metrics.json")
        try writer.write(Array(table1(evaluation).utf8), to: "table1.md")
        let manifest = try writer.finish(summary: .object([
            "images": .number(Double(rows.count)), "split": .string(settings.split),
            "selectionMetric": .string(config.selectionMetric.rawValue),
            "ranking": .array(ranked.map { .string(models[$0].folder) }),
            "ensemble": .array((ensemble?.models ?? ranked.prefix(1).map { models[$0].folder }).map { .string($0) }),
        ]))
        return writer.result(manifest)
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}
