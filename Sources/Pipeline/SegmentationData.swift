// The U-Net's input (SPEC §1.1): each image resampled to size×size and kept as 8-bit gray, each
// mask area-resampled to the same size and thresholded at ½ to {0, 1}. Batches are [B,S,S,3]
// (gray replicated, /255) and [B,S,S,1]. Training batches are augmented per [P]: a random integer
// shift of ±2 px, a horizontal flip and a rotation in ±5°, identical on image and mask (bilinear,
// nearest fill as Keras' ImageDataGenerator), the mask re-thresholded at ½ afterwards.

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

    /// One draw: shifts (dx, dy) in whole pixels, an angle in radians, and whether to flip.
    public struct Transform: Sendable, Equatable {
        public var dx: Int
        public var dy: Int
        public var angle: Double
        public var flip: Bool

        public init(dx: Int, dy: Int, angle: Double, flip: Bool) {
            self.dx = dx
            self.dy = dy
            self.angle = angle
            self.flip = flip
        }

        public static let identity = Transform(dx: 0, dy: 0, angle: 0, flip: false)
    }

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

/// Resamples a size×size image through `t`: output pixel (x, y) reads the input at the point
/// rotated by t.angle about the centre and shifted by (dx, dy), after an optional mirror in x;
/// bilinear, with coordinates clamped to the border (Keras `fill_mode='nearest'`).
public func warp(_ source: [Float], size: Int, _ t: Augmentation.Transform) -> [Float] {
    if t == .identity { return source }
    let c = Double(size - 1) / 2, cosA = cos(t.angle), sinA = sin(t.angle)
    let limit = Double(size - 1)
    var out = [Float](repeating: 0, count: size * size)
    for y in 0..<size {
        for x in 0..<size {
            let ox = Double(t.flip ? size - 1 - x : x) - c, oy = Double(y) - c
            let sx = min(max(cosA * ox - sinA * oy + c - Double(t.dx), 0), limit)
            let sy = min(max(sinA * ox + cosA * oy + c - Double(t.dy), 0), limit)
            let x0 = Int(sx), y0 = Int(sy)
            let x1 = min(x0 + 1, size - 1), y1 = min(y0 + 1, size - 1)
            let fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
            let top = source[y0 * size + x0] * (1 - fx) + source[y0 * size + x1] * fx
            let bottom = source[y1 * size + x0] * (1 - fx) + source[y1 * size + x1] * fx
            out[y * size + x] = top * (1 - fy) + bottom * fy
        }
    }
    return out
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
                let mask = try GrayImage(contentsOf: maskPath)
                guard mask.width == image.width, mask.height == image.height else {
                    throw .sizeMismatch(source: maskPath, expected: "\(image.width)×\(image.height) (the size of \(dataset.imagePath(row)))",
                                        actual: "\(mask.width)×\(mask.height)")
                }
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
func networkInput(_ pictures: [[Float]], size: Int) -> Tensor {
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
