// The classifier's input (SPEC §3): each image decoded once, resampled to size×size (Keras
// load_img's nearest neighbour by default), kept as 8-bit gray; batches are assembled as
// [B,S,S,3] Float32 with gray replicated to three channels and divided by 255.

import Artifacts
import Datasets
import Engine
import Foundation
import Imaging

/// The images of some rows of a dataset, ready to batch.
public struct ClassificationImages: Sendable {
    public let size: Int
    public let ids: [String]
    public let labels: [Int]
    /// size·size bytes per image.
    let pixels: [[UInt8]]

    public var count: Int { ids.count }

    /// Decodes and resamples `rows` of `dataset` (in parallel, in row order).
    ///
    /// - Throws: `IngestError` naming an unreadable image or an unlabelled row.
    public static func load(_ dataset: Dataset, rows: [DatasetRow], size: Int, interpolation: Interpolation,
                            threads: Int, sink: EventSink) throws(IngestError) -> ClassificationImages {
        for row in rows where row.label == nil {
            throw .unlabeled(path: dataset.imagePath(row), message: "has no class; a classifier needs labelled images")
        }
        let pixels = try parallelMap(rows, threads: threads, sink: sink, task: "loading \(rows.count) images at \(size)²") {
            (row: DatasetRow) throws(IngestError) -> [UInt8] in
            do throws(ImagingError) {
                let image = try GrayImage(contentsOf: dataset.imagePath(row))
                return image.resized(width: size, height: size, method: interpolation).bytes()
            } catch {
                throw .image(error)
            }
        }
        return ClassificationImages(size: size, ids: rows.map(\.path), labels: rows.map { $0.label?.rawValue ?? 0 }, pixels: pixels)
    }

    /// Images [B,S,S,3] in [0,1] and one-hot labels [B,3] for `indices`.
    public func batch(_ indices: [Int]) -> (images: Tensor, labels: Tensor) {
        var labels = [Float](repeating: 0, count: indices.count * 3)
        for (b, index) in indices.enumerated() { labels[b * 3 + self.labels[index]] = 1 }
        let images = networkInput(indices.map { pixels[$0].map { Float($0) / 255 } }, size: size)
        return (images, Tensor(shape: [indices.count, 3], data: labels))
    }
}
