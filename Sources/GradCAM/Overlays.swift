// Drawing a map over its image as the paper does (SPEC §7), and measuring it against the lungs.
// The map (layer resolution) is resized bilinearly to the image, scaled to 8 bits by its maximum,
// coloured with the HOT map, cut below 0.2 of its range (the intended cut; the released code's
// comparison on the 8-bit array removed only exact zeros, `paperCut`), and added as 0.4·heat + image,
// saturated to 8 bits.

import Imaging

/// MATLAB's and OpenCV's HOT colour map at t ∈ [0, 1]: red rises over the first 3/8, green over
/// the next 3/8, blue over the last quarter.
public func hotColor(_ t: Float) -> (r: Float, g: Float, b: Float) {
    func ramp(_ x: Float) -> Float { min(max(x, 0), 1) }
    return (ramp(t / 0.375), ramp((t - 0.375) / 0.375), ramp((t - 0.75) / 0.25))
}

/// `map` (h·w, row-major) resampled bilinearly (OpenCV INTER_LINEAR) to width × height.
public func resizedMap(_ map: [Float], h: Int, w: Int, width: Int, height: Int) -> [Float] {
    GrayImage(width: w, height: h, pixels: map).resized(width: width, height: height, method: .linear).pixels
}

/// The overlay of `map` on `image`: 0.4·HOT(map) + image, saturated to 8 bits.
///
/// - Parameter paperCut: remove only exact zeros of the 8-bit heat (the released code) instead of
///   everything below 0.2 of the map's range.
public func camOverlay(_ image: GrayImage, map: [Float], h: Int, w: Int, paperCut: Bool = false) -> RGBImage {
    let gray = image.to8Bit()
    let resized = resizedMap(map, h: h, w: w, width: gray.width, height: gray.height)
    let top = resized.max() ?? 0
    var out = RGBImage(width: gray.width, height: gray.height)
    for i in 0..<resized.count {
        let heat = top > 0 ? UInt8(max(0, min(255, 255 * resized[i] / top))) : 0  // uint8(255·h), truncating as NumPy
        let cut = paperCut ? heat == 0 : heat < 51  // 0.2 of the range on the 8-bit scale
        let color = cut ? (r: Float(0), g: Float(0), b: Float(0)) : hotColor(Float(heat) / 255)
        let base = gray.pixels[i]
        func mix(_ c: Float) -> UInt8 { UInt8(max(0, min(255, (0.4 * (255 * c).rounded(.down) + base).rounded()))) }
        out.pixels[3 * i] = mix(color.r)
        out.pixels[3 * i + 1] = mix(color.g)
        out.pixels[3 * i + 2] = mix(color.b)
    }
    return out
}

/// The share of the map's positive mass inside the lung: the map resized bilinearly to the mask's
/// size, Σ over lung pixels / Σ over all; nil when the map is zero everywhere.
public func lungShare(map: [Float], h: Int, w: Int, lungs: Mask) -> Double? {
    let resized = resizedMap(map, h: h, w: w, width: lungs.width, height: lungs.height)
    var inside = 0.0, total = 0.0
    for (value, lung) in zip(resized, lungs.bits) where value > 0 {
        total += Double(value)
        if lung { inside += Double(value) }
    }
    return total > 0 ? inside / total : nil
}
