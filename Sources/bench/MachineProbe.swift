// The machine probe: two fixed kernels that depend on nothing but the machine, timed, so a benchmark
// run can tell whether the machine stayed the same across its measurements. On a shared virtual
// machine the same binary's speed moves by 10–20 % from one minute to the next while nothing
// inside the machine shows it (no steal time in /proc/stat); a kernel that does the same work every
// time moves with it. scripts/bench-peers.sh runs the probe before each engine and PyTorch run and
// prints its spread beside the ratios: a spread above 5 % says the ratios measured the neighbours.

import Dispatch
import Foundation

enum MachineProbe {
    /// Seconds of `threads` cores each doing a fixed chain of multiply-adds in registers (core speed:
    /// frequency, sharing of the core), and of streaming 128 MiB per thread through memory, read
    /// and written (memory bandwidth and cache sharing); each the median of three runs.
    static func measure(threads: Int) -> (computeSeconds: Double, memorySeconds: Double) {
        let floatsPerThread = 32 << 20
        let buffers = (0..<threads).map { t in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: floatsPerThread)
            buffer.initialize(repeating: Float(t + 1))  // touched here, so the timed passes take no page faults
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        nonisolated(unsafe) let shared = buffers  // each thread touches only its own buffer
        let compute = median((0..<3).map { _ in timed(threads) { t in computeChain(seed: shared[t][0]) } })
        let memory = median((0..<3).map { _ in timed(threads) { t in stream(shared[t]) } })
        return (compute, memory)
    }

    /// Four independent chains of 5·10⁷ dependent multiply-adds each (about 0.2 s on a 3 GHz
    /// core), from a seed read from memory and returned, so the compiler can neither fold nor
    /// remove the loop.
    private static func computeChain(seed: Float) -> Float {
        var a = seed, b = seed * 1.1, c = seed * 1.2, d = seed * 1.3
        for _ in 0..<50_000_000 {
            a = a * 0.999_999_9 + 1e-7
            b = b * 0.999_999_9 + 1e-7
            c = c * 0.999_999_9 + 1e-7
            d = d * 0.999_999_9 + 1e-7
        }
        return a + b + c + d
    }

    /// Eight passes of x ← x/2 + 1 over the buffer.
    private static func stream(_ x: UnsafeMutableBufferPointer<Float>) -> Float {
        for _ in 0..<8 {
            for i in x.indices { x[i] = x[i] * 0.5 + 1 }
        }
        return x[0]
    }

    /// Wall seconds of `body` run on `threads` threads at once, one call each.
    private static func timed(_ threads: Int, _ body: @Sendable (Int) -> Float) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        let sink = UnsafeMutableBufferPointer<Float>.allocate(capacity: threads)
        defer { sink.deallocate() }
        nonisolated(unsafe) let results = sink
        DispatchQueue.concurrentPerform(iterations: threads) { t in results[t] = body(t) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if !sink.allSatisfy(\.isFinite) { fatalError("machine probe: a kernel's result is not finite") }
        return seconds
    }

    private static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
