// The store's one-writer-per-key lock: a second run of a key waits for the first and then reuses
// its artifact instead of training again or tearing its files; a run that ends without finishing
// leaves no lock behind; the same thread asking twice gets an error, not a deadlock.

@testable import Artifacts
import Foundation
import TestSupport
import XCTest

final class StoreLockingTests: ScratchTestCase {
    private let environment = RunEnvironment(threads: 1, blasProvider: "test", convolution: "test")

    private func locate(_ store: ArtifactStore) throws -> ArtifactRun { try locateKey(store) }

    func testASecondRunOfAKeyWaitsThenReusesTheFirstsArtifact() throws {
        let first = try locate(ArtifactStore(root: scratch, environment: environment))
        XCTAssertNil(first.existing)
        let holder = try String(contentsOfFile: first.folder + ".lock", encoding: .utf8)
        XCTAssertTrue(holder.contains("pid \(getpid()) since "), holder)

        // Another run of the key (its own store, as another process or job would have) on another thread.
        let notes = NSLock()
        nonisolated(unsafe) var said: [String] = []
        nonisolated(unsafe) var second: Result<ArtifactRun, any Error>?
        let done = DispatchSemaphore(value: 0)
        let store = ArtifactStore(root: scratch, environment: environment, sink: { event in
            if case let .note(text) = event { notes.lock(); said.append(text); notes.unlock() }
        })
        Thread {
            second = Result { try locateKey(store) }
            done.signal()
        }.start()
        // It must be waiting, naming the holder, and must not return while the first writes.
        var waiting = false
        for _ in 0..<200 where !waiting {
            Thread.sleep(forTimeInterval: 0.01)
            notes.lock(); waiting = !said.isEmpty; notes.unlock()
        }
        XCTAssertTrue(waiting, "the second run never said it was waiting")
        XCTAssertTrue(said.first?.contains("pid \(getpid())") ?? false, "\(said)")
        XCTAssertEqual(done.wait(timeout: .now() + 0.2), .timedOut, "the second run went on while the first held the key")

        var writer = try first.begin(inputs: [], seed: 0)
        try writer.write([1, 2, 3], to: "weights.bin")
        try writer.finish(summary: .null)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        let reused = try XCTUnwrap(try XCTUnwrap(second).get().existing, "the second run must reuse the first's artifact")
        XCTAssertTrue(reused.reused)
        XCTAssertEqual(reused.folder, first.folder)
        XCTAssertEqual(reused.manifest.outputs.map(\.path), ["weights.bin"])
    }

    func testARunThatEndsWithoutFinishingLeavesNoLock() throws {
        let store = ArtifactStore(root: scratch, environment: environment, sink: { event in
            if case let .note(text) = event { XCTFail("no one holds the key, yet: \(text)") }
        })
        do {
            let failed = try locate(store)
            _ = try failed.begin(inputs: [], seed: 0)  // starts writing, then fails (goes out of scope)
        }
        let next = try locate(store)
        XCTAssertNil(next.existing)
        XCTAssertEqual(try String(contentsOfFile: next.folder + ".lock", encoding: .utf8).contains("pid \(getpid())"), true)
    }

    func testTheManifestsDurationCountsFromLocatingTheKeyNotFromBeginningToWrite() throws {
        // Stages that compute first and write at the end (segment evaluate, say) call `begin` late;
        // their work must still show in the report's wall times.
        let run = try locate(ArtifactStore(root: scratch, environment: environment))
        Thread.sleep(forTimeInterval: 0.2)  // the stage's work
        let manifest = try run.begin(inputs: [], seed: 0).finish(summary: .object([:]))
        XCTAssertGreaterThanOrEqual(manifest.durationSeconds, 0.2)
    }

    func testAHolderThatNoLongerRunsIsCalledAStaleLock() {
        let host = ProcessInfo.processInfo.hostName
        // This process runs; a pid beyond the kernel's limit never does.
        XCTAssertEqual(ArtifactLock.describeHolder("\(host) pid \(getpid()) since t"), "\(host) pid \(getpid()) since t")
        XCTAssertTrue(ArtifactLock.describeHolder("\(host) pid 2147483000 since t").contains("no longer runs on this host: a stale lock"))
        // On another host it cannot be checked from here.
        XCTAssertEqual(ArtifactLock.describeHolder("elsewhere pid 2147483000 since t"), "elsewhere pid 2147483000 since t")
    }

    func testTheSameThreadAskingTwiceIsAnErrorNotADeadlock() throws {
        let store = ArtifactStore(root: scratch, environment: environment)
        let held = try locate(store)
        XCTAssertThrowsError(try locate(store)) { error in
            XCTAssertTrue("\(error)".contains("already writing this artifact"), "\(error)")
            XCTAssertTrue("\(error)".contains(held.folder + ".lock"), "\(error)")
        }
    }
}

/// The one key every test here writes.
private func locateKey(_ store: ArtifactStore) throws -> ArtifactRun {
    try store.locate(stage: "stage", variant: "v", settings: ["a": 1], inputKeys: [], formatVersion: 1, force: false)
}
