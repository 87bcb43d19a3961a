// The geometric warp of [P]'s training augmentation: a rotation about the centre, an integer shift
// and an optional mirror, resampled bilinearly with the border repeated (Keras ImageDataGenerator's
// `fill_mode='nearest'`). Training draws the transforms; this file only applies them.

import Foundation

/// One warp: shifts (dx, dy) in whole pixels, an angle in radians, and whether to mirror in x.
public struct WarpTransform: Sendable, Equatable {
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

    public static let identity = WarpTransform(dx: 0, dy: 0, angle: 0, flip: false)
}

/// Resamples a size×size image through `t`: output pixel (x, y) reads the input at the point
/// rotated by t.angle about the centre and shifted by (dx, dy), after an optional mirror in x;
/// bilinear, with coordinates clamped to the border (Keras `fill_mode='nearest'`).
public func warp(_ source: [Float], size: Int, _ t: WarpTransform) -> [Float] {
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
