// The engine's door to BLAS: which provider is linked, its thread count, and single-precision GEMM.
// Tensors, ops and autodiff arrive with the engine issue; this file is what the foundation needs.

import CBLAS
import CBLASRuntime

/// The BLAS library this build links (chosen at build time, recorded in every manifest).
public enum BLAS {
    /// "blis" or "openblas".
    public static var provider: String { String(cString: cxr_blas_provider()) }

    /// The provider's own version or configuration string.
    public static var version: String { String(cString: cxr_blas_version()) }

    /// The kernel set the provider picked for this CPU ("haswell", "zen3", "skx", …): results are
    /// bit-identical only between runs on the same kernels.
    public static var kernel: String { String(cString: cxr_blas_kernel()) }

    /// Fixes the number of threads BLAS may use; results are reproducible only at a fixed count.
    public static func setThreads(_ threads: Int) {
        precondition(threads >= 1, "thread count must be positive")
        cxr_blas_set_threads(Int32(threads))
    }

    /// Spare elements past the end of every engine buffer a GEMM reads. BLIS 0.9.0 (the one Debian 12
    /// ships) has small-matrix kernels that read a few elements past the end of C when beta ≠ 0 —
    /// valgrind shows it here on exactly sized buffers, for the shapes of kernel-gradient and
    /// input-gradient accumulation (and upstream fixed other such reads after 0.9.0: flame/blis
    /// issues 635 and 821) — and a buffer ending at the end of a mapped page then faults. Scratch,
    /// partial sums and tensor storage made by the engine carry this slack, so such a read stays
    /// inside the allocation; the values read are never used.
    static let readSlack = 64

    /// Row-major C = alpha·op(A)·op(B) + beta·C with op(A): m×k, op(B): k×n.
    ///
    /// - Precondition: the buffers hold at least the elements their shapes imply.
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }
}
