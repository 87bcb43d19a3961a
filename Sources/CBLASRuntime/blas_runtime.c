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
void openblas_set_num_threads(int);
char *openblas_get_config(void);
char *openblas_get_corename(void);
const char *cxr_blas_provider(void) { return "openblas"; }
const char *cxr_blas_version(void) { return openblas_get_config(); }
const char *cxr_blas_kernel(void) { return openblas_get_corename(); }
void cxr_blas_set_threads(int threads) { openblas_set_num_threads(threads); }
#else
void bli_thread_set_num_threads(long);
char *bli_info_get_version_str(void);
int bli_arch_query_id(void);
const char *bli_arch_string(int id);
const char *cxr_blas_provider(void) { return "blis"; }
const char *cxr_blas_version(void) { return bli_info_get_version_str(); }
const char *cxr_blas_kernel(void) { return bli_arch_string(bli_arch_query_id()); }
void cxr_blas_set_threads(int threads) { bli_thread_set_num_threads(threads); }
#endif
