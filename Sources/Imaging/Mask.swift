// Binary lung masks: thresholding, AND/OR, and the crop box of SPEC §2 step 4.

/// A binary mask; `bits[y·width + x]` is true inside the lung.
public struct Mask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var bits: [Bool]

    /// - Precondition: `bits.count == width·height`.
    public init(width: Int, height: Int, bits: [Bool]) {
        precondition(bits.count == width * height, "mask bit count must equal width·height")
        self.width = width
        self.height = height
        self.bits = bits
    }

    /// The pixels of `image` above `fraction` of its full scale (SPEC §1.1: /255, then > 0.5).
    public init(thresholding image: GrayImage, above fraction: Float = 0.5) {
        let cut = fraction * image.maxValue
        self.init(width: image.width, height: image.height, bits: image.pixels.map { $0 > cut })
    }

    /// The mask in the file at `path`, which must be the size of its image.
    ///
    /// - Parameters:
    ///   - imagePath: the image's file, named in the error.
    /// - Throws: `ImagingError` naming `path` when it is unreadable, or `.sizeMismatch` naming both
    ///   files and both sizes.
    public init(contentsOf path: String, sizedLike image: GrayImage, imagePath: String) throws(ImagingError) {
        self.init(thresholding: try GrayImage(maskAt: path, sizedLike: image, imagePath: imagePath))
    }

    /// Probabilities in [0, 1] binarised at `threshold` (p > threshold is lung).
    public init(probabilities: [Float], width: Int, height: Int, threshold: Float = 0.5) {
        self.init(width: width, height: height, bits: probabilities.map { $0 > threshold })
    }

    /// The number of lung pixels.
    public var count: Int { bits.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// The mask as an 8-bit image, 0 outside and 255 inside.
    public var image: GrayImage {
        GrayImage(width: width, height: height, bitDepth: 8, pixels: bits.map { $0 ? 255 : 0 })
    }

    /// Pixel-wise AND ("bitwise AND" of binary masks, SPEC §2 step 3).
    ///
    /// - Throws: `ImagingError.sizeMismatch` when the sizes differ.
    public func and(_ other: Mask) throws(ImagingError) -> Mask {
        try combine(other) { $0 && $1 }
    }

    /// Pixel-wise OR (Montgomery's left and right lung masks, SPEC §0).
    ///
    /// - Throws: `ImagingError.sizeMismatch` when the sizes differ.
    public func or(_ other: Mask) throws(ImagingError) -> Mask {
        try combine(other) { $0 || $1 }
    }

    private func combine(_ other: Mask, _ op: (Bool, Bool) -> Bool) throws(ImagingError) -> Mask {
        guard other.width == width, other.height == height else {
            throw .sizeMismatch(source: "mask", expected: "\(width)×\(height)",
                                actual: "\(other.width)×\(other.height)")
        }
        return Mask(width: width, height: height, bits: zip(bits, other.bits).map(op))
    }

    /// The tight box around the lung pixels, or nil for an empty mask.
    public var tightBox: PixelBox? {
        var up = height, down = -1, left = width, right = -1
        for y in 0..<height {
            for x in 0..<width where bits[y * width + x] {
                up = min(up, y); down = max(down, y)
                left = min(left, x); right = max(right, x)
            }
        }
        guard down >= 0 else { return nil }
        return PixelBox(x: left, y: up, width: right - left + 1, height: down - up + 1)
    }

    /// The crop box of SPEC §2 step 4 ([C] `generate_bounding_box`): the tight box relaxed by
    /// mv = int(0.05·(down − up + 1)) rows and mh = int(0.05·(right − left)) columns on each side
    /// (the +1 only in the vertical margin, as in the code), clipped to the image.
    /// Nil for an empty mask: the caller then uses the whole image (SPEC §2, [I]).
    public var cropBox: PixelBox? {
        guard let tight = tightBox else { return nil }
        let up = tight.y, down = tight.y + tight.height - 1
        let left = tight.x, right = tight.x + tight.width - 1
        let mv = Int(0.05 * Double(down - up + 1))
        let mh = Int(0.05 * Double(right - left))
        let top = max(0, up - mv), bottom = min(height, down + 1 + mv)
        let start = max(0, left - mh), end = min(width, right + 1 + mh)
        return PixelBox(x: start, y: top, width: end - start, height: bottom - top)
    }
}

extension GrayImage {
    /// The mask file at `path` as a gray image, which must be the size of its image (the one check
    /// every reader of image/mask pairs makes).
    ///
    /// - Throws: `ImagingError` naming `path` when it is unreadable, or `.sizeMismatch` naming both
    ///   files and both sizes.
    public init(maskAt path: String, sizedLike image: GrayImage, imagePath: String) throws(ImagingError) {
        let file = try GrayImage(contentsOf: path)
        guard file.width == image.width, file.height == image.height else {
            throw .sizeMismatch(source: path, expected: "\(image.width)×\(image.height) (the size of its image \(imagePath))",
                                actual: "\(file.width)×\(file.height)")
        }
        self = file
    }
}
