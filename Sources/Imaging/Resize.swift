// Resampling that matches OpenCV's `cv::resize` on float images, and PIL's nearest neighbour
// (what Keras `load_img` uses).
//
// All methods are separable: a horizontal pass over every source row, then a vertical pass, each
// driven by a table of (source index, weight) taps per output coordinate, the order OpenCV uses.
// Coordinates follow OpenCV: scale = 1 / (dst/src) in Double, half-pixel centres for linear and
// cubic, replicated borders. Results stay fractional; call `quantized()` to round like OpenCV's
// saturate_cast. (OpenCV computes 8-bit linear/cubic resizes in 11-bit fixed point, so its uint8
// outputs can differ from rounded float results by 1 grey level.)

/// Interpolation methods, named after their OpenCV flags.
public enum Interpolation: String, Sendable, CaseIterable, Codable {
    /// `INTER_NEAREST`: source index floor(dst·scale), no half-pixel shift.
    case nearest
    /// PIL `Image.NEAREST` (Keras `load_img`): source index floor((dst + 0.5)·scale).
    case nearestPIL = "nearest-pil"
    /// `INTER_LINEAR`: bilinear with half-pixel centres and replicated border.
    case linear
    /// `INTER_CUBIC`: Keys cubic with a = −0.75, half-pixel centres, replicated border.
    case cubic
    /// `INTER_AREA`: exact pixel-area averaging when shrinking; OpenCV's area-mode bilinear
    /// weights when enlarging in either direction.
    case area

    /// Decodes a name; an unknown one is an error that lists the known ones.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let value = Self(rawValue: name) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(name)' must be one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = value
    }
}

extension GrayImage {
    /// This image resampled to `width`×`height` by `method`.
    ///
    /// - Precondition: `width` and `height` are positive.
    public func resized(width newWidth: Int, height newHeight: Int,
                        method: Interpolation) -> GrayImage
    {
        precondition(newWidth > 0 && newHeight > 0, "target size must be positive")
        if newWidth == width && newHeight == height { return self }
        let (horizontal, vertical): (ResampleTable, ResampleTable)
        if method == .area {
            let shrinking = Double(width) / Double(newWidth) >= 1
                && Double(height) / Double(newHeight) >= 1
            horizontal = shrinking ? .areaAverage(source: width, target: newWidth)
                : .areaEnlarge(source: width, target: newWidth)
            vertical = shrinking ? .areaAverage(source: height, target: newHeight)
                : .areaEnlarge(source: height, target: newHeight)
        } else {
            horizontal = ResampleTable(method, source: width, target: newWidth)
            vertical = ResampleTable(method, source: height, target: newHeight)
        }
        // Horizontal pass: height × newWidth, over the source rows the vertical taps read.
        var needed = [Bool](repeating: false, count: height)
        for index in vertical.indices { needed[index] = true }
        var rows = [Float](repeating: 0, count: height * newWidth)
        pixels.withUnsafeBufferPointer { src in rows.withUnsafeMutableBufferPointer { dst in
            horizontal.withPointers { starts, indices, weights in
                for y in 0..<height where needed[y] {
                    let s = src.baseAddress! + y * width
                    let d = dst.baseAddress! + y * newWidth
                    for x in 0..<newWidth {
                        var sum: Float = 0
                        for t in starts[x]..<starts[x + 1] { sum += s[indices[t]] * weights[t] }
                        d[x] = sum
                    }
                }
            }
        } }
        // Vertical pass: newHeight × newWidth, each output row written by its first tap.
        let out = [Float](unsafeUninitializedCapacity: newHeight * newWidth) { dst, initialized in
            rows.withUnsafeBufferPointer { src in
                vertical.withPointers { starts, indices, weights in
                    for y in 0..<newHeight {
                        let d = dst.baseAddress! + y * newWidth
                        for t in starts[y]..<starts[y + 1] {
                            let s = src.baseAddress! + indices[t] * newWidth
                            let w = weights[t]
                            if t == starts[y] {
                                for x in 0..<newWidth { d[x] = s[x] * w }
                            } else {
                                for x in 0..<newWidth { d[x] += s[x] * w }
                            }
                        }
                        if starts[y] == starts[y + 1] { d.initialize(repeating: 0, count: newWidth) }
                    }
                }
            }
            initialized = newHeight * newWidth
        }
        return GrayImage(width: newWidth, height: newHeight, bitDepth: bitDepth, pixels: out)
    }
}

/// For each output coordinate, the source indices and weights it sums (compressed rows).
struct ResampleTable {
    /// Taps of output `i` are `starts[i]..<starts[i+1]`.
    var starts: [Int] = [0]
    var indices: [Int] = []
    var weights: [Float] = []

    /// The three arrays as pointers, for the resampling loops (no bounds checks per tap).
    func withPointers<R>(_ body: (UnsafePointer<Int>, UnsafePointer<Int>, UnsafePointer<Float>) -> R) -> R {
        starts.withUnsafeBufferPointer { s in indices.withUnsafeBufferPointer { i in weights.withUnsafeBufferPointer { w in
            body(s.baseAddress!, i.baseAddress ?? UnsafePointer(bitPattern: 8)!, w.baseAddress ?? UnsafePointer(bitPattern: 8)!)
        } } }
    }

    private mutating func append(_ taps: [(Int, Float)]) {
        for (index, weight) in taps {
            indices.append(index)
            weights.append(weight)
        }
        starts.append(indices.count)
    }

    /// OpenCV's scale: the inverse of the double-precision ratio target/source.
    private static func scale(source: Int, target: Int) -> (scale: Double, inverse: Double) {
        let inverse = Double(target) / Double(source)
        return (1 / inverse, inverse)
    }

    /// Nearest, PIL nearest, linear and cubic tables.
    init(_ method: Interpolation, source: Int, target: Int) {
        let (scale, _) = Self.scale(source: source, target: target)
        let last = source - 1
        for d in 0..<target {
            switch method {
            case .nearest:
                append([(min(Int((Double(d) * scale).rounded(.down)), last), 1)])
            case .nearestPIL:
                let pilScale = Double(source) / Double(target)
                append([(min(max(Int(((Double(d) + 0.5) * pilScale).rounded(.down)), 0), last), 1)])
            case .linear:
                var f = Float((Double(d) + 0.5) * scale - 0.5)
                var s = Int(f.rounded(.down))
                f -= Float(s)
                if s < 0 { f = 0; s = 0 }
                if s >= last { f = 0; s = last }
                append([(s, 1 - f), (min(s + 1, last), f)])
            case .cubic:
                var f = Float((Double(d) + 0.5) * scale - 0.5)
                let s = Int(f.rounded(.down))
                f -= Float(s)
                let c = cubicCoefficients(f)
                append((0..<4).map { k in (min(max(s - 1 + k, 0), last), c[k]) })
            case .area:
                preconditionFailure("area tables come from areaAverage/areaEnlarge")
            }
        }
    }

    private init() {}

    /// OpenCV `INTER_AREA` when enlarging: bilinear weights with fx = (d+1) − (s+1)/scale,
    /// wrapped into [0, 1), which makes each output a copy or a two-pixel blend.
    static func areaEnlarge(source: Int, target: Int) -> ResampleTable {
        let (scale, inverse) = Self.scale(source: source, target: target)
        var table = ResampleTable()
        let last = source - 1
        for d in 0..<target {
            var s = Int((Double(d) * scale).rounded(.down))
            var f = Float(Double(d + 1) - Double(s + 1) * inverse)
            f = f <= 0 ? 0 : f - f.rounded(.down)
            if s >= last { f = 0; s = last }
            table.append([(s, 1 - f), (min(s + 1, last), f)])
        }
        return table
    }

    /// OpenCV `INTER_AREA` when shrinking (`computeResizeAreaTab`): each output averages the
    /// source cells its footprint [d·scale, (d+1)·scale) covers, weighted by the covered length.
    static func areaAverage(source: Int, target: Int) -> ResampleTable {
        let (scale, _) = Self.scale(source: source, target: target)
        var table = ResampleTable()
        for d in 0..<target {
            let start = Double(d) * scale
            let end = start + scale
            let cell = min(scale, Double(source) - start)
            var s2 = Int(end.rounded(.down))
            var s1 = Int(start.rounded(.up))
            s2 = min(s2, source - 1)
            s1 = min(s1, s2)
            var taps: [(Int, Float)] = []
            if Double(s1) - start > 1e-3 { taps.append((s1 - 1, Float((Double(s1) - start) / cell))) }
            for s in s1..<s2 { taps.append((s, Float(1 / cell))) }
            if end - Double(s2) > 1e-3 { taps.append((s2, Float(min(min(end - Double(s2), 1), cell) / cell))) }
            table.append(taps)
        }
        return table
    }
}

/// OpenCV's `interpolateCubic` weights for fractional offset `x` (a = −0.75).
func cubicCoefficients(_ x: Float) -> [Float] {
    let a: Float = -0.75
    let c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    let c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    let c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return [c0, c1, c2, 1 - c0 - c1 - c2]
}
