// Arithmetic between tensors: add (residuals), dense layers, drop-connect, and the reductions
// losses are built from. (Squeeze-excitation's broadcast multiply is part of the projection that
// reads it: ScaledPointwise.swift.)

import Artifacts
import Foundation

extension Tape {
    /// a + b, same shapes; fixed parts of the arrays in parallel.
    public func add(_ a: Var, _ b: Var) -> Var {
        let av = value(a), bv = value(b)
        precondition(av.shape == bv.shape, "add shapes \(av.shape) and \(bv.shape) differ")
        let count = av.count
        let out = Tensor(shape: av.shape) { y in
            av.withPointer { ap in bv.withPointer { bp in
                let box = SendableBox((y, ap, bp))
                Parallel.forEachRange(count) { range in
                    let (y, ap, bp) = box.value
                    for i in range { y[i] = ap[i] + bp[i] }
                }
            } }
        }
        return record(out) { tape, dy in
            for v in [a, b] {
                tape.accumulate(v) { dx, add in
                    dy.withPointer { g in
                        let box = SendableBox((dx, g))
                        Parallel.forEachRange(count) { range in
                            let (dx, g) = box.value
                            if add {
                                for i in range { dx[i] += g[i] }
                            } else {
                                (dx + range.lowerBound).update(from: g + range.lowerBound, count: range.count)
                            }
                        }
                    }
                }
            }
        }
    }

    /// x [N,I] · W [I,O] + b [O].
    public func dense(_ x: Var, _ weight: Var, bias: Var? = nil) -> Var {
        let xv = value(x), wv = value(weight)
        let n = xv.shape[0], i = xv.shape[1], o = wv.shape[1]
        precondition(wv.shape[0] == i, "dense weight \(wv.shape) does not fit input \(xv.shape)")
        var out = Tensor(zeros: [n, o])
        forwardFlops += 2 * Double(n * i * o)
        out.withMutablePointer { y in
            xv.withPointer { a in wv.withPointer { b in
                BLAS.sgemm(transposeA: false, transposeB: false, m: n, n: o, k: i, alpha: 1, a: a, lda: i, b: b, ldb: o, beta: 0, c: y, ldc: o)
            } }
            if let bias { addBias(y, rows: n, value(bias)) }
        }
        return record(out) { tape, dy in
            dy.withPointer { g in
                xv.withPointer { a in wv.withPointer { w in
                    tape.accumulate(weight) { dw in
                        BLAS.sgemm(transposeA: true, transposeB: false, m: i, n: o, k: n, alpha: 1, a: a, lda: i, b: g, ldb: o, beta: 1, c: dw, ldc: o)
                    }
                    tape.accumulate(x) { dx in
                        BLAS.sgemm(transposeA: false, transposeB: true, m: n, n: i, k: o, alpha: 1, a: g, lda: o, b: w, ldb: o, beta: 1, c: dx, ldc: i)
                    }
                } }
                if let bias { tape.accumulate(bias) { db in sumRows(g, rows: n, columns: o, into: db) } }
            }
        }
    }

    /// Per-sample drop-connect (EfficientNet's `FixedDropout` with noise shape (N,1,1,1)): in
    /// training each image is kept with probability 1 − rate and scaled by 1/(1 − rate); identity
    /// otherwise.
    public func dropConnect(_ x: Var, rate: Float) -> Var {
        guard training, rate > 0 else { return x }
        let xv = value(x)
        let n = xv.shape[0], per = xv.count / n
        let keep = (0..<n).map { _ in Float(generator.unit()) >= rate ? 1 / (1 - rate) : 0 }
        var out = xv
        for b in 0..<n { for j in 0..<per { out.data[b * per + j] *= keep[b] } }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for b in 0..<n { for j in 0..<per { dx[b * per + j] += dy.data[b * per + j] * keep[b] } } }
        }
    }

    /// The mean of every element, as a [1] tensor.
    public func mean(_ x: Var) -> Var {
        let xv = value(x)
        let out = Tensor(shape: [1], data: [Float(xv.data.reduce(0.0) { $0 + Double($1) } / Double(xv.count))])
        return record(out) { tape, dy in
            let g = dy.data[0] / Float(xv.count)
            tape.accumulate(x) { dx in for i in 0..<xv.count { dx[i] += g } }
        }
    }

    /// The sum of every element, as a [1] tensor.
    public func sum(_ x: Var) -> Var {
        let xv = value(x)
        let out = Tensor(shape: [1], data: [Float(xv.data.reduce(0.0) { $0 + Double($1) })])
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<xv.count { dx[i] += dy.data[0] } }
        }
    }

    /// a ⊙ b, same shapes.
    public func multiply(_ a: Var, _ b: Var) -> Var {
        let av = value(a), bv = value(b)
        precondition(av.shape == bv.shape, "multiply shapes \(av.shape) and \(bv.shape) differ")
        let out = Tensor(shape: av.shape, data: zip(av.data, bv.data).map(*))
        return record(out) { tape, dy in
            tape.accumulate(a) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] * bv.data[i] } }
            tape.accumulate(b) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] * av.data[i] } }
        }
    }

    /// Natural log of max(x, floor) (the floor keeps log finite; no gradient below it).
    public func log(_ x: Var, floor: Float = 1e-7) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map { logf(max($0, floor)) })
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count where xv.data[i] > floor { dx[i] += dy.data[i] / xv.data[i] } }
        }
    }

    /// c·x.
    public func scale(_ x: Var, _ c: Float) -> Var {
        let xv = value(x)
        return record(Tensor(shape: xv.shape, data: xv.data.map { $0 * c })) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count { dx[i] += c * dy.data[i] } }
        }
    }
}

extension Tape {
    /// eˣ.
    public func exp(_ x: Var) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map { expf($0) })
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] * out.data[i] } }
        }
    }

    /// min(max(x, low), high); the gradient passes only strictly inside the bounds.
    public func clip(_ x: Var, _ low: Float, _ high: Float) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map { min(max($0, low), high) })
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count where xv.data[i] > low && xv.data[i] < high { dx[i] += dy.data[i] } }
        }
    }

    /// |x|; the derivative at 0 is 0.
    public func abs(_ x: Var) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map { Swift.abs($0) })
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] * (xv.data[i] > 0 ? 1 : xv.data[i] < 0 ? -1 : 0) } }
        }
    }

    /// xᵖ for x > 0 (the focal and Tversky exponents); 0 and no gradient where x ≤ 0.
    public func pow(_ x: Var, _ p: Float) -> Var {
        let xv = value(x)
        let out = Tensor(shape: xv.shape, data: xv.data.map { $0 > 0 ? powf($0, p) : 0 })
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count where xv.data[i] > 0 { dx[i] += dy.data[i] * p * out.data[i] / xv.data[i] } }
        }
    }

    /// a − b, same shapes.
    public func subtract(_ a: Var, _ b: Var) -> Var { add(a, scale(b, -1)) }

    /// Sum over the last axis: [..., K] → [...] (per-sample losses from per-class terms).
    public func sumLastAxis(_ x: Var) -> Var {
        let xv = value(x)
        let k = xv.shape.last ?? 1, rows = xv.count / k
        var out = Tensor(zeros: Array(xv.shape.dropLast()).isEmpty ? [1] : Array(xv.shape.dropLast()))
        for r in 0..<rows { for j in 0..<k { out.data[r] += xv.data[r * k + j] } }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for r in 0..<rows { for j in 0..<k { dx[r * k + j] += dy.data[r] } } }
        }
    }

    /// Mean over the last axis: [..., K] → [...].
    public func meanLastAxis(_ x: Var) -> Var { scale(sumLastAxis(x), 1 / Float(shape(x).last ?? 1)) }

    /// Maximum over the last axis (the gradient goes to the first maximum), and the arg-max indices.
    public func maxLastAxis(_ x: Var) -> (max: Var, argmax: [Int]) {
        let xv = value(x)
        let k = xv.shape.last ?? 1, rows = xv.count / k
        var indices = [Int](repeating: 0, count: rows)
        for r in 0..<rows {
            for j in 1..<max(k, 1) where xv.data[r * k + j] > xv.data[r * k + indices[r]] { indices[r] = j }
        }
        let out = Tensor(shape: Array(xv.shape.dropLast()).isEmpty ? [1] : Array(xv.shape.dropLast()),
                         data: (0..<rows).map { xv.data[$0 * k + indices[$0]] })
        let node = record(out) { tape, dy in
            tape.accumulate(x) { dx in for r in 0..<rows { dx[r * k + indices[r]] += dy.data[r] } }
        }
        return (node, indices)
    }
}

extension Tape {
    /// x divided by its sum over the last axis (Keras' renormalisation of probabilities).
    public func normalizeLastAxis(_ x: Var) -> Var {
        let xv = value(x)
        let k = xv.shape.last ?? 1, rows = xv.count / k
        let sums = (0..<rows).map { r in (0..<k).reduce(Float(0)) { $0 + xv.data[r * k + $1] } }
        let out = Tensor(shape: xv.shape, data: (0..<xv.count).map { xv.data[$0] / sums[$0 / k] })
        return record(out) { tape, dy in
            // d(x_j/S)/dx_i = (δ_ij − y_j)/S.
            tape.accumulate(x) { dx in
                for r in 0..<rows {
                    var dot: Float = 0
                    for j in 0..<k { dot += dy.data[r * k + j] * out.data[r * k + j] }
                    for i in 0..<k { dx[r * k + i] += (dy.data[r * k + i] - dot) / sums[r] }
                }
            }
        }
    }

    /// The same values with no gradient flowing back (TensorFlow's stop_gradient).
    public func stopGradient(_ x: Var) -> Var { constant(value(x)) }

    /// x + c elementwise.
    public func addScalar(_ x: Var, _ c: Float) -> Var {
        let xv = value(x)
        return record(Tensor(shape: xv.shape, data: xv.data.map { $0 + c })) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] } }
        }
    }
}
