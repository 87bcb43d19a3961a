// Reuse of activation and gradient storage across steps (DESIGN §4 "buffers come from a reusable
// pool"). A tape hands the arrays of its op outputs and gradients back when it is released; ops
// take arrays of the same element count from the pool. A training step allocates the same shapes
// every time, so after the first step nothing is allocated or first-touched. Correctness never
// depends on the pool: an array someone still references is copied on write, as Swift arrays are.
// The pool keeps no more arrays of a size than were ever out at once: a tape also hands back
// arrays that never came from the pool (the outputs of elementwise ops, say), and keeping those
// would grow the pool by the same arrays every step.

import Foundation

final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    private let lock = NSLock()
    private var free: [Int: [[Float]]] = [:]
    /// Per size: arrays taken (or missed) and not yet handed back, and the most ever out at once.
    private var outstanding: [Int: Int] = [:]
    private var peak: [Int: Int] = [:]
    private var pooledElements = 0
    /// Upper bound on pooled storage (elements): 16 GiB of Float32. A step never pools more than it
    /// held at its peak, so this only guards against pathological shape churn.
    private let limit = 1 << 32

    /// An array of exactly `count` elements with unspecified contents, or nil when none is pooled.
    func take(_ count: Int) -> [Float]? {
        lock.lock()
        defer { lock.unlock() }
        let out = outstanding[count, default: 0] + 1
        outstanding[count] = out
        if out > peak[count, default: 0] { peak[count] = out }
        guard var list = free[count], let array = list.popLast() else { return nil }
        free[count] = list
        pooledElements -= count
        return array
    }

    /// How many arrays of `count` elements the pool holds.
    func pooledArrays(of count: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return free[count]?.count ?? 0
    }

    /// Keeps `array` for reuse, unless as many arrays of its size are pooled as were ever out at
    /// once, or the pool is full.
    func give(_ array: [Float]) {
        guard array.count > 1024 else { return }
        lock.lock()
        defer { lock.unlock() }
        outstanding[array.count] = max(0, outstanding[array.count, default: 0] - 1)
        guard free[array.count, default: []].count < peak[array.count, default: 0],
              pooledElements + array.count <= limit else { return }
        free[array.count, default: []].append(array)
        pooledElements += array.count
    }
}

/// Runs `body` on pooled scratch storage of `count` elements with unspecified contents, which goes
/// back to the pool afterwards (no allocation or first touch once the pool holds that size).
func withPooledScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    var array = BufferPool.shared.take(count) ?? [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    defer { BufferPool.shared.give(array) }
    return array.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

extension Tensor {
    /// A tensor of zeros on pooled storage.
    static func pooledZeros(_ shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *)
        guard var array = BufferPool.shared.take(count) else { return Tensor(zeros: shape) }
        array.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        return Tensor(shape: shape, data: array)
    }

    /// A tensor on pooled storage whose every element `fill` writes.
    static func pooled(_ shape: [Int], fill: (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        let count = shape.reduce(1, *)
        guard var array = BufferPool.shared.take(count) else { return Tensor(shape: shape, fill: fill) }
        array.withUnsafeMutableBufferPointer { fill($0.baseAddress!) }
        return Tensor(shape: shape, data: array)
    }
}
