#include "cxr_blas_runtime.h"

#include <stdlib.h>  /* defines __GLIBC__ where glibc is the C library */

#if defined(__GLIBC__)
#include <malloc.h>
void cxr_keep_freed_memory(void) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);  /* mallopt(3): -1 disables trimming completely */
}
#else
void cxr_keep_freed_memory(void) {}
#endif

#if defined(CXR_BLAS_OPENBLAS)
#include <string.h>
void openblas_set_num_threads(int);
char *openblas_get_config(void);
char *openblas_get_corename(void);
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);

/* OpenBLAS picks its kernels when it is loaded, from the CPU's model number. Versions older than
   the CPU (Debian 12's 0.3.21 on Sapphire and Emerald Rapids) fall back to "Prescott", SSE3
   kernels: on the Intel VM of 2026-12-06 that made U-Net steps 1.5x slower than BLIS, while the
   SkylakeX (AVX-512) kernels, chosen by hand, made them faster. So on a CPU with AVX-512 that
   OpenBLAS did not recognise, the kernels are chosen again as SkylakeX before main (OpenBLAS's
   own re-initialisation, which reads OPENBLAS_CORETYPE); a user's OPENBLAS_CORETYPE stands. */
__attribute__((constructor)) static void cxr_choose_openblas_kernels(void) {
    if (getenv("OPENBLAS_CORETYPE") != NULL || strcmp(openblas_get_corename(), "Prescott") != 0) return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512vl"))) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
}
const char *cxr_blas_provider(void) { return "openblas"; }
const char *cxr_blas_version(void) { return openblas_get_config(); }
const char *cxr_blas_kernel(void) { return openblas_get_corename(); }
void cxr_blas_set_threads(int threads) { openblas_set_num_threads(threads); }
#else
void bli_thread_set_num_threads(long);
char *bli_info_get_version_str(void);
int bli_arch_query_id(void);
const char *bli_arch_string(int id);
void bli_init(void);
const char *cxr_blas_provider(void) { return "blis"; }
const char *cxr_blas_version(void) { return bli_info_get_version_str(); }
/* BLIS checks a kernel set named by BLIS_ARCH_TYPE against its registry, which it fills on first
   use: asked before any GEMM (regress record, --version) it would abort, so it is filled first. */
const char *cxr_blas_kernel(void) {
    bli_init();
    return bli_arch_string(bli_arch_query_id());
}
void cxr_blas_set_threads(int threads) { bli_thread_set_num_threads(threads); }
#endif
