// Resampling against OpenCV's float resize and PIL's nearest (goldens from make_fixtures.py).

import XCTest
@testable import Imaging

final class ResizeTests: XCTestCase {
    func testEveryMethodMatchesItsReference() throws {
        let source = Fixtures.shared.resize.source
        let image = GrayImage(width: source.width, height: source.height, pixels: source.pixels)
        let cases = Fixtures.shared.resize.cases
        XCTAssertEqual(Set(cases.map(\.method)), Set(Interpolation.allCases.map(\.rawValue)))
        for golden in cases {
            let method = try XCTUnwrap(Interpolation(rawValue: golden.method))
            let out = image.resized(width: golden.width, height: golden.height, method: method)
            let label = "\(golden.method) 13×11 → \(golden.width)×\(golden.height)"
            XCTAssertEqual(out.pixels.count, golden.pixels.count, label)
            let worst = zip(out.pixels, golden.pixels).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 2e-3, label)
        }
    }

    func testCubicWeightsAreKeysWithAMinusThreeQuarters() {
        // Hand-computed: at x = 0.5, a = −0.75 gives [−0.09375, 0.59375, 0.59375, −0.09375].
        let c = cubicCoefficients(0.5)
        for (got, want) in zip(c, [-0.09375, 0.59375, 0.59375, -0.09375] as [Float]) {
            XCTAssertEqual(got, want, accuracy: 1e-7)
        }
        XCTAssertEqual(cubicCoefficients(0), [0, 1, 0, 0])
    }

    func testSameSizeIsIdentityAndQuantizeRoundsHalfToEven() {
        let image = GrayImage(width: 2, height: 2, pixels: [0.5, 1.5, 2.5, 300])
        XCTAssertEqual(image.resized(width: 2, height: 2, method: .cubic), image)
        XCTAssertEqual(image.quantized().pixels, [0, 2, 2, 255])
    }
}
