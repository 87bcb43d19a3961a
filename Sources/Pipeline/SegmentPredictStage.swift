// `segment predict`: binary lung masks of one or more trained U-Nets for every image of a dataset,
// at each image's own size, for `mask-crop` to AND.

import Artifacts
import Datasets
import Foundation
import Imaging

/// What decides a mask prediction besides the models and the dataset.
struct SegmentPredictSettings: Codable, Equatable {
    var threshold: Double
}

/// Binary lung masks (8-bit PNG, 0/255, each image's own size) of every model for every image of
/// `dataset`, under masks/<k>-<loss>/<image path>.png. Empty predictions are counted and named.
public func runSegmentPredict(_ context: StageContext, models: [TrainedSegmenter], data: (dataset: Dataset, key: String),
                              variant: String) throws(StageError) -> StageResult {
    let (dataset, sink, threads, threshold) = (data.dataset, context.sink, context.threads, context.config.segment.threshold)
    let settings = SegmentPredictSettings(threshold: threshold)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "segment-predict", variant: variant, settings: settings,
                                       inputKeys: models.map(\.manifest.key) + [data.key],
                                       formatVersion: segmentationEvaluationFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    let folder = run.folder
    let maskFolders = models.enumerated().map { "masks/\($0 + 1)-\($1.name)" }
    var empty = [[String]](repeating: [], count: models.count)
    do {
        var writer = try run.begin(inputs: models.map { ManifestInput(name: "model", path: $0.folder, key: $0.manifest.key) }
                                       + [ManifestInput(name: "dataset", path: dataset.folder, key: data.key)],
                                   seed: 0)
        let chunk = 16
        for start in stride(from: 0, to: dataset.rows.count, by: chunk) {
            let part = Array(dataset.rows[start..<min(start + chunk, dataset.rows.count)])
            let images = try parallelMap(part, threads: threads) { (row: DatasetRow) throws(IngestError) -> GrayImage in
                do throws(ImagingError) { return try GrayImage(contentsOf: dataset.imagePath(row)) } catch { throw .image(error) }
            }
            for (m, model) in models.enumerated() {
                for (row, mask) in zip(part, model.masks(images, threshold: threshold)) {
                    if mask.count == 0 {
                        empty[m].append(row.path)
                        sink(.warning("\(model.name): empty lung mask for \(dataset.imagePath(row)) (mask-crop will use the whole image)"))
                    }
                    let path = maskFolders[m] + "/" + maskFileName(row.path)
                    try FileManager.default.createDirectory(atPath: folder + "/" + (path as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    try writer.write(try mask.image.pngData(), to: path)
                }
            }
            sink(.progress(task: "predicting lung masks with \(models.count) U-Nets", done: min(start + chunk, dataset.rows.count), total: dataset.rows.count))
        }
        let manifest = try writer.finish(summary: .object([
            "images": .number(Double(dataset.rows.count)), "threshold": .number(threshold),
            "models": .array(models.enumerated().map { m, model in
                .object(["loss": .string(model.name), "folder": .string(model.folder), "masks": .string(maskFolders[m]),
                         "emptyMasks": .number(Double(empty[m].count)), "emptyMaskImages": .array(empty[m].map { .string($0) })])
            }),
        ]))
        return writer.result(manifest)
    } catch {
        throw .wrapping(error, folder: folder)
    }
}
