// Ctrl-C and SIGTERM: a stage that is training stops at the next step boundary with an
// interruption the next run resumes from (exit 70, "rerun to resume"); any other stage stops at
// once with the same exit code — its artifact files are written atomically and its manifest last,
// so nothing half-written ever looks complete.

import Foundation

public enum Interruption {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var isRequested = false
    nonisolated(unsafe) private static var trainingDepth = 0
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    /// Whether SIGINT or SIGTERM arrived while a training loop was running.
    public static var requested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return isRequested
    }

    /// Marks a training loop as running for the duration of `body` (signals then stop it at a step).
    public static func training<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock.lock()
        trainingDepth += 1
        lock.unlock()
        defer {
            lock.lock()
            trainingDepth -= 1
            lock.unlock()
        }
        return try body()
    }

    /// Installs the handlers for SIGINT and SIGTERM. `immediate` is called (and should exit) when no
    /// training loop is running or the signal is the second one; otherwise `deferred` is called and
    /// the loop stops at its next step boundary.
    public static func install(immediate: @escaping @Sendable (Int32) -> Void, deferred: @escaping @Sendable (Int32) -> Void) {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                lock.lock()
                let training = trainingDepth > 0 && !isRequested
                isRequested = true
                lock.unlock()
                if training { deferred(number) } else { immediate(number) }
            }
            source.resume()
            lock.lock()
            sources.append(source)
            lock.unlock()
        }
    }
}
