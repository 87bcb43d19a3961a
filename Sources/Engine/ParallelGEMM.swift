// GEMM split across the engine's threads, with BLAS itself single-threaded. Splitting ourselves
// keeps every thread busy through the loops between GEMMs (BLAS' own OpenMP workers would spin
// there, competing with them) and keeps results deterministic: each output block is computed by
// one fixed part; a split reduction dimension is summed part by part in order.

import Artifacts

extension BLAS {
    /// C (m×n) = A·B + beta·C, row-major, no transposes, rows of A and C split across threads.
    static func gemmRowsSplit(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                              b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                              transposeB: Bool = false) {
        let box = SendableBox((a, b, c))
        Parallel.forEachRange(m, grain: 64) { rows in
            let (a, b, c) = box.value
            sgemm(transposeA: false, transposeB: transposeB, m: rows.count, n: n, k: k, alpha: 1,
                  a: a + rows.lowerBound * lda, lda: lda, b: b, ldb: ldb, beta: beta,
                  c: c + rows.lowerBound * ldc, ldc: ldc)
        }
    }

    /// C (m×n) += Aᵀ·B where A is k×m and B is k×n (a weight gradient: the reduction runs over the
    /// k pixels); k is split across threads and the partial products are added in part order.
    static func gemmTransposedAccumulate(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                         b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>) {
        let parts = Parallel.parts(k, grain: 256)
        if parts <= 1 {
            sgemm(transposeA: true, transposeB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: c, ldc: n)
            return
        }
        var partials = [Float](repeating: 0, count: parts * m * n + BLAS.readSlack)
        partials.withUnsafeMutableBufferPointer { p in
            let box = SendableBox((a, b, p.baseAddress!))
            Parallel.forEachPart(k, grain: 256) { part, rows in
                let (a, b, p) = box.value
                sgemm(transposeA: true, transposeB: false, m: m, n: n, k: rows.count, alpha: 1,
                      a: a + rows.lowerBound * lda, lda: lda, b: b + rows.lowerBound * ldb, ldb: ldb, beta: 0,
                      c: p + part * m * n, ldc: n)
            }
        }
        for part in 0..<parts {
            for i in 0..<(m * n) { c[i] += partials[part * m * n + i] }
        }
    }
}
