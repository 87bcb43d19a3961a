// Weighted-averaging weights (SPEC §6.1): w on the simplex (Σw = 1, 0 ≤ w ≤ 1) minimising
// scikit-learn's log loss of Σ_m w_m·P_m. On the simplex every row of the weighted sum already sums
// to 1, so the loss is f(w) = −(1/n)·Σ_i log(Σ_m w_m·a_im) with a_im = P_m[i, y_i] (the clip at
// 1e-15 aside, which `clippedRows` reports): convex, smooth inside the simplex, with gradient
// g_m = −(1/n)·Σ_i a_im/c_i and Hessian H_mn = (1/n)·Σ_i a_im·a_in/c_i², c_i = Σ_m w_m·a_im.
//
// The solver is a primal active-set Newton method: on the weights that are free (> 0), a Newton
// step with the equality constraint (the KKT system [H 1; 1ᵀ 0]), cut at the first weight that
// reaches 0 (which then joins the active set) and shortened by backtracking until the loss falls
// (Armijo); an active weight whose gradient is below the free ones' common value is released.
// It stops when the KKT residual max_m |min(w_m, g_m − min_k g_k)| — zero exactly when every
// weighted member has the least gradient and no other member has less — is below 1e-12, or when no
// step lowers the loss any more. The residual and the duality gap gᵀw − min_k g_k (an upper bound
// on f(w) − f*, convexity) are reported with the weights; SciPy's SLSQP on the same fixtures is the
// reference in the tests.

import Foundation
import Metrics
import SeededRandom

/// The fitted weights and the evidence that they are optimal.
public struct SimplexFit: Codable, Sendable, Equatable {
    /// One per member, on the simplex.
    public var weights: [Double]
    /// scikit-learn's log loss of the weighted average on the fitting set.
    public var objective: Double
    /// max_m |min(w_m, g_m − min_k g_k)|: 0 exactly at a KKT point.
    public var kktResidual: Double
    /// gᵀw − min_k g_k ≥ f(w) − f*.
    public var dualityGap: Double
    /// Newton iterations taken.
    public var iterations: Int
    /// Images whose weighted true-class probability fell below scikit-learn's 1e-15 clip.
    public var clippedRows: Int
    /// Top-1 accuracy of the weighted average on the fitting set.
    public var accuracy: Double
}

/// One restart of the released code's procedure.
public struct SimplexRestart: Codable, Sendable, Equatable {
    /// The random starting point, as `np.random.random(K)` draws it (not normalised).
    public var start: [Double]
    public var fit: SimplexFit
}

/// How the weights are chosen.
public enum WeightProcedure: String, Codable, Sendable, CaseIterable {
    /// One solve from equal weights (the optimum of a convex problem; unique when the members'
    /// true-class probabilities are linearly independent).
    case optimum
    /// The released code's: 50 solves from random starts, keeping the first with the highest
    /// accuracy on the fitting set (strict >).
    case paper

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

/// The true-class probabilities a_im, row-major n×K.
private struct TrueClassTable {
    let a: [Double]
    let n: Int
    let k: Int

    init(_ members: [Predictions]) {
        n = members[0].count
        k = members.count
        var a = [Double](repeating: 0, count: n * k)
        for (m, member) in members.enumerated() {
            for i in 0..<n { a[i * k + m] = member.p(i, member.labels[i]) }
        }
        self.a = a
    }

    /// c_i = Σ_m w_m·a_im for every image.
    func mixture(_ w: [Double]) -> [Double] {
        (0..<n).map { i in
            var c = 0.0
            for m in 0..<k { c += w[m] * a[i * k + m] }
            return c
        }
    }

    /// f(w), or +∞ when some c_i ≤ 0.
    func loss(_ w: [Double]) -> Double {
        var total = 0.0
        for c in mixture(w) {
            guard c > 0 else { return .infinity }
            total -= log(c)
        }
        return total / Double(n)
    }

    /// Gradient and Hessian of f at w.
    func derivatives(_ w: [Double]) -> (g: [Double], h: [Double]) {
        let c = mixture(w)
        var g = [Double](repeating: 0, count: k), h = [Double](repeating: 0, count: k * k)
        for i in 0..<n {
            let inv = 1 / c[i]
            for m in 0..<k {
                let am = a[i * k + m] * inv
                g[m] -= am
                for q in m..<k { h[m * k + q] += am * a[i * k + q] * inv }
            }
        }
        let scale = 1 / Double(n)
        for m in 0..<k {
            g[m] *= scale
            for q in m..<k {
                h[m * k + q] *= scale
                h[q * k + m] = h[m * k + q]
            }
        }
        return (g, h)
    }
}

/// KKT residual and duality gap of `w` given the gradient `g`.
private func optimality(_ w: [Double], _ g: [Double]) -> (residual: Double, gap: Double) {
    let least = g.min() ?? 0
    let residual = zip(w, g).map { abs(min($0, $1 - least)) }.max() ?? 0
    let gap = zip(w, g).map { $0 * $1 }.reduce(0, +) - least
    return (residual, gap)
}

/// Solves the symmetric system A·x = b (Gaussian elimination with partial pivoting); nil when singular.
private func solve(_ a: [Double], _ b: [Double], size n: Int) -> [Double]? {
    var a = a, b = b
    for col in 0..<n {
        guard let pivot = (col..<n).max(by: { abs(a[$0 * n + col]) < abs(a[$1 * n + col]) }),
              abs(a[pivot * n + col]) > 1e-300 else { return nil }
        if pivot != col {
            for j in 0..<n { a.swapAt(pivot * n + j, col * n + j) }
            b.swapAt(pivot, col)
        }
        for row in (col + 1)..<n {
            let factor = a[row * n + col] / a[col * n + col]
            guard factor != 0 else { continue }
            for j in col..<n { a[row * n + j] -= factor * a[col * n + j] }
            b[row] -= factor * b[col]
        }
    }
    var x = [Double](repeating: 0, count: n)
    for row in stride(from: n - 1, through: 0, by: -1) {
        var s = b[row]
        for j in (row + 1)..<n { s -= a[row * n + j] * x[j] }
        x[row] = s / a[row * n + row]
    }
    return x
}

/// The Newton direction on the free weights under Σd = 0 (zero on the others); nil when the
/// system is singular even after a small diagonal shift.
private func newtonDirection(_ g: [Double], _ h: [Double], free: [Int], k: Int) -> [Double]? {
    let f = free.count
    let trace = free.map { h[$0 * k + $0] }.reduce(0, +)
    for shift in [0.0, 1e-12, 1e-9, 1e-6].map({ $0 * max(trace, 1e-300) }) {
        // [H_FF + shift·I, 1; 1ᵀ, 0]·[d; ν] = [−g_F; 0]
        let size = f + 1
        var system = [Double](repeating: 0, count: size * size), rhs = [Double](repeating: 0, count: size)
        for (r, m) in free.enumerated() {
            for (c, q) in free.enumerated() { system[r * size + c] = h[m * k + q] + (r == c ? shift : 0) }
            system[r * size + f] = 1
            system[f * size + r] = 1
            rhs[r] = -g[m]
        }
        guard let x = solve(system, rhs, size: size), x.allSatisfy(\.isFinite) else { continue }
        var d = [Double](repeating: 0, count: k)
        for (r, m) in free.enumerated() { d[m] = x[r] }
        return d
    }
    return nil
}

/// Moves from `w` along `d` (Σd = 0): the longest step keeping every weight ≥ 0 (the weight that
/// blocks it set to exactly 0), halved until the loss falls by Armijo's rule. Nil when `d` is not a
/// descent direction or no step lowers the loss.
private func lineSearch(_ table: TrueClassTable, _ w: [Double], _ d: [Double], loss f: Double,
                        gradient g: [Double]) -> (weights: [Double], loss: Double)? {
    let k = w.count
    let descent = zip(d, g).map { $0 * $1 }.reduce(0, +)
    guard descent < 0 else { return nil }
    var limit = 1.0, blocking: Int?
    for m in 0..<k where d[m] < 0 && -w[m] / d[m] < limit {
        limit = -w[m] / d[m]
        blocking = m
    }
    var step = limit
    for _ in 0..<60 {
        var candidate = zip(w, d).map { max($0 + step * $1, 0) }
        if step == limit, let blocking { candidate[blocking] = 0 }
        let sum = candidate.reduce(0, +)
        candidate = candidate.map { $0 / sum }
        let value = table.loss(candidate)
        if value < f && value <= f + 1e-4 * step * descent { return (candidate, value) }
        step *= 0.5
    }
    return nil
}

/// The minimiser of the log loss of Σ_m w_m·P_m over the simplex, from `start` (normalised onto
/// the simplex; equal weights when nil).
///
/// - Precondition: members are aligned.
public func fitSimplexWeights(_ members: [Predictions], start: [Double]? = nil) -> SimplexFit {
    let table = TrueClassTable(members)
    let k = table.k
    var w = start.map { s in s.map { max($0, 0) } } ?? [Double](repeating: 1, count: k)
    let total = w.reduce(0, +)
    w = total > 0 ? w.map { $0 / total } : [Double](repeating: 1 / Double(k), count: k)
    // A start where some image has zero probability under every weighted member is moved inward.
    if !table.loss(w).isFinite { w = w.map { 0.5 * $0 + 0.5 / Double(k) } }
    var iterations = 0
    var f = table.loss(w)
    while iterations < 500 {
        let (g, h) = table.derivatives(w)
        if optimality(w, g).residual <= 1e-12 { break }
        iterations += 1
        var free = (0..<k).filter { w[$0] > 0 }
        // Release the active weight whose gradient is furthest below the free ones' least.
        let freeLeast = free.map { g[$0] }.min() ?? 0
        if let enter = (0..<k).filter({ w[$0] == 0 && g[$0] < freeLeast - 1e-15 }).min(by: { g[$0] < g[$1] }) {
            free.append(enter)
            free.sort()
        }
        // The Newton step, or when it does not lower the loss, the projected gradient.
        let mean = free.map { g[$0] }.reduce(0, +) / Double(free.count)
        let gradientStep = (0..<k).map { free.contains($0) ? -(g[$0] - mean) : 0 }
        let directions = [newtonDirection(g, h, free: free, k: k), gradientStep].compactMap { $0 }
        guard let (next, value) = directions.lazy.compactMap({ lineSearch(table, w, $0, loss: f, gradient: g) }).first else { break }
        w = next
        f = value
    }
    let (g, _) = table.derivatives(w)
    let (residual, gap) = optimality(w, g)
    let combined = weightedSum(members, weights: w)
    let clipped = table.mixture(w).filter { $0 < 1e-15 }.count
    return SimplexFit(weights: w, objective: sklearnLogLoss(combined), kktResidual: residual, dualityGap: gap,
                      iterations: iterations, clippedRows: clipped, accuracy: accuracy(combined))
}

/// The weights `procedure` chooses, and for `.paper` every restart.
///
/// - Parameter generator: draws the paper procedure's random starts (uniform [0, 1)^K each).
public func chooseWeights(_ members: [Predictions], procedure: WeightProcedure, restarts: Int = 50,
                          generator: inout SplitMix64) -> (fit: SimplexFit, restarts: [SimplexRestart]) {
    switch procedure {
    case .optimum:
        return (fitSimplexWeights(members), [])
    case .paper:
        var log: [SimplexRestart] = []
        var best: SimplexFit?
        for _ in 0..<restarts {
            let start = (0..<members.count).map { _ in generator.unit() }
            let fit = fitSimplexWeights(members, start: start)
            log.append(SimplexRestart(start: start, fit: fit))
            if best == nil || fit.accuracy > best!.accuracy { best = fit }
        }
        return (best ?? fitSimplexWeights(members), log)
    }
}
