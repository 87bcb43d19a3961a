// The two concurrency helpers every library shares: a box that carries a value into concurrent
// work whose parts touch disjoint memory, and a parallel map over fixed strided partitions whose
// results (and the error it throws) never depend on scheduling.

import Foundation

/// Carries a value into concurrent work whose parts touch disjoint memory (each element written by
/// one worker only).
public struct SendableBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}

/// A thread-safe counter for progress reports from parallel loops.
public final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    public init() {}

    /// Adds one and returns the new count.
    public func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// `transform` over `items` on `threads` workers, worker w taking items w, w + threads, …; results
/// keep the input order and the error thrown is the one of the lowest index, so runs are repeatable.
/// Progress goes to `sink` as `task` about every 5 % of the items.
public func parallelMap<T, R, E: Error>(_ items: [T], threads: Int, sink: EventSink = { _ in }, task: String = "",
                                        _ transform: (T) throws(E) -> R) throws(E) -> [R]
{
    var results = [R?](repeating: nil, count: items.count)
    var failures = [E?](repeating: nil, count: items.count)
    let counter = ProgressCounter()
    let step = max(1, items.count / 20)
    let workers = max(1, threads)
    withoutActuallyEscaping(transform) { transform in
        results.withUnsafeMutableBufferPointer { out in
            failures.withUnsafeMutableBufferPointer { errors in
                let out = SendableBox(out), errors = SendableBox(errors)
                let work = SendableBox(transform), items = SendableBox(items)
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    for index in stride(from: worker, to: items.value.count, by: workers) {
                        do throws(E) { out.value[index] = try work.value(items.value[index]) } catch { errors.value[index] = error }
                        let done = counter.increment()
                        if done % step == 0 || done == items.value.count {
                            sink(.progress(task: task, done: done, total: items.value.count))
                        }
                    }
                }
            }
        }
    }
    if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
    return results.compactMap { $0 }
}
