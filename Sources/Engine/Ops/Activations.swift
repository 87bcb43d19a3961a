// Pointwise activations and softmax, forward and backward.

import Foundation

extension Tape {
    /// Applies `f` elementwise; `df(x, y)` is the derivative given input and output.
    private func pointwise(_ x: Var, _ f: (Float) -> Float, _ df: @escaping (Float, Float) -> Float) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map(f))
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in
                for i in 0..<dy.count { dx[i] += dy.data[i] * df(xv.data[i], out.data[i]) }
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
        let c = xv.shape.last!, rows = xv.count / c
        var out = Tensor(zeros: xv.shape)
        for r in 0..<rows {
            let row = Array(xv.data[(r * c)..<((r + 1) * c)])
            let top = row.max()!
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
