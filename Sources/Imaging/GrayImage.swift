// Image values used throughout the pipeline: a single-channel image that keeps 16-bit precision,
// an 8-bit RGB image for overlays and contact sheets, and the errors of everything in Imaging.
//
// Layout: row-major, y down, no padding. A `GrayImage` stores samples as Float in the file's own
// scale (0...255 for 8-bit sources, 0...65535 for 16-bit ones); Float32 holds every such integer
// exactly, and resampling keeps fractional values until `quantized()` rounds them.

/// A single-channel image with samples in `0...maxValue`.
public struct GrayImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 8 or 16: the precision of the source, which fixes `maxValue`.
    public let bitDepth: Int
    /// `width·height` samples, row-major.
    public var pixels: [Float]

    /// - Precondition: `pixels.count == width·height`, `bitDepth` is 8 or 16.
    public init(width: Int, height: Int, bitDepth: Int = 8, pixels: [Float]) {
        precondition(width > 0 && height > 0, "image dimensions must be positive")
        precondition(pixels.count == width * height, "pixel count must equal width·height")
        precondition(bitDepth == 8 || bitDepth == 16, "bit depth must be 8 or 16")
        self.width = width
        self.height = height
        self.bitDepth = bitDepth
        self.pixels = pixels
    }

    /// An image filled with one value.
    public init(width: Int, height: Int, bitDepth: Int = 8, filledWith value: Float) {
        self.init(width: width, height: height, bitDepth: bitDepth,
                  pixels: [Float](repeating: value, count: width * height))
    }

    /// 255 for 8-bit images, 65535 for 16-bit ones.
    public var maxValue: Float { bitDepth == 16 ? 65535 : 255 }

    /// The sample at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> Float {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }

    /// Samples rounded half-to-even (OpenCV's `cvRound`) and clamped to `0...maxValue`.
    public func quantized() -> GrayImage {
        let top = maxValue
        return GrayImage(width: width, height: height, bitDepth: bitDepth,
                         pixels: pixels.map { min(max($0.rounded(.toNearestOrEven), 0), top) })
    }

    /// 8-bit samples: 16-bit values are scaled by 255/65535 first; then rounded and clamped.
    public func bytes() -> [UInt8] {
        let scale: Float = bitDepth == 16 ? 255.0 / 65535.0 : 1
        return pixels.map { UInt8(min(max(($0 * scale).rounded(.toNearestOrEven), 0), 255)) }
    }

    /// The same picture as an 8-bit image (16-bit sources scaled by 255/65535).
    public func to8Bit() -> GrayImage {
        GrayImage(width: width, height: height, bitDepth: 8, pixels: bytes().map(Float.init))
    }

    /// The rectangle `box` of this image.
    ///
    /// - Precondition: `box` lies inside the image.
    public func cropped(to box: PixelBox) -> GrayImage {
        precondition(box.x >= 0 && box.y >= 0 && box.x + box.width <= width
                     && box.y + box.height <= height && box.width > 0 && box.height > 0,
                     "crop box \(box) outside a \(width)×\(height) image")
        var out = [Float]()
        out.reserveCapacity(box.width * box.height)
        for y in box.y..<(box.y + box.height) {
            let row = y * width
            out.append(contentsOf: pixels[(row + box.x)..<(row + box.x + box.width)])
        }
        return GrayImage(width: box.width, height: box.height, bitDepth: bitDepth, pixels: out)
    }
}

/// An axis-aligned rectangle in pixel coordinates: columns `x..<x+width`, rows `y..<y+height`.
public struct PixelBox: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var description: String { "(x \(x), y \(y), \(width)×\(height))" }

    /// Whether every pixel of `other` lies inside this box.
    public func contains(_ other: PixelBox) -> Bool {
        other.x >= x && other.y >= y && other.x + other.width <= x + width
            && other.y + other.height <= y + height
    }
}

/// An 8-bit RGB image, interleaved, for overlays, heat maps and contact sheets.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width·height·3` bytes, row-major, R G B.
    public var pixels: [UInt8]

    /// A canvas filled with one colour.
    public init(width: Int, height: Int, fill: RGB = RGB(0, 0, 0)) {
        precondition(width > 0 && height > 0, "image dimensions must be positive")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = fill.r
            pixels[3 * i + 1] = fill.g
            pixels[3 * i + 2] = fill.b
        }
    }

    /// A gray picture shown in RGB (16-bit sources scaled to 8 bits).
    public init(gray: GrayImage) {
        width = gray.width
        height = gray.height
        let bytes = gray.bytes()
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<bytes.count {
            pixels[3 * i] = bytes[i]
            pixels[3 * i + 1] = bytes[i]
            pixels[3 * i + 2] = bytes[i]
        }
    }

    public subscript(x: Int, y: Int) -> RGB {
        get {
            let i = 3 * (y * width + x)
            return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            let i = 3 * (y * width + x)
            pixels[i] = newValue.r
            pixels[i + 1] = newValue.g
            pixels[i + 2] = newValue.b
        }
    }
}

/// One 8-bit RGB colour.
public struct RGB: Sendable, Equatable, Hashable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }
}

/// Why an image could not be read or written. Every case names the file (or "<memory>").
public enum ImagingError: Error, Equatable, CustomStringConvertible {
    /// The bytes are not a valid image of the format: truncated, damaged, or not an image at all.
    case corrupt(source: String, message: String)
    /// A valid image of a kind the project does not read (CMYK or 12-bit JPEG, say).
    case unsupported(source: String, message: String)
    /// The file could not be read or written.
    case io(path: String, message: String)
    /// Two images that must agree in size do not.
    case sizeMismatch(source: String, expected: String, actual: String)

    public var description: String {
        switch self {
        case let .corrupt(source, message): "\(source): corrupt or unreadable image: \(message)"
        case let .unsupported(source, message): "\(source): unsupported image: \(message)"
        case let .io(path, message): "\(path): \(message)"
        case let .sizeMismatch(source, expected, actual):
            "\(source): size \(actual), expected \(expected)"
        }
    }
}
