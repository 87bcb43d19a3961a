// Contrast enhancement of SPEC §2 step 6: MATLAB's `imadjust(I)` with its default `stretchlim(I)`,
// "saturating the top and bottom 1 % of all the image pixels followed by normalizing to [0 1]".

/// The input levels `imadjust` maps to 0 and 255.
public struct StretchLimits: Sendable, Equatable, Codable {
    public var low: Int
    public var high: Int
}

/// MATLAB `stretchlim` for 8-bit data with tolerances 1 % and 99 %: over the 256-bin histogram's
/// cumulative fraction c, low = first v with c[v] > 0.01 and high = first v with c[v] ≥ 0.99;
/// a flat image (low == high) gets 0...255.
///
/// - Precondition: `pixels` is not empty.
public func stretchLimits(_ pixels: [UInt8]) -> StretchLimits {
    precondition(!pixels.isEmpty, "stretch limits of an empty image")
    var histogram = [Int](repeating: 0, count: 256)
    for v in pixels { histogram[Int(v)] += 1 }
    let total = Double(pixels.count)
    var cumulative = 0
    var low: Int?
    var high: Int?
    for v in 0..<256 {
        cumulative += histogram[v]
        let fraction = Double(cumulative) / total
        if low == nil && fraction > 0.01 { low = v }
        if high == nil && fraction >= 0.99 { high = v }
    }
    let lo = low ?? 0, hi = high ?? 255
    return lo == hi ? StretchLimits(low: 0, high: 255) : StretchLimits(low: lo, high: hi)
}

/// `imadjust(I, stretchlim(I))` on 8-bit data: out = floor(255·(clamp(v, lo, hi) − lo)/(hi − lo) + 0.5),
/// applied through a 256-entry lookup table (im2uint8 rounding).
public func contrastStretch(_ pixels: [UInt8]) -> (pixels: [UInt8], limits: StretchLimits) {
    let limits = stretchLimits(pixels)
    let lo = Double(limits.low), span = Double(limits.high - limits.low)
    let table: [UInt8] = (0..<256).map { v in
        let clamped = min(max(Double(v), lo), Double(limits.high))
        return UInt8((255 * (clamped - lo) / span + 0.5).rounded(.down))
    }
    return (pixels.map { table[Int($0)] }, limits)
}

extension GrayImage {
    /// The image as 8 bits, contrast-stretched per SPEC §2 step 6.
    public func contrastStretched() -> (image: GrayImage, limits: StretchLimits) {
        let (out, limits) = contrastStretch(bytes())
        return (GrayImage(width: width, height: height, bitDepth: 8, pixels: out.map(Float.init)), limits)
    }
}
