// Compiler intrinsics Swift has no spelling for, inlined into the Swift code that calls them.
#ifndef CXR_INTRINSICS_H
#define CXR_INTRINSICS_H

/// Asks the cache hierarchy for the line holding `address`, for reading soon; never faults.
static inline void cxr_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
