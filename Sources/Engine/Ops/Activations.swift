// Pointwise activations and softmax, forward and backward. Pointwise loops run on fixed parts of
// the array in parallel (Parallel.forEachRange) over raw pointers, with `fastExp`, so they vectorise.

import Artifacts
import Foundation

/// The pointwise activations, each with its forward and derivative written out so the loops
/// inline and vectorise (no closure call per element).
public enum Activation: Sendable {
    case relu, sigmoid, silu

    @inline(__always) private static func sigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

    @inline(__always) private static func silu(_ x: Float) -> Float { x / (1 + fastExp(-x)) }

    /// dy·silu′(x) with σ recomputed from x (exact at x = 0, where y/x is not): σ·(1 + x·(1 − σ)).
    @inline(__always) private static func siluGradient(_ g: Float, _ x: Float) -> Float {
        let s = sigmoid(x)
        return g * s * (1 + x * (1 - s))
    }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
        switch self {
        case .relu: for i in range { y[i] = max(x[i], 0) }
        case .sigmoid: for i in range { y[i] = Self.sigmoid(x[i]) }
        case .silu: for i in range { y[i] = Self.silu(x[i]) }
        }
    }

    /// y = f(x·s + t) per channel over `rows` of x [*, c] (y indexed like x): batch norm's affine
    /// map and the activation in one pass over memory, with the arithmetic of the two done apart,
    /// so the same bits.
    func forward(normalising x: UnsafePointer<Float>, scale s: UnsafePointer<Float>, shift t: UnsafePointer<Float>,
                 into y: UnsafeMutablePointer<Float>, rows: Range<Int>, channels c: Int) {
        @inline(__always) func each(_ f: (Float) -> Float) {
            for r in rows {
                let xr = x + r * c, yr = y + r * c
                for ch in 0..<c { yr[ch] = f(xr[ch] * s[ch] + t[ch]) }
            }
        }
        switch self {
        case .relu: each { max($0, 0) }
        case .sigmoid: each(Self.sigmoid)
        case .silu: each(Self.silu)
        }
    }

    /// dx += dy·f′(x) given input x and output y (dx = dy·f′(x) unless `add`).
    func backward(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                  _ dx: UnsafeMutablePointer<Float>, _ range: Range<Int>, add: Bool) {
        switch (self, add) {
        case (.relu, true): for i in range where x[i] > 0 { dx[i] += g[i] }
        case (.relu, false): for i in range { dx[i] = x[i] > 0 ? g[i] : 0 }
        case (.sigmoid, true): for i in range { dx[i] += g[i] * y[i] * (1 - y[i]) }
        case (.sigmoid, false): for i in range { dx[i] = g[i] * y[i] * (1 - y[i]) }
        case (.silu, true): for i in range { dx[i] += Self.siluGradient(g[i], x[i]) }
        case (.silu, false): for i in range { dx[i] = Self.siluGradient(g[i], x[i]) }
        }
    }

    /// dx = dy·f′(z) with z = x·s + t per channel over `rows` of x [*, c] (g and dx indexed like x):
    /// the backward of `forward(normalising:)`, z and the output recomputed where f′ needs them with
    /// the forward's arithmetic.
    func backward(_ g: UnsafePointer<Float>, normalising x: UnsafePointer<Float>, scale s: UnsafePointer<Float>,
                  shift t: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Range<Int>, channels c: Int) {
        @inline(__always) func each(_ f: (Float, Float) -> Float) {
            for r in rows {
                let xr = x + r * c, gr = g + r * c, dxr = dx + r * c
                for ch in 0..<c { dxr[ch] = f(gr[ch], xr[ch] * s[ch] + t[ch]) }
            }
        }
        switch self {
        case .relu: each { g, z in z > 0 ? g : 0 }
        case .sigmoid:
            each { g, z in
                let y = Self.sigmoid(z)
                return g * y * (1 - y)
            }
        case .silu: each(Self.siluGradient)
        }
    }
}

extension Tape {
    private func activation(_ x: Var, _ kind: Activation) -> Var {
        let xv = value(x)
        let count = xv.count
        let out = Tensor(shape: xv.shape) { y in
            xv.withPointer { xp in
                let b = SendableBox((xp, y))
                Parallel.forEachRange(count) { range in kind.forward(b.value.0, b.value.1, range) }
            }
        }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx, add in
                dy.withPointer { g in xv.withPointer { xp in out.withPointer { yp in
                    let b = SendableBox((g, xp, yp, dx))
                    Parallel.forEachRange(count) { range in kind.backward(b.value.0, b.value.1, b.value.2, b.value.3, range, add: add) }
                } } }
            }
        }
    }

    public func relu(_ x: Var) -> Var { activation(x, .relu) }

    public func sigmoid(_ x: Var) -> Var { activation(x, .sigmoid) }

    /// SiLU ("swish"): x·σ(x); derivative σ(x)·(1 + x·(1 − σ(x))).
    public func silu(_ x: Var) -> Var { activation(x, .silu) }

    /// Softmax over the last axis (max-subtracted).
    public func softmax(_ x: Var) -> Var {
        let xv = value(x)
        let c = xv.shape.last ?? 1, rows = xv.count / c
        var out = Tensor(zeros: xv.shape)
        for r in 0..<rows {
            let row = Array(xv.data[(r * c)..<((r + 1) * c)])
            let top = row.max() ?? 0
            let e = row.map { expf($0 - top) }
            let sum = e.reduce(0, +)
            for k in 0..<c { out.data[r * c + k] = e[k] / sum }
        }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in
                for r in 0..<rows {
                    var dot: Float = 0
                    for k in 0..<c { dot += dy.data[r * c + k] * out.data[r * c + k] }
                    for k in 0..<c { dx[r * c + k] += out.data[r * c + k] * (dy.data[r * c + k] - dot) }
                }
            }
        }
    }
}
