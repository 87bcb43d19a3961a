// Decoding every PNG/JPEG kind against values PIL computed (Fixtures/make_fixtures.py), round
// trips of every encoder, and the errors of corrupt, truncated, empty and CMYK files.

import Artifacts
import Foundation
import XCTest
@testable import Imaging

struct Fixtures: Decodable {
    struct Decoded: Decodable {
        let width: Int, height: Int, channels: Int, bitDepth: Int
        let gray: [Double]
    }
    struct Plane: Decodable {
        let width: Int, height: Int
        let pixels: [Float]
    }
    struct ResizeCase: Decodable {
        let method: String, width: Int, height: Int
        let pixels: [Float]
    }
    struct Resize: Decodable {
        let source: Plane
        let cases: [ResizeCase]
    }
    let decode: [String: Decoded]
    let resize: Resize

    static func url(_ name: String) -> URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
    }

    static let shared: Fixtures = {
        let data = try! Data(contentsOf: url("expected.json"))
        return try! JSONDecoder().decode(Fixtures.self, from: data)
    }()
}

final class CodecTests: XCTestCase {
    func testEveryFixtureDecodesToPILsGray() throws {
        XCTAssertEqual(Fixtures.shared.decode.count, 9)
        for (name, expected) in Fixtures.shared.decode.sorted(by: { $0.key < $1.key }) {
            let bytes = try Array(Data(contentsOf: Fixtures.url(name)))
            let (image, info) = try GrayImage.decode(bytes, source: name)
            XCTAssertEqual(image.width, expected.width, name)
            XCTAssertEqual(image.height, expected.height, name)
            XCTAssertEqual(info.channels, expected.channels, name)
            XCTAssertEqual(image.bitDepth, expected.bitDepth, name)
            // PNG is lossless: the luma must match to float rounding. JPEG decoders may differ
            // by one level between libjpeg builds.
            let tolerance = name.hasSuffix(".jpeg") ? 1.0 : 1e-3
            for (i, (got, want)) in zip(image.pixels, expected.gray).enumerated() {
                XCTAssertEqual(Double(got), want, accuracy: tolerance, "\(name) pixel \(i)")
            }
        }
    }

    func testGrayStoredAsRGBStaysExact() throws {
        let bytes = try Array(Data(contentsOf: Fixtures.url("rgb.png")))
        let image = try GrayImage.decode(bytes).image
        XCTAssertEqual(Array(image.pixels.prefix(3)), [10, 200, 255])
    }

    func testCMYKJPEGIsAClearUnsupportedError() throws {
        let bytes = try Array(Data(contentsOf: Fixtures.url("cmyk.jpeg")))
        XCTAssertThrowsError(try GrayImage.decode(bytes, source: "scan.jpeg")) { error in
            guard case let ImagingError.unsupported(source, message) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "scan.jpeg")
            XCTAssertTrue(message.contains("CMYK"), message)
        }
    }

    func testTruncatedJPEGIsCorruptNotGray() throws {
        var g: UInt64 = 7
        let pixels: [Float] = (0..<(64 * 64)).map { _ in g = g &* 6364136223846793005 &+ 1; return Float(g >> 56) }
        let bytes = try GrayImage(width: 64, height: 64, pixels: pixels).jpegData()
        XCTAssertNoThrow(try GrayImage.decode(bytes))
        XCTAssertThrowsError(try GrayImage.decode(Array(bytes.prefix(bytes.count / 2)), source: "cut.jpeg")) { error in
            guard case let ImagingError.corrupt(source, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "cut.jpeg")
        }
    }

    func testTruncatedDamagedEmptyAndForeignFilesAreCorrupt() throws {
        let png = try GrayImage(width: 16, height: 16, pixels: (0..<256).map(Float.init)).pngData()
        var damaged = png
        damaged[damaged.count / 2] ^= 0xFF  // breaks the IDAT CRC
        let cases: [(String, [UInt8])] = [
            ("cut.png", Array(png.prefix(png.count - 20))),
            ("damaged.png", damaged),
            ("empty.png", []),
            ("notes.txt", Array("not an image".utf8)),
        ]
        for (name, bytes) in cases {
            XCTAssertThrowsError(try GrayImage.decode(bytes, source: name), name) { error in
                guard case let ImagingError.corrupt(source, _) = error else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(source, name)
                XCTAssertTrue("\(error)".hasPrefix(name), "\(error)")
            }
        }
    }

    func testEncodersRoundTrip() throws {
        let ramp = (0..<(20 * 10)).map { Float($0 % 256) }
        let gray8 = GrayImage(width: 20, height: 10, pixels: ramp)
        XCTAssertEqual(try GrayImage.decode(gray8.pngData()).image, gray8)

        let deep = GrayImage(width: 20, height: 10, bitDepth: 16, pixels: ramp.map { $0 * 257 + 1 })
        let decodedDeep = try GrayImage.decode(deep.pngData())
        XCTAssertEqual(decodedDeep.image, deep)
        XCTAssertEqual(decodedDeep.info.bitDepth, 16)

        var rgb = RGBImage(width: 4, height: 3, fill: RGB(10, 20, 30))
        rgb[1, 2] = RGB(255, 0, 128)
        let (decodedRGB, info) = try GrayImage.decode(rgb.pngData())
        XCTAssertEqual(info.channels, 3)
        XCTAssertEqual(Double(decodedRGB[1, 2]), 0.299 * 255 + 0.114 * 128, accuracy: 1e-3)
        XCTAssertEqual(Double(decodedRGB[0, 0]), 0.299 * 10 + 0.587 * 20 + 0.114 * 30, accuracy: 1e-3)

        let levels: [Float] = (0..<1024).map { (i: Int) -> Float in Float(4 * (i % 32) + 2 * (i / 32)) }
        let smooth = GrayImage(width: 32, height: 32, pixels: levels)
        let jpeg = try GrayImage.decode(smooth.jpegData(quality: 100)).image
        XCTAssertLessThan(zip(jpeg.pixels, smooth.pixels).map { abs($0 - $1) }.max()!, 3)
    }

    func testRastersAboveTheLimitAreRefusedFromTheirHeader() throws {
        // A blank 3000 × 3000 PNG compresses to a few KB but decodes to 9 MB.
        let png = try GrayImage(width: 3000, height: 3000, filledWith: 0).pngData()
        XCTAssertLessThan(png.count, 100_000)
        XCTAssertThrowsError(try GrayImage.decode(png, source: "big.png", maxBytes: 1_000_000)) { error in
            guard case let .unsupported(source, message)? = error as? ImagingError else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "big.png")
            XCTAssertTrue(message.contains("3000 x 3000") && message.contains("9000000 bytes") && message.contains("1000000"), message)
        }
        XCTAssertEqual(try GrayImage.decode(png, source: "big.png", maxBytes: 9_000_000).image.width, 3000)
        let jpeg = try GrayImage(width: 2000, height: 1000, filledWith: 0).jpegData()
        XCTAssertThrowsError(try GrayImage.decode(jpeg, source: "big.jpeg", maxBytes: 1_999_999)) { error in
            XCTAssertTrue("\(error)".contains("2000 x 1000"), "\(error)")
        }
        XCTAssertEqual(GrayImage.decodeLimit, 256 << 20)
    }

    func testAtomicWriteLeavesNoTemporaryFile() throws {
        let folder = NSTemporaryDirectory() + "atomic-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try writeFileAtomically([1, 2, 3], to: folder + "/sub/file.bin")
        try writeFileAtomically([4, 5], to: folder + "/sub/file.bin")
        XCTAssertEqual(try readFile(folder + "/sub/file.bin"), [4, 5])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder + "/sub"), ["file.bin"])
        XCTAssertThrowsError(try readFile(folder + "/missing.png")) { error in
            XCTAssertEqual(error as? FileError, FileError(path: folder + "/missing.png", message: "no such file"))
        }
        XCTAssertThrowsError(try GrayImage(contentsOf: folder + "/missing.png")) { error in
            XCTAssertEqual(error as? ImagingError, .io(path: folder + "/missing.png", message: "no such file"))
        }
    }

    func testReadFileReturnsEveryByteOfFilesOfAnySize() throws {
        let folder = NSTemporaryDirectory() + "read-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Around the 64 KiB pieces a file is read in past its reported size.
        for count in [0, 1, 4095, 65_536, 65_537, 300_001] {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
            try writeFileAtomically(bytes, to: folder + "/\(count).bin")
            XCTAssertEqual(try readFile(folder + "/\(count).bin"), bytes, "\(count) bytes")
        }
        // A file whose size the system reports as 0 but which has content.
        let status = try readFile("/proc/self/status")
        XCTAssertTrue(String(decoding: status, as: UTF8.self).contains("\nPid:"), "read \(status.count) bytes of /proc/self/status")
        XCTAssertThrowsError(try readFile(folder)) { error in
            XCTAssertEqual((error as? FileError)?.path, folder)
            XCTAssertTrue((error as? FileError)?.message.hasPrefix("read failed") ?? false, "\(error)")
        }
    }
}
