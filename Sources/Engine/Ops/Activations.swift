// Pointwise activations and softmax, forward and backward. Pointwise loops run on fixed parts of
// the array in parallel (Parallel.forEachRange) over raw pointers, so they vectorise.

import Foundation

extension Tape {
    /// Applies `f` elementwise; `df(x, y)` is the derivative given input and output.
    private func pointwise(_ x: Var, _ f: @escaping (Float) -> Float, _ df: @escaping (Float, Float) -> Float) -> Var {
        let xv = value(x)
        let count = xv.count
        let out = Tensor.pooled(xv.shape) { y in
            xv.withPointer { xp in
                let yBox = SendableBox(y), xBox = SendableBox(xp)
                Parallel.forEachRange(count) { range in
                    for i in range { yBox.value[i] = f(xBox.value[i]) }
                }
            }
        }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in
                dy.withPointer { g in xv.withPointer { xp in out.withPointer { yp in
                    let b = SendableBox((dx, g, xp, yp))
                    Parallel.forEachRange(count) { range in
                        let (dx, g, xp, yp) = b.value
                        for i in range { dx[i] += g[i] * df(xp[i], yp[i]) }
                    }
                } } }
            }
        }
    }

    public func relu(_ x: Var) -> Var { pointwise(x, { max($0, 0) }, { x, _ in x > 0 ? 1 : 0 }) }

    public func sigmoid(_ x: Var) -> Var { pointwise(x, { 1 / (1 + expf(-$0)) }, { _, y in y * (1 - y) }) }

    /// SiLU ("swish"): x·σ(x); derivative σ(x)·(1 + x·(1 − σ(x))).
    public func silu(_ x: Var) -> Var {
        pointwise(x, { $0 / (1 + expf(-$0)) }, { x, _ in
            let s = 1 / (1 + expf(-x))
            return s * (1 + x * (1 - s))
        })
    }

    /// Softmax over the last axis (max-subtracted).
    public func softmax(_ x: Var) -> Var {
        let xv = value(x)
        let c = xv.shape.last ?? 1, rows = xv.count / c
        var out = Tensor.pooledZeros(xv.shape)
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
