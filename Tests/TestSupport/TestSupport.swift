// What several test files share: a scratch folder per test, the repository's own files, scopes that
// set the engine's global switches and restore them, and running a built stage executable with its
// standard output and error read side by side.

import Engine
import Foundation
import XCTest

/// A test case with a fresh scratch folder, removed afterwards.
open class ScratchTestCase: XCTestCase {
    /// The test's own folder under the temporary directory.
    public private(set) var scratch = ""

    override open func setUp() {
        super.setUp()
        scratch = NSTemporaryDirectory() + "\(type(of: self))-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override open func tearDown() {
        try? FileManager.default.removeItem(atPath: scratch)
        super.tearDown()
    }
}

/// Paths of the repository the tests run from.
public enum Repository {
    /// The repository root (found from this file's path).
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    /// The repository's `pipeline.json`.
    public static let config = root + "/pipeline.json"
    /// `../shared/data` beside the repository (absent on a fresh clone: tests that need it skip).
    public static let sharedData = URL(fileURLWithPath: root).deletingLastPathComponent().appendingPathComponent("shared/data").path
}

/// Runs `body` with the engine on `threads` threads, then restores the count it had.
public func withEngineThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
    let before = Parallel.threads
    Parallel.configure(threads: threads)
    defer { Parallel.configure(threads: before) }
    return try body()
}

/// Runs `body` with Winograd convolutions on or off, then restores the setting.
public func withWinograd<T>(_ enabled: Bool, _ body: () throws -> T) rethrows -> T {
    let before = Winograd.enabled
    Winograd.enabled = enabled
    defer { Winograd.enabled = before }
    return try body()
}

/// What a stage executable did.
public struct ExecutableResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs the built executable `name` (found beside the test bundle of `testCase`) in `folder`, with
/// `environment` laid over this process's. Both
/// output pipes are drained at once, so a process writing more than a pipe buffer to either never
/// blocks.
public func runExecutable(_ name: String, _ arguments: [String], in folder: String, bundleOf testCase: AnyClass,
                          environment: [String: String] = [:]) throws -> ExecutableResult {
    // On Linux the test bundle's URL is the products folder itself; on macOS it is the .xctest.
    let bundle = Bundle(for: testCase).bundleURL
    let products = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
    let process = Process()
    process.executableURL = products.appendingPathComponent(name)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: folder)
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let collected = OutputBox()
    let group = DispatchGroup()
    for (pipe, isError) in [(out, false), (err, true)] {
        group.enter()
        DispatchQueue.global().async {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            collected.set(data, error: isError)
            group.leave()
        }
    }
    group.wait()
    process.waitUntilExit()
    return ExecutableResult(status: process.terminationStatus, stdout: String(decoding: collected.stdout, as: UTF8.self),
                            stderr: String(decoding: collected.stderr, as: UTF8.self))
}

/// The two streams' bytes, written by two readers.
private final class OutputBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var stdout = Data()
    private(set) var stderr = Data()

    func set(_ data: Data, error: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if error { stderr = data } else { stdout = data }
    }
}
