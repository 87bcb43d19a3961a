// SHA-256 block compression with the x86 SHA extensions (SHA-NI), for Artifacts' SHA256.
#ifndef CXR_SHA_H
#define CXR_SHA_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the SHA extensions with SSSE3 and SSE4.1 (and the build is for x86-64), else 0.
int cxr_sha256_hardware_available(void);

/// Compresses `blocks` 64-byte blocks at `data` into `state` (a..h, FIPS 180-4 order) with the
/// round constants `k` (the caller's table). Call only when cxr_sha256_hardware_available() is 1.
void cxr_sha256_compress_hardware(uint32_t state[8], const uint8_t *data, size_t blocks, const uint32_t k[64]);

#endif
