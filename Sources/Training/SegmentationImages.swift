// The U-Net's input (SPEC §1.1): each image resampled to size×size and kept as 8-bit gray, each
// mask area-resampled to the same size and thresholded at ½ to {0, 1}. Batches are [B,S,S,3]
// (gray replicated, /255) and [B,S,S,1]. Training batches are augmented per [P]: a random integer
// shift of ±2 px, a horizontal flip and a rotation in ±5°, identical on image and mask (bilinear,
// nearest fill as Keras' ImageDataGenerator), the mask re-thresholded at ½ afterwards.

import Artifacts
import Datasets
import Engine
import Foundation
import Imaging
import SeededRandom

/// [P]'s augmentation ranges.
public struct Augmentation: Sendable, Equatable {
    public var shiftPixels: Int
    public var rotationDegrees: Double
    public var horizontalFlip: Bool

    public init(shiftPixels: Int, rotationDegrees: Double, horizontalFlip: Bool) {
        self.shiftPixels = shiftPixels
        self.rotationDegrees = rotationDegrees
        self.horizontalFlip = horizontalFlip
    }

    /// One draw of the augmentation (Imaging's `WarpTransform`).
    public typealias Transform = WarpTransform

    /// A random transform: shifts uniform over the integers in ±shiftPixels (Keras' integer
    /// `width_shift_range`), the angle uniform in ±rotationDegrees, a flip with probability ½.
    public func draw(_ generator: inout SplitMix64) -> Transform {
        let span = 2 * shiftPixels + 1
        let dx = generator.index(below: span) - shiftPixels
        let dy = generator.index(below: span) - shiftPixels
        let angle = generator.uniform(-rotationDegrees, rotationDegrees) * Double.pi / 180
        let flip = horizontalFlip && generator.unit() < 0.5
        return Transform(dx: dx, dy: dy, angle: angle, flip: flip)
    }
}

/// Image/mask pairs of some rows of a dataset, ready to batch.
public struct SegmentationImages: Sendable {
    public let size: Int
    public let ids: [String]
    /// size·size gray bytes per image.
    let pixels: [[UInt8]]
    /// size·size bytes per mask, 0 or 1.
    let masks: [[UInt8]]

    public var count: Int { ids.count }

    /// Decodes and resamples `rows` of `dataset` and their masks (in parallel, in row order).
    ///
    /// - Throws: `IngestError` naming an unreadable image, a row without a mask, or a mask whose
    ///   size differs from its image's.
    public static func load(_ dataset: Dataset, rows: [DatasetRow], size: Int, interpolation: Interpolation,
                            threads: Int, sink: EventSink) throws(IngestError) -> SegmentationImages {
        let pairs = try parallelMap(rows, threads: threads, sink: sink, task: "loading \(rows.count) image/mask pairs at \(size)²") {
            (row: DatasetRow) throws(IngestError) -> ([UInt8], [UInt8]) in
            guard let maskPath = dataset.maskPath(row) else {
                throw .missingMask(image: dataset.imagePath(row), expected: "a lung mask in the dataset's mask column")
            }
            do throws(ImagingError) {
                let image = try GrayImage(contentsOf: dataset.imagePath(row))
                let mask = try GrayImage(maskAt: maskPath, sizedLike: image, imagePath: dataset.imagePath(row))
                let pixels = image.resized(width: size, height: size, method: interpolation).bytes()
                let cut = 0.5 * mask.maxValue
                let bits = mask.resized(width: size, height: size, method: .area).pixels.map { $0 > cut ? UInt8(1) : 0 }
                return (pixels, bits)
            } catch {
                throw .image(error)
            }
        }
        return SegmentationImages(size: size, ids: rows.map(\.path), pixels: pairs.map(\.0), masks: pairs.map(\.1))
    }

    /// Images [B,S,S,3] in [0,1] and masks [B,S,S,1] in {0,1} for `indices`, each pair through
    /// the transform `augment` draws (none when nil).
    public func batch(_ indices: [Int], augment: Augmentation? = nil, generator: inout SplitMix64) -> (images: Tensor, masks: Tensor) {
        var images: [[Float]] = [], masks: [Float] = []
        masks.reserveCapacity(indices.count * size * size)
        for index in indices {
            let t = augment?.draw(&generator) ?? .identity
            images.append(warp(pixels[index].map { Float($0) / 255 }, size: size, t))
            masks += warp(self.masks[index].map(Float.init), size: size, t).map { $0 > 0.5 ? 1 : 0 }
        }
        return (networkInput(images, size: size), Tensor(shape: [indices.count, size, size, 1], data: masks))
    }
}

/// Network input [B,S,S,3] from gray pictures of side `size` with values in [0, 1]: the gray
/// channel replicated three times (SPEC §1.1, §3).
public func networkInput(_ pictures: [[Float]], size: Int) -> Tensor {
    let area = size * size
    var data = [Float](repeating: 0, count: pictures.count * area * 3)
    for (b, picture) in pictures.enumerated() {
        for p in 0..<area {
            let v = picture[p]
            data[(b * area + p) * 3] = v
            data[(b * area + p) * 3 + 1] = v
            data[(b * area + p) * 3 + 2] = v
        }
    }
    return Tensor(shape: [pictures.count, size, size, 3], data: data)
}
