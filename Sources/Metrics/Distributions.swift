// The few distribution functions the intervals and tests need, written from their definitions:
// the normal CDF (via erfc) and quantile (Newton on the CDF), Student's t CDF (regularised
// incomplete beta by its continued fraction, DLMF 8.17.22) and quantile (bisection), and the
// binomial CDF (direct sum in log space).

import Foundation

/// Φ(x), the standard normal CDF.
public func normalCDF(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }

/// Φ⁻¹(p) for p in (0, 1), to full double precision: bisection into the right neighbourhood,
/// then Newton steps on Φ(x) − p (the density is not small there, so Newton cannot overshoot).
public func normalQuantile(_ p: Double) -> Double {
    precondition(p > 0 && p < 1, "normal quantile needs 0 < p < 1")
    var lo = -40.0, hi = 40.0
    while hi - lo > 1e-3 {
        let mid = (lo + hi) / 2
        if normalCDF(mid) < p { lo = mid } else { hi = mid }
    }
    var x = (lo + hi) / 2
    for _ in 0..<20 {
        let density = exp(-x * x / 2) / (2 * Double.pi).squareRoot()
        let step = (normalCDF(x) - p) / density
        x -= step
        if abs(step) < 1e-15 * max(1, abs(x)) { break }
    }
    return x
}

/// I_x(a, b), the regularised incomplete beta function.
public func regularizedIncompleteBeta(_ x: Double, _ a: Double, _ b: Double) -> Double {
    if x <= 0 { return 0 }
    if x >= 1 { return 1 }
    // Use the continued fraction where it converges fast, symmetry elsewhere.
    if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(1 - x, b, a) }
    let logGammas: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
    let logFront: Double = logGammas + a * log(x) + b * log(1 - x)
    // Modified Lentz evaluation of 1/(1+ d1/(1+ d2/(1+ …))).
    let tiny = 1e-300
    var c = 1.0, d = 1 - (a + b) * x / (a + 1)
    if abs(d) < tiny { d = tiny }
    d = 1 / d
    var f = d
    for m in 1...10_000 {
        let m = Double(m)
        let even: Double = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 + even * d; if abs(d) < tiny { d = tiny }
        c = 1 + even / c; if abs(c) < tiny { c = tiny }
        d = 1 / d
        f *= d * c
        let odd: Double = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + odd * d; if abs(d) < tiny { d = tiny }
        c = 1 + odd / c; if abs(c) < tiny { c = tiny }
        d = 1 / d
        let delta = d * c
        f *= delta
        if abs(delta - 1) < 1e-16 { break }
    }
    return exp(logFront) * f / a
}

/// The CDF of Student's t with `df` degrees of freedom.
public func studentTCDF(_ t: Double, df: Double) -> Double {
    let tail = 0.5 * regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5)
    return t >= 0 ? 1 - tail : tail
}

/// The p-quantile of Student's t (R's `qt(p, df)`), by bisection to machine precision.
public func studentTQuantile(_ p: Double, df: Double) -> Double {
    precondition(p > 0 && p < 1, "t quantile needs 0 < p < 1")
    var lo = -1e3, hi = 1e3
    for _ in 0..<200 {
        let mid = (lo + hi) / 2
        if studentTCDF(mid, df: df) < p { lo = mid } else { hi = mid }
        if hi - lo < 1e-15 * max(1, abs(mid)) { break }
    }
    return (lo + hi) / 2
}

/// P(X ≤ k) for X ~ Binomial(n, p).
public func binomialCDF(_ k: Int, n: Int, p: Double) -> Double {
    guard k >= 0 else { return 0 }
    guard k < n else { return 1 }
    var sum = 0.0
    for i in 0...k {
        let logChoose: Double = lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1))
        let logTerm: Double = logChoose + Double(i) * log(p) + Double(n - i) * log1p(-p)
        sum += exp(logTerm)
    }
    return min(sum, 1)
}
