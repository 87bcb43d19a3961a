// Decoding PNG/JPEG into a `GrayImage`, and encoding gray, RGB and 16-bit gray images.
//
// The C side (CCodecs) turns libpng/libjpeg longjmp errors into status codes, so a corrupt file
// becomes a thrown `ImagingError` naming the file, never a crash. The format is recognised by its
// signature, not by the file name.

import Artifacts
import CCodecs
import Foundation

/// Image file formats the pipeline reads and writes.
public enum ImageFormat: String, Sendable {
    case png
    case jpeg

    /// The format whose signature starts `bytes`, or nil.
    public static func sniff(_ bytes: [UInt8]) -> ImageFormat? {
        if bytes.count >= 8, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return .png
        }
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        return nil
    }
}

/// What a decoded file held before conversion to gray.
public struct DecodedInfo: Sendable, Equatable {
    public let format: ImageFormat
    /// 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palettes arrive as RGB).
    public let channels: Int
    public let bitDepth: Int
}

extension GrayImage {
    /// The largest decoded raster (width × height × channels × bytes per sample) any image may have:
    /// 256 MiB, an 8192 × 8192 RGB image or a 16-bit gray one with alpha — above the largest chest
    /// X-ray; `CXR_MAX_IMAGE_BYTES` sets another. A 400 KB PNG can declare 20000 × 20000 pixels, so
    /// the check comes from the header, before decoding.
    public static let decodeLimit: Int = ProcessInfo.processInfo.environment["CXR_MAX_IMAGE_BYTES"].flatMap { Int($0) } ?? (256 << 20)

    /// Decodes a PNG or JPEG held in memory.
    ///
    /// Colour becomes gray by ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B (the weights of
    /// OpenCV's and PIL's gray conversion), kept as a fraction; a pixel with R = G = B keeps its
    /// value exactly. Alpha is ignored. 16-bit PNGs keep all 16 bits.
    ///
    /// - Parameter source: the name used in error messages (usually the file path).
    /// - Throws: `ImagingError.corrupt` / `.unsupported` naming `source`.
    /// - Parameter maxBytes: the largest decoded raster accepted, checked from the file's header
    ///   before any pixel is allocated (`decodeLimit` by default).
    public static func decode(_ bytes: [UInt8], source: String = "<memory>", maxBytes: Int = decodeLimit) throws(ImagingError)
        -> (image: GrayImage, info: DecodedInfo)
    {
        if bytes.isEmpty { throw .corrupt(source: source, message: "the file is empty (0 bytes)") }
        guard let format = ImageFormat.sniff(bytes) else {
            throw .corrupt(source: source, message: "not a PNG or JPEG file (unknown signature)")
        }
        var raster = cxr_raster()
        var message = [CChar](repeating: 0, count: Int(CXR_MESSAGE_SIZE))
        let status = bytes.withUnsafeBufferPointer { buffer in
            message.withUnsafeMutableBufferPointer { text in
                switch format {
                case .png: cxr_png_decode(buffer.baseAddress, buffer.count, maxBytes, &raster, text.baseAddress)
                case .jpeg: cxr_jpeg_decode(buffer.baseAddress, buffer.count, maxBytes, &raster, text.baseAddress)
                }
            }
        }
        defer { cxr_free(raster.pixels) }
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch Int(status) {
        case Int(CXR_OK): break
        case Int(CXR_UNSUPPORTED): throw .unsupported(source: source, message: text)
        case Int(CXR_NO_MEMORY): throw .corrupt(source: source, message: "out of memory while decoding")
        case Int(CXR_TOO_LARGE):
            throw .unsupported(source: source, message: "too large to decode: \(text) (CXR_MAX_IMAGE_BYTES raises the limit)")
        default: throw .corrupt(source: source, message: "\(format.rawValue.uppercased()): \(text)")
        }
        let width = Int(raster.width), height = Int(raster.height)
        let channels = Int(raster.channels), depth = Int(raster.bit_depth)
        let count = width * height
        // One loop per channel count, over raw pointers, so the common gray case vectorises.
        func convert<T: BinaryInteger>(_ samples: UnsafePointer<T>) -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { gray, initialized in
                let gray = gray.baseAddress!
                switch channels {
                case 1: for i in 0..<count { gray[i] = Float(samples[i]) }
                case 2: for i in 0..<count { gray[i] = Float(samples[2 * i]) }
                default:
                    for i in 0..<count {
                        let base = i * channels
                        let r = samples[base], g = samples[base + 1], b = samples[base + 2]
                        gray[i] = (r == g && g == b)
                            ? Float(r) : 0.299 * Float(r) + 0.587 * Float(g) + 0.114 * Float(b)
                    }
                }
                initialized = count
            }
        }
        let gray = depth == 16 ? convert(raster.pixels.assumingMemoryBound(to: UInt16.self))
            : convert(raster.pixels.assumingMemoryBound(to: UInt8.self))
        let image = GrayImage(width: width, height: height, bitDepth: depth == 16 ? 16 : 8, pixels: gray)
        return (image, DecodedInfo(format: format, channels: channels, bitDepth: depth))
    }

    /// Reads and decodes the image file at `path`.
    ///
    /// - Throws: `ImagingError` naming `path`.
    public init(contentsOf path: String) throws(ImagingError) {
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { throw .io(path: error.path, message: error.message) }
        self = try GrayImage.decode(bytes, source: path).image
    }

    /// PNG bytes: 8-bit gray for 8-bit images, 16-bit gray for 16-bit ones (samples quantized).
    public func pngData() throws(ImagingError) -> [UInt8] {
        if bitDepth == 16 {
            let samples = quantized().pixels.map { UInt16($0) }
            return try encode(samples, width: width, height: height, channels: 1, bitDepth: 16)
        }
        return try encode(bytes(), width: width, height: height, channels: 1, bitDepth: 8)
    }

    /// 8-bit gray JPEG bytes at `quality` (1...100).
    public func jpegData(quality: Int = 95) throws(ImagingError) -> [UInt8] {
        try encodeJPEG(bytes(), width: width, height: height, channels: 1, quality: quality)
    }
}

extension RGBImage {
    /// 8-bit RGB PNG bytes.
    public func pngData() throws(ImagingError) -> [UInt8] {
        try encode(pixels, width: width, height: height, channels: 3, bitDepth: 8)
    }

    /// 8-bit RGB JPEG bytes at `quality` (1...100).
    public func jpegData(quality: Int = 95) throws(ImagingError) -> [UInt8] {
        try encodeJPEG(pixels, width: width, height: height, channels: 3, quality: quality)
    }
}

private func encode<T>(_ samples: [T], width: Int, height: Int, channels: Int, bitDepth: Int)
    throws(ImagingError) -> [UInt8]
{
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: Int(CXR_MESSAGE_SIZE))
    let status = samples.withUnsafeBytes { raw in
        message.withUnsafeMutableBufferPointer { text in
            cxr_png_encode(raw.baseAddress, Int32(width), Int32(height), Int32(channels),
                           Int32(bitDepth), &out, &size, text.baseAddress)
        }
    }
    return try collect(status: status, out: out, size: size, message: message, format: "PNG")
}

private func encodeJPEG(_ samples: [UInt8], width: Int, height: Int, channels: Int, quality: Int)
    throws(ImagingError) -> [UInt8]
{
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: Int(CXR_MESSAGE_SIZE))
    let status = samples.withUnsafeBufferPointer { buffer in
        message.withUnsafeMutableBufferPointer { text in
            cxr_jpeg_encode(buffer.baseAddress, Int32(width), Int32(height), Int32(channels),
                            Int32(min(max(quality, 1), 100)), &out, &size, text.baseAddress)
        }
    }
    return try collect(status: status, out: out, size: size, message: message, format: "JPEG")
}

private func collect(status: Int32, out: UnsafeMutablePointer<UInt8>?, size: Int,
                     message: [CChar], format: String) throws(ImagingError) -> [UInt8]
{
    defer { cxr_free(out) }
    guard status == CXR_OK, let out else {
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw .unsupported(source: "<\(format) encoder>", message: text)
    }
    return Array(UnsafeBufferPointer(start: out, count: size))
}
