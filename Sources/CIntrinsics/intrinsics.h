// Compiler intrinsics Swift has no spelling for, inlined into the Swift code that calls them.
#ifndef CXR_INTRINSICS_H
#define CXR_INTRINSICS_H

/// Asks the cache hierarchy for the line holding `address`, for reading soon; never faults.
static inline void cxr_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// y[i] = √x[i] (correctly rounded, as sqrtf) for i < n, vectorised: the square root as an LLVM
/// intrinsic, which unlike Swift's `squareRoot()` on Linux (a libm call, kept for errno) needs no
/// scalar fallback, so the loop runs eight or sixteen lanes at a time. x and y may be the same array.
static inline void cxr_square_roots(const float *x, float *y, long n) {
    typedef float lanes8 __attribute__((ext_vector_type(8)));
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        lanes8 v;
        __builtin_memcpy(&v, x + i, sizeof v);
        v = __builtin_elementwise_sqrt(v);
        __builtin_memcpy(y + i, &v, sizeof v);
    }
    for (; i < n; i++) {
        lanes8 v = {x[i]};
        y[i] = __builtin_elementwise_sqrt(v)[0];
    }
}

#endif
