// The engine's threading and memory policy.
//
// Work is split into a fixed number of contiguous parts (one per thread), so which thread computes
// which element never depends on scheduling; reductions combine per-part partial results in part
// order. Results are therefore byte-identical for a given thread count.
//
// Memory: every op writes a fresh output array. With glibc's defaults, arrays above the mmap
// threshold are mapped and unmapped on every step and each new page faults in zeroed — a third or
// more of a step's time. `Parallel.configure` keeps freed memory in the heap for reuse instead.

import Artifacts
import CBLASRuntime
import Foundation

public enum Parallel {
    /// Threads for the engine's loops and its GEMM splits (BLAS itself runs single-threaded).
    nonisolated(unsafe) public private(set) static var threads = 1

    /// Sets the engine's thread count and the allocator policy.
    public static func configure(threads: Int) {
        precondition(threads >= 1, "thread count must be positive")
        Self.threads = threads
        BLAS.setThreads(1)  // the engine splits GEMMs itself (ParallelGEMM.swift)
        cxr_keep_freed_memory()
    }

    /// Calls `body` on `parts` fixed contiguous ranges covering 0..<count, in parallel; inline when
    /// the work is small or there is one thread.
    static func forEachRange(_ count: Int, grain: Int = 1 << 14, _ body: (Range<Int>) -> Void) {
        forEachPart(count, grain: grain) { _, range in body(range) }
    }

    /// Like `forEachRange`, also passing the part's index (for per-part partial results).
    static func forEachPart(_ count: Int, grain: Int = 1 << 14, _ body: (Int, Range<Int>) -> Void) {
        let parts = self.parts(count, grain: grain)
        if parts <= 1 {
            body(0, 0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = SendableBox(body)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                box.value(part, range(part, of: parts, count: count))
            }
        }
    }

    /// Part `part` of `parts` near-equal contiguous ranges of 0..<count.
    static func range(_ part: Int, of parts: Int, count: Int) -> Range<Int> {
        (count * part / parts)..<(count * (part + 1) / parts)
    }

    /// The number of parts `forEachRange` uses for `count` items.
    static func parts(_ count: Int, grain: Int = 1 << 14) -> Int { min(threads, max(1, count / max(grain, 1))) }
}
