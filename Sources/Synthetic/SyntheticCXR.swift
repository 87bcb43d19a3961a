// The built-in synthetic chest X-ray generator (DESIGN §6): seeded phantoms with exact lung masks,
// written in the Kermany layout (three classes, JPEG) and the Montgomery layout (PNG, left and right
// lung masks), so the demo and the tests go through the same ingestion code as real data.
//
// A phantom is drawn in normalised coordinates (x, y in about [−1, 1], y down) and then placed
// with a random tilt, shift and scale: body outline, two lung fields (superellipses), mediastinum,
// heart shadow, spine, ribs and clavicles, smooth vascular texture, a random tone curve and noise.
// Classes: normal = clear lungs (sometimes a little denser overall); bacterial = a dense lobar
// consolidation, mostly in one lung; viral = bilateral perihilar haze with a reticular texture.
// Opacities, sizes and noise vary enough that a small network must learn the patterns rather
// than a brightness threshold. The lung mask excludes the heart (the Montgomery convention).

import Datasets
import Foundation
import Imaging
import SeededRandom

/// The generator's output folder layout and its parameters file.
public enum SyntheticCXR {
    /// Bumped whenever the drawing changes, so stale generated folders are not reused.
    public static let generatorVersion = 1

    /// One rendered phantom: the image and the lungs on the image's left and right sides.
    public struct Phantom {
        public var image: GrayImage
        /// The lung on the image's left (the patient's right).
        public var imageLeftLung: Mask
        /// The lung on the image's right (the patient's left).
        public var imageRightLung: Mask

        /// Both lungs.
        public var lungs: Mask {
            Mask(width: image.width, height: image.height,
                 bits: zip(imageLeftLung.bits, imageRightLung.bits).map { $0 || $1 })
        }
    }

    /// Draws one phantom of class `label`.
    public static func render(label: CXRClass, width: Int, height: Int,
                              generator: inout SplitMix64) -> Phantom
    {
        var g = generator
        defer { generator = g }
        let aspect = Double(height) / Double(width)
        // Placement.
        let tilt = g.uniform(-6, 6) * Double.pi / 180
        let shiftX = g.uniform(-0.06, 0.06), shiftY = g.uniform(-0.05, 0.05)
        let scale = g.uniform(0.88, 1.04)
        // Anatomy.
        let background = g.uniform(0.02, 0.08)
        let tissue = g.uniform(0.40, 0.55)
        let lungDensity = g.uniform(0.10, 0.18) + (label == .normal && g.unit() < 0.35 ? g.uniform(0.0, 0.06) : 0)
        let lungs = [
            Lung(cx: -0.40 * g.uniform(0.94, 1.06), cy: g.uniform(-0.06, 0.02),
                 rx: 0.27 * g.uniform(0.9, 1.1), ry: 0.58 * g.uniform(0.9, 1.08), power: g.uniform(2.1, 2.8)),
            Lung(cx: 0.38 * g.uniform(0.94, 1.06), cy: g.uniform(-0.05, 0.03),
                 rx: 0.25 * g.uniform(0.9, 1.1), ry: 0.55 * g.uniform(0.9, 1.08), power: g.uniform(2.1, 2.8)),
        ]
        let heart = (cx: g.uniform(0.08, 0.16), cy: g.uniform(0.26, 0.36),
                     rx: g.uniform(0.30, 0.38), ry: g.uniform(0.22, 0.30))
        let ribPhase = g.uniform(-0.03, 0.03), ribGap = g.uniform(0.115, 0.14)
        let vessels = ValueNoise(cells: 24, generator: &g)
        let texture = ValueNoise(cells: 48, generator: &g)
        // Pathology.
        var blobs: [Blob] = []
        var haze = 0.0, reticular = 0.0
        switch label {
        case .bacterial:
            let side = g.index(below: 2)
            blobs.append(Blob(in: lungs[side], opacity: g.uniform(0.18, 0.42), size: g.uniform(0.7, 1.0), generator: &g))
            if g.unit() < 0.25 {
                blobs.append(Blob(in: lungs[1 - side], opacity: g.uniform(0.08, 0.18), size: g.uniform(0.4, 0.6), generator: &g))
            }
        case .viral:
            haze = g.uniform(0.07, 0.17)
            reticular = g.uniform(0.04, 0.10)
        case .normal:
            break
        }
        let gamma = g.uniform(0.8, 1.25), gain = g.uniform(0.9, 1.1), offset = g.uniform(-0.04, 0.04)
        let noise = g.uniform(0.006, 0.03)

        var pixels = [Float](repeating: 0, count: width * height)
        var left = [Bool](repeating: false, count: width * height)
        var right = [Bool](repeating: false, count: width * height)
        let cosT = cos(tilt), sinT = sin(tilt)
        for py in 0..<height {
            for px in 0..<width {
                // Image → phantom coordinates (inverse placement).
                let ux = (Double(px) + 0.5) / Double(width) * 2 - 1 - shiftX
                let uy = ((Double(py) + 0.5) / Double(height) * 2 - 1) * aspect - shiftY
                let x = (cosT * ux + sinT * uy) / scale
                let y = (-sinT * ux + cosT * uy) / scale
                let i = py * width + px

                let body = smoothInside(pow(x / 1.0, 2) + pow((y - 0.08) / 1.2, 2), edge: 0.05)
                var v = background + (tissue - background) * body
                // Mediastinum and spine.
                v += 0.16 * body * smoothInside(abs(x - 0.02) / 0.12, edge: 0.15) * (y < 0.5 ? 1 : 0.6)
                v += 0.06 * body * smoothInside(abs(x) / 0.05, edge: 0.2)
                // Lungs (dark) with vessels.
                var lungLevel = 0.0
                for (side, lung) in lungs.enumerated() {
                    let q = lung.level(x: x, y: y)
                    let inside = smoothInside(q, edge: 0.06)
                    lungLevel = max(lungLevel, inside)
                    let hard = q < 1
                    if hard { if side == 0 { left[i] = true } else { right[i] = true } }
                }
                let inHeartLevel = pow((x - heart.cx) / heart.rx, 2) + pow((y - heart.cy) / heart.ry, 2)
                let heartShadow = smoothInside(inHeartLevel, edge: 0.08)
                if inHeartLevel < 1 { left[i] = false; right[i] = false }
                let lungTone = lungDensity + 0.05 * (vessels.sample(x, y) - 0.5)
                    * (1 - min(1, abs(x) * 1.3))  // vessels fade toward the periphery
                v = v * (1 - lungLevel * (1 - heartShadow)) + lungTone * lungLevel * (1 - heartShadow)
                v += 0.12 * heartShadow * body
                // Ribs and clavicles, strongest over the lungs.
                let rib = ribs(x: x, y: y, phase: ribPhase, gap: ribGap)
                v += (0.035 + 0.05 * lungLevel) * rib * body
                v += 0.10 * body * clavicle(x: x, y: y)
                // Pathology, inside the lungs only.
                var opacity = 0.0
                for blob in blobs { opacity += blob.opacity(x: x, y: y, texture: texture) }
                if haze > 0 {
                    for lung in lungs {
                        let hx = lung.cx * 0.55, hy = lung.cy + 0.08
                        let d2 = (pow(x - hx, 2) + pow(y - hy, 2)) / 0.18
                        opacity += haze * exp(-d2)
                    }
                    let ridge = 1 - abs(2 * texture.sample(x * 2.3, y * 2.3) - 1)
                    opacity += reticular * pow(ridge, 3)
                }
                v += opacity * lungLevel * (1 - heartShadow)
                // Tone curve and noise.
                v = gain * pow(min(max(v, 0), 1), gamma) + offset + noise * g.normal()
                pixels[i] = Float((min(max(v, 0), 1) * 255).rounded())
            }
        }
        return Phantom(image: GrayImage(width: width, height: height, bitDepth: 8, pixels: pixels),
                       imageLeftLung: Mask(width: width, height: height, bits: left),
                       imageRightLung: Mask(width: width, height: height, bits: right))
    }
}

/// A lung field: the superellipse |dx/rx|^p + |dy/ry|^p < 1.
private struct Lung {
    var cx, cy, rx, ry, power: Double

    func level(x: Double, y: Double) -> Double {
        pow(abs(x - cx) / rx, power) + pow(abs(y - cy) / ry, power)
    }
}

/// A consolidation: a rotated ellipse with a soft edge and mottled density.
private struct Blob {
    var cx, cy, rx, ry, angle, strength: Double

    init(in lung: Lung, opacity: Double, size: Double, generator g: inout SplitMix64) {
        // Mostly the middle and lower zones, as lobar pneumonia usually is.
        cx = lung.cx + g.uniform(-0.5, 0.5) * lung.rx
        cy = lung.cy + g.uniform(-0.35, 0.6) * lung.ry
        rx = size * g.uniform(0.10, 0.20)
        ry = size * g.uniform(0.12, 0.26)
        angle = g.uniform(0, Double.pi)
        strength = opacity
    }

    func opacity(x: Double, y: Double, texture: ValueNoise) -> Double {
        let dx = x - cx, dy = y - cy
        let u = (cos(angle) * dx + sin(angle) * dy) / rx
        let w = (-sin(angle) * dx + cos(angle) * dy) / ry
        let inside = smoothInside(u * u + w * w, edge: 0.35)
        return strength * inside * (0.75 + 0.5 * texture.sample(x * 1.7, y * 1.7))
    }
}

/// Smooth value noise on a `cells`×`cells` lattice over [−1.5, 1.5]², values in [0, 1].
private struct ValueNoise {
    let cells: Int
    let values: [Double]

    init(cells: Int, generator g: inout SplitMix64) {
        self.cells = cells
        values = (0..<((cells + 1) * (cells + 1))).map { _ in g.unit() }
    }

    func sample(_ x: Double, _ y: Double) -> Double {
        let fx = min(max((x + 1.5) / 3, 0), 0.999999) * Double(cells)
        let fy = min(max((y + 1.5) / 3, 0), 0.999999) * Double(cells)
        let ix = Int(fx), iy = Int(fy)
        let tx = smooth(fx - Double(ix)), ty = smooth(fy - Double(iy))
        let row = cells + 1
        let a = values[iy * row + ix], b = values[iy * row + ix + 1]
        let c = values[(iy + 1) * row + ix], d = values[(iy + 1) * row + ix + 1]
        return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty
    }
}

/// 1 well inside a level set (level < 1 − edge), 0 outside (level > 1 + edge), smooth between.
private func smoothInside(_ level: Double, edge: Double) -> Double {
    1 - smooth(min(max((level - (1 - edge)) / (2 * edge), 0), 1))
}

private func smooth(_ t: Double) -> Double { t * t * (3 - 2 * t) }

/// Posterior ribs: arcs that sag toward the sides, `gap` apart.
private func ribs(x: Double, y: Double, phase: Double, gap: Double) -> Double {
    let curve = y - 0.22 * pow(abs(x) - 0.1, 2) - phase
    let position = (curve + 0.75) / gap
    guard position > 0, position < 9 else { return 0 }
    let d = abs(position - position.rounded()) * gap
    return smoothInside(d / 0.022, edge: 0.3)
}

/// Clavicles: two bands from the top of the mediastinum out to the shoulders.
private func clavicle(x: Double, y: Double) -> Double {
    let ax = abs(x)
    guard ax > 0.12, ax < 0.8 else { return 0 }
    let centre = -0.66 - 0.12 * (ax - 0.12)
    return smoothInside(abs(y - centre) / 0.03, edge: 0.3)
}
