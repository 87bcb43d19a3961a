// One writer per artifact key, across processes and machines sharing a store: an exclusive POSIX
// record lock on `<stage>/<variant>/<key>.lock` beside the artifact folder, taken before a stage
// starts writing and held until it finishes or its process ends (the kernel, or the NFS lock
// manager, drops it then — a killed run never leaves a lock behind). A second run of the key waits,
// then finds the artifact complete and reuses it. The file holds the holder's host, pid and start
// time, shown to whoever waits.

import Foundation

#if canImport(Glibc)
import Glibc
/// Open-file-description locks (Linux ≥ 3.15): owned by the open file, not the process, so two
/// stores in one process exclude each other too; released when the descriptor closes.
private let lockCommand: Int32 = 37  // F_OFD_SETLK
private let lockWaitCommand: Int32 = 38  // F_OFD_SETLKW
#else
import Darwin
private let lockCommand = F_SETLK
private let lockWaitCommand = F_SETLKW
#endif

/// An exclusive lock on one artifact key.
public final class ArtifactLock: @unchecked Sendable {
    public let path: String
    private let mutex = NSLock()
    private var descriptor: Int32

    /// Paths held in this process, by the thread that took each: that thread taking one again would
    /// wait on itself forever (another thread simply waits, as another process does).
    nonisolated(unsafe) private static var held: [String: pthread_t] = [:]
    private static let heldLock = NSLock()

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Takes the lock at `path` (creating the file), waiting while another process holds it;
    /// `waiting` is told who holds it, once, before the wait.
    ///
    /// - Throws: `ArtifactError.io` naming the file when it cannot be opened or locked, or when this
    ///   thread already holds it.
    public static func acquire(path: String, waiting: (String) -> Void) throws(ArtifactError) -> ArtifactLock {
        let thread = pthread_self()
        heldLock.lock()
        let mine = held[path].map { pthread_equal($0, thread) != 0 } ?? false
        heldLock.unlock()
        if mine { throw .io(path: path, message: "this thread is already writing this artifact") }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .io(path: path, message: "cannot open the artifact's lock file: \(String(cString: strerror(errno)))")
        }
        if !setLock(fd, command: lockCommand) {
            guard errno == EAGAIN || errno == EACCES else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw .io(path: path, message: "cannot lock the artifact (\(reason)); on NFS the lock manager (lockd/statd) must run")
            }
            waiting(describeHolder(holder(fd)))
            while !setLock(fd, command: lockWaitCommand) {
                guard errno == EINTR else {
                    let reason = String(cString: strerror(errno))
                    close(fd)
                    throw .io(path: path, message: "cannot lock the artifact (\(reason))")
                }
            }
        }
        heldLock.lock()
        held[path] = thread
        heldLock.unlock()
        let stamp = ISO8601DateFormatter().string(from: Date())
        let text = Array("\(ProcessInfo.processInfo.hostName) pid \(getpid()) since \(stamp)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return ArtifactLock(path: path, descriptor: fd)
    }

    /// Gives the lock up (idempotent); the file stays, so later runs lock the same file.
    public func release() {
        mutex.lock()
        defer { mutex.unlock() }
        guard descriptor >= 0 else { return }
        Self.forget(path)  // before the close: a thread waiting in this process takes it at the close
        _ = ftruncate(descriptor, 0)
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }

    private static func forget(_ path: String) {
        heldLock.lock()
        held[path] = nil
        heldLock.unlock()
    }

    private static func setLock(_ fd: Int32, command: Int32) -> Bool {
        var request = flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = 0
        request.l_len = 0
        request.l_pid = 0
        return fcntl(fd, command, &request) == 0
    }

    /// The holder as its lock file names it, and whether that process is gone: a lock this host's
    /// kernel keeps is dropped with its process, so a dead holder on this host means a stale lock
    /// kept by a network filesystem's lock manager.
    static func describeHolder(_ text: String) -> String {
        let words = text.split(separator: " ")
        guard words.count >= 3, words[1] == "pid", let pid = Int32(words[2]),
              String(words[0]) == ProcessInfo.processInfo.hostName, kill(pid, 0) != 0, errno == ESRCH else { return text }
        return text + " (that process no longer runs on this host: a stale lock kept by the filesystem's lock manager; "
            + "it goes when the lock manager notices, or remove the .lock file once no run of this key is left)"
    }

    /// Who holds the lock, as its holder wrote it.
    private static func holder(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        let text = count > 0 ? String(decoding: buffer.prefix(count), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        return text.isEmpty ? "another process" : text
    }
}
