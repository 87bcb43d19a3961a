// Contrast stretch (SPEC §2 step 6), mask thresholding and logic, and the crop box margins
// (SPEC §2 step 4), on hand-computed cases.

import XCTest
@testable import Imaging

final class MaskTests: XCTestCase {
    func testContrastStretchRampFromSPEC() {
        let ramp = (0..<100).map { UInt8($0) }
        let (out, limits) = contrastStretch(ramp)
        XCTAssertEqual(limits, StretchLimits(low: 1, high: 98))
        XCTAssertEqual(Array(out[0..<10]), [0, 0, 3, 5, 8, 11, 13, 16, 18, 21])
        XCTAssertEqual(Array(out[90..<100]), [234, 237, 239, 242, 244, 247, 250, 252, 255, 255])
    }

    func testFlatImageStretchesOverTheFullRange() {
        let (out, limits) = contrastStretch([UInt8](repeating: 77, count: 50))
        XCTAssertEqual(limits, StretchLimits(low: 0, high: 255))
        XCTAssertEqual(Set(out), [77])
    }

    func testStretchSaturatesOnePercentAtEachEnd() {
        // 200 pixels: 2 at 0, 196 at 100, 2 at 250. c(0) = 0.01 is not > 0.01, so low = 100;
        // c(100) = 0.99 ≥ 0.99, so high = 100 too → flat → 0...255.
        var pixels = [UInt8](repeating: 100, count: 200)
        pixels[0] = 0; pixels[1] = 0; pixels[198] = 250; pixels[199] = 250
        XCTAssertEqual(stretchLimits(pixels), StretchLimits(low: 0, high: 255))
        // With 3 dark pixels, c(0) = 0.015 > 0.01 → low = 0, high = 100.
        pixels[2] = 0
        XCTAssertEqual(stretchLimits(pixels), StretchLimits(low: 0, high: 100))
    }

    func testThresholdIsStrictlyAboveHalfScale() {
        let image = GrayImage(width: 4, height: 1, pixels: [0, 127, 128, 255])
        XCTAssertEqual(Mask(thresholding: image).bits, [false, false, true, true])
        let deep = GrayImage(width: 2, height: 1, bitDepth: 16, pixels: [32767, 32768])
        XCTAssertEqual(Mask(thresholding: deep).bits, [false, true])
    }

    func testAndOrAndSizeMismatch() throws {
        let a = Mask(width: 2, height: 2, bits: [true, true, false, false])
        let b = Mask(width: 2, height: 2, bits: [true, false, true, false])
        XCTAssertEqual(try a.and(b).bits, [true, false, false, false])
        XCTAssertEqual(try a.or(b).bits, [true, true, true, false])
        XCTAssertThrowsError(try a.and(Mask(width: 1, height: 4, bits: [true, true, true, true])))
    }

    func testCropBoxMarginsFollowTheCode() {
        // Lung rows 20...79 and columns 10...89 of a 100×100 mask: mv = int(0.05·60) = 3,
        // mh = int(0.05·79) = 3 (the horizontal margin has no +1).
        var bits = [Bool](repeating: false, count: 100 * 100)
        for y in 20...79 { for x in 10...89 { bits[y * 100 + x] = true } }
        let mask = Mask(width: 100, height: 100, bits: bits)
        XCTAssertEqual(mask.tightBox, PixelBox(x: 10, y: 20, width: 80, height: 60))
        XCTAssertEqual(mask.cropBox, PixelBox(x: 7, y: 17, width: 86, height: 66))
    }

    func testCropBoxMarginsDifferBetweenAxesAndClipAtTheBorder() {
        // Rows 0...39 (mv = int(0.05·40) = 2, clipped at 0) and columns 30...69
        // (mh = int(0.05·39) = 1, where a +1 would have given 2).
        var bits = [Bool](repeating: false, count: 100 * 100)
        for y in 0...39 { for x in 30...69 { bits[y * 100 + x] = true } }
        let box = Mask(width: 100, height: 100, bits: bits).cropBox
        XCTAssertEqual(box, PixelBox(x: 29, y: 0, width: 42, height: 42))
    }

    func testEmptyMaskHasNoBox() {
        XCTAssertNil(Mask(width: 3, height: 3, bits: [Bool](repeating: false, count: 9)).cropBox)
    }

    func testOutlineMarksOnlyTheBoundary() {
        var bits = [Bool](repeating: false, count: 25)
        for y in 1...3 { for x in 1...3 { bits[y * 5 + x] = true } }
        var canvas = RGBImage(width: 5, height: 5)
        canvas.drawOutline(of: Mask(width: 5, height: 5, bits: bits), color: RGB(255, 0, 0))
        XCTAssertEqual(canvas[2, 2], RGB(0, 0, 0))
        XCTAssertEqual(canvas[1, 1], RGB(255, 0, 0))
        XCTAssertEqual(canvas[0, 0], RGB(0, 0, 0))
    }
}
