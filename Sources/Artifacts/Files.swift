// Reading and writing files: whole-file reads, and atomic writes (temporary name, fsync, rename) so
// a reader never sees a half-written artifact file and a crash leaves the old file or none.

import Foundation

/// A file that could not be read or written, with its path and the reason.
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// The bytes of the file at `path`: read straight into the array, in as few calls as its size allows.
///
/// - Throws: `FileError` naming `path` when it is missing or unreadable.
public func readFile(_ path: String) throws(FileError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        let exists = FileManager.default.fileExists(atPath: path)
        throw FileError(path: path, message: exists ? "cannot be opened for reading" : "no such file")
    }
    defer { close(fd) }
    var info = stat()
    let size = fstat(fd, &info) == 0 ? max(Int(info.st_size), 0) : 0
    var failure: Int32 = 0
    /// Reads up to `count` bytes into `buffer`; fewer only at the end of the file or on an error.
    func fill(_ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        var done = 0
        while done < count {
            let n = read(fd, buffer! + done, count - done)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { failure = errno }
            if n <= 0 { break }
            done += n
        }
        return done
    }
    var bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in count = fill(buffer.baseAddress, size) }
    // A file that grew since, or one whose size the system does not report (/proc): the rest in pieces.
    var piece = [UInt8](repeating: 0, count: 1 << 16)
    while failure == 0 {
        let n = piece.withUnsafeMutableBytes { fill($0.baseAddress, $0.count) }
        bytes += piece.prefix(n)
        if n < piece.count { break }
    }
    guard failure == 0 else { throw FileError(path: path, message: "read failed: \(String(cString: strerror(failure)))") }
    return bytes
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A reader never sees a half-written file, and a crash leaves the old file (or none) in place.
///
/// - Throws: `FileError` naming `path`.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws(FileError) {
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent().path
    do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    } catch {
        throw FileError(path: folder, message: "cannot create folder: \(error.localizedDescription)")
    }
    let temporary = folder + "/.\(url.lastPathComponent).tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw FileError(path: temporary, message: "cannot create: \(String(cString: strerror(errno)))") }
    var written = 0
    let ok = bytes.withUnsafeBytes { raw -> Bool in
        while written < raw.count {
            let n = write(fd, raw.baseAddress! + written, raw.count - written)
            if n <= 0 { return false }
            written += n
        }
        return fsync(fd) == 0
    }
    let reason = String(cString: strerror(errno))
    close(fd)
    guard ok else {
        unlink(temporary)
        throw FileError(path: path, message: "write failed: \(reason)")
    }
    guard rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw FileError(path: path, message: "cannot move the finished file into place: \(reason)")
    }
}
