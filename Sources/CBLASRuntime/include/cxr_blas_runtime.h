// Runtime controls: which BLAS was linked and how many threads it may use (provider-specific
// calls behind one interface), and the allocator policy. Compiled with CXR_BLAS_BLIS or CXR_BLAS_OPENBLAS (see Package.swift).
#ifndef CXR_BLAS_RUNTIME_H
#define CXR_BLAS_RUNTIME_H

/// "blis" or "openblas".
const char *cxr_blas_provider(void);

/// The provider's version or build configuration string.
const char *cxr_blas_version(void);

/// The kernel set the provider chose for this CPU at run time (BLIS's architecture, OpenBLAS's
/// core name, e.g. "haswell"): two machines with different kernels round differently.
const char *cxr_blas_kernel(void);

/// Fixes the provider's thread count (results are reproducible only at a fixed count).
void cxr_blas_set_threads(int threads);

/// Makes glibc's allocator serve large arrays from the heap and keep freed memory for reuse, so
/// per-step activations do not page-fault in fresh zeroed pages every step (no-op elsewhere).
void cxr_keep_freed_memory(void);

#endif
