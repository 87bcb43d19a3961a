// SHA-256 compression on the SHA extensions: SHA256RNDS2 does two rounds on the state held as
// (A, B, E, F) and (C, D, G, H) in two registers, SHA256MSG1/MSG2 extend the message schedule four
// words at a time (Intel, "Intel SHA Extensions", 2013). Same digests as the portable Swift code;
// the tests run the FIPS vectors through both.

#include "cxr_sha.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int cxr_sha256_hardware_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}

__attribute__((target("sha,sse4.1,ssse3")))
void cxr_sha256_compress_hardware(uint32_t state[8], const uint8_t *data, size_t blocks, const uint32_t k[64]) {
    // Lanes low to high: (F, E, B, A) and (H, G, D, C), from a..h in memory order.
    __m128i abcd = _mm_loadu_si128((const __m128i *)&state[0]);   // a b c d
    __m128i efgh = _mm_loadu_si128((const __m128i *)&state[4]);   // e f g h
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);                  // b a d c
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);                  // h g f e
    __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);                 // f e b a
    __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);              // h g d c
    // Big-endian words: reverse the bytes of each 32-bit lane.
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);

    for (size_t block = 0; block < blocks; block++) {
        const __m128i *in = (const __m128i *)(data + 64 * block);
        const __m128i savedAbef = abef, savedCdgh = cdgh;
        __m128i w[4];  // w[j % 4] holds W[4j .. 4j+3] of the latest group j
        for (int j = 0; j < 16; j++) {
            __m128i words;
            if (j < 4) {
                words = _mm_shuffle_epi8(_mm_loadu_si128(in + j), swap);
            } else {
                // W[i] = σ1(W[i−2]) + W[i−7] + σ0(W[i−15]) + W[i−16] for i = 4j .. 4j+3.
                __m128i minus7 = _mm_alignr_epi8(w[(j - 1) % 4], w[(j - 2) % 4], 4);  // W[4j−7 .. 4j−4]
                words = _mm_sha256msg1_epu32(w[j % 4], w[(j - 3) % 4]);             // W[i−16] + σ0(W[i−15])
                words = _mm_add_epi32(words, minus7);
                words = _mm_sha256msg2_epu32(words, w[(j - 1) % 4]);                // + σ1(W[i−2])
            }
            w[j % 4] = words;
            __m128i plusK = _mm_add_epi32(words, _mm_loadu_si128((const __m128i *)&k[4 * j]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, plusK);                // rounds 4j, 4j+1: new (A, B, E, F)
            plusK = _mm_shuffle_epi32(plusK, 0x0E);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, plusK);                // rounds 4j+2, 4j+3
        }
        abef = _mm_add_epi32(abef, savedAbef);
        cdgh = _mm_add_epi32(cdgh, savedCdgh);
    }

    __m128i abfe = _mm_shuffle_epi32(abef, 0x1B);                  // a b e f
    __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);                  // g h c d
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(abfe, ghcd, 0xF0));  // a b c d
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(ghcd, abfe, 8));     // e f g h
}

#else

int cxr_sha256_hardware_available(void) { return 0; }
void cxr_sha256_compress_hardware(uint32_t state[8], const uint8_t *data, size_t blocks, const uint32_t k[64]) {
    (void)state; (void)data; (void)blocks; (void)k;
}

#endif
