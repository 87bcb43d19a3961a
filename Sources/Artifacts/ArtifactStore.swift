// Keyed artifact folders (DESIGN §2): `<root>/<stage>/<variant>/<key>/` with a `manifest.json`
// written last and atomically. key = SHA-256(stage, the config slice the stage reads, the keys of
// its input artifacts, the artifact format version), so a stage whose inputs and settings are
// unchanged finds its complete artifact and is skipped; a killed run leaves no manifest and is
// redone. `<root>/<stage>/<variant>/current` names the newest complete key, which is how later
// stages find a dataset by name.

import Foundation

/// Version of the tool that wrote an artifact (in every manifest).
public enum ToolInfo {
    public static let version = "0.1.0"
}

/// Errors of the artifact store, naming the folder or file.
public enum ArtifactError: Error, CustomStringConvertible {
    case io(path: String, message: String)
    case notFound(stage: String, variant: String, root: String)
    /// A needed artifact is missing, with what to run to make it.
    case missingInput(message: String)
    case incomplete(path: String, message: String)
    case invalidManifest(path: String, message: String)

    public var description: String {
        switch self {
        case let .io(path, message): "\(path): \(message)"
        case let .notFound(stage, variant, root):
            "no complete '\(stage)' artifact named '\(variant)' under \(root) (run that stage first)"
        case let .missingInput(message): message
        case let .incomplete(path, message): "\(path): incomplete artifact: \(message)"
        case let .invalidManifest(path, message): "\(path): unreadable manifest: \(message)"
        }
    }
}

/// One file an artifact holds, with its content hash.
public struct OutputFile: Codable, Sendable, Equatable {
    /// Relative to the artifact folder.
    public var path: String
    public var sha256: String
    public var bytes: Int
}

/// An input of a stage run: another artifact (by key) or raw data (by content hash).
public struct ManifestInput: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    /// The input artifact's key, or a SHA-256 over raw input files.
    public var key: String

    public init(name: String, path: String, key: String) {
        self.name = name
        self.path = path
        self.key = key
    }
}

/// `manifest.json`: what made an artifact and what it holds. Written last; its presence is what
/// makes an artifact complete.
public struct Manifest: Codable, Sendable {
    public var formatVersion: Int
    public var stage: String
    public var variant: String
    public var key: String
    public var toolVersion: String
    public var inputs: [ManifestInput]
    public var config: JSONValue
    public var seed: UInt64
    public var threads: Int
    public var blasProvider: String
    /// How the engine computed stride-1 3×3 convolutions: "winograd" (the default) or "patches"
    /// (`CXR_WINOGRAD=0`). Like the BLAS provider, it changes the low bits of trained weights; absent
    /// in manifests written before the choice existed.
    public var convolution: String?
    public var startedAt: String
    public var durationSeconds: Double
    public var outputs: [OutputFile]
    /// Stage-specific results (a dataset's class counts, a model's best epoch, …).
    public var summary: JSONValue
}

/// What made a stage run's numbers besides its settings: recorded in every manifest, decided once
/// when a stage starts (never read from globals while writing).
public struct RunEnvironment: Sendable, Equatable {
    /// Worker threads of the engine's loops.
    public var threads: Int
    /// The BLAS library the engine calls ("blis", "openblas").
    public var blasProvider: String
    /// How the engine computed stride-1 3×3 convolutions: "winograd" or "patches".
    public var convolution: String

    public init(threads: Int, blasProvider: String, convolution: String) {
        self.threads = threads
        self.blasProvider = blasProvider
        self.convolution = convolution
    }
}

/// What a stage run produced: its artifact folder and manifest.
public struct StageResult: Sendable {
    public let folder: String
    public let manifest: Manifest
    /// True when a complete artifact with the same key already existed.
    public let reused: Bool

    public init(folder: String, manifest: Manifest, reused: Bool) {
        self.folder = folder
        self.manifest = manifest
        self.reused = reused
    }
}

/// The artifact root (`--artifacts`, default `artifacts/`) and the environment the runs writing
/// into it record.
public struct ArtifactStore: Sendable {
    public let root: String
    public let environment: RunEnvironment
    /// Where the store says that a run waits for another process writing the same key.
    public let sink: EventSink

    public init(root: String, environment: RunEnvironment, sink: @escaping EventSink = { _ in }) {
        self.root = root
        self.environment = environment
        self.sink = sink
    }

    /// The key of a stage run: 16 hex digits of SHA-256 over the stage name, the canonical JSON of
    /// its config slice, its input keys and the stage's artifact format version.
    public static func key(stage: String, config: some Encodable, inputKeys: [String],
                           formatVersion: Int) throws -> String
    {
        var hasher = SHA256()
        hasher.update(Array("stage=\(stage)\nformat=\(formatVersion)\n".utf8))
        hasher.update(try canonicalJSON(config))
        for key in inputKeys { hasher.update(Array("input=\(key)\n".utf8)) }
        return String(hasher.hexDigest().prefix(16))
    }

    /// A stage run: its key and folder, and the artifact itself when a complete one is already there
    /// and `force` is off (the run is then skipped). A run that will write holds the key's lock
    /// (`ArtifactLock`) until it finishes: if another process is writing the key, this waits for it and
    /// then returns its complete artifact.
    ///
    /// - Parameter settings: everything that decides the artifact besides its inputs (hashed into the key
    ///   and written into the manifest).
    public func locate(stage: String, variant: String, settings: some Encodable, inputKeys: [String], formatVersion: Int,
                       force: Bool) throws(ArtifactError) -> ArtifactRun {
        let key: String, config: JSONValue
        do {
            key = try Self.key(stage: stage, config: settings, inputKeys: inputKeys, formatVersion: formatVersion)
            config = try JSONValue(encoding: settings)
        } catch {
            throw .io(path: root, message: "cannot encode the \(stage) settings: \(error)")
        }
        let folder = folder(stage: stage, variant: variant, key: key)
        func complete() -> StageResult? {
            force ? nil : completeManifest(at: folder).map { StageResult(folder: folder, manifest: $0, reused: true) }
        }
        if let existing = complete() {
            return ArtifactRun(store: self, stage: stage, variant: variant, key: key, config: config, formatVersion: formatVersion,
                               existing: existing, lock: nil)
        }
        let parent = (folder as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw .io(path: parent, message: "cannot create the folder: " + folderProblem(parent, error))
        }
        let lock = try ArtifactLock.acquire(path: folder + ".lock") { holder in
            sink(.note("waiting for \(holder), which is writing \(folder) (its lock: \(folder).lock)"))
        }
        // Whoever held the lock may have completed the artifact meanwhile.
        if let existing = complete() {
            lock.release()
            return ArtifactRun(store: self, stage: stage, variant: variant, key: key, config: config, formatVersion: formatVersion,
                               existing: existing, lock: nil)
        }
        return ArtifactRun(store: self, stage: stage, variant: variant, key: key, config: config, formatVersion: formatVersion,
                           existing: nil, lock: lock)
    }

    public func folder(stage: String, variant: String, key: String) -> String {
        "\(root)/\(stage)/\(variant)/\(key)"
    }

    /// The manifest of a complete artifact at `folder`, or nil when there is none or it is
    /// incomplete (a listed output is missing or has another size).
    public func completeManifest(at folder: String) -> Manifest? {
        guard let data = FileManager.default.contents(atPath: folder + "/manifest.json"),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return nil }
        for output in manifest.outputs {
            let attributes = try? FileManager.default.attributesOfItem(atPath: folder + "/" + output.path)
            guard let size = attributes?[.size] as? Int, size == output.bytes else { return nil }
        }
        return manifest
    }

    /// The newest complete artifact of `stage` named `variant` (what `--data NAME` resolves to).
    ///
    /// - Throws: `ArtifactError.notFound` when there is none.
    public func current(stage: String, variant: String) throws(ArtifactError) -> (folder: String, manifest: Manifest) {
        let pointer = "\(root)/\(stage)/\(variant)/current"
        guard let data = FileManager.default.contents(atPath: pointer),
              let key = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              !key.isEmpty
        else { throw .notFound(stage: stage, variant: variant, root: root) }
        let folder = self.folder(stage: stage, variant: variant, key: key)
        guard let manifest = completeManifest(at: folder) else {
            throw .incomplete(path: folder, message: "its manifest is missing or lists files that are not there; rerun the stage")
        }
        return (folder, manifest)
    }
}

/// One stage run located in the store: where it writes and, when it was already done, its artifact.
public struct ArtifactRun: Sendable {
    public let store: ArtifactStore
    public let stage: String
    public let variant: String
    public let key: String
    /// The settings as written into the manifest.
    public let config: JSONValue
    public let formatVersion: Int
    /// The complete artifact of this key, unless forced.
    public let existing: StageResult?
    /// Held while this run writes the artifact (nil when it is reused).
    let lock: ArtifactLock?
    /// When the stage located this key, before its work: the manifest's duration counts from here,
    /// as stages that compute first and write at the end call `begin` only then.
    let located = Date()

    public var folder: String { store.folder(stage: stage, variant: variant, key: key) }

    /// Starts writing the artifact. Any leftover of an incomplete or forced run is removed first,
    /// so nothing half-written survives into the new artifact — unless `resume` is set, which keeps
    /// the folder of an incomplete run (a training stage continuing from its checkpoint).
    public func begin(inputs: [ManifestInput], seed: UInt64, resume: Bool = false) throws(ArtifactError) -> ArtifactWriter {
        let manager = FileManager.default
        do {
            if manager.fileExists(atPath: folder) && !resume { try manager.removeItem(atPath: folder) }
            try manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw .io(path: folder, message: "cannot prepare the artifact folder: " + folderProblem(folder, error))
        }
        return ArtifactWriter(run: self, inputs: inputs, seed: seed)
    }

    /// The artifact of this key when another process has completed it since `locate` (two runs of
    /// one key: the one that finishes second uses the first's instead of failing on its files).
    public func completedElsewhere() -> StageResult? {
        store.completeManifest(at: folder).map { StageResult(folder: folder, manifest: $0, reused: true) }
    }

    /// Points `<stage>/<variant>/current` at this run's key (for a reused artifact; `finish` does it
    /// for a new one).
    public func markCurrent() throws(ArtifactError) {
        do {
            try writeFileAtomically(Array((key + "\n").utf8), to: "\(store.root)/\(stage)/\(variant)/current")
        } catch {
            throw .io(path: error.path, message: error.message)
        }
    }
}

/// Writes the files of one artifact, each atomically, then the manifest.
public struct ArtifactWriter {
    public let run: ArtifactRun
    let inputs: [ManifestInput]
    let seed: UInt64
    let started: Date
    private(set) var outputs: [OutputFile] = []

    init(run: ArtifactRun, inputs: [ManifestInput], seed: UInt64) {
        self.run = run
        self.inputs = inputs
        self.seed = seed
        started = run.located
    }

    public var folder: String { run.folder }

    /// Writes `bytes` to `path` (relative to the artifact folder) and records its hash.
    public mutating func write(_ bytes: [UInt8], to path: String) throws(ArtifactError) {
        do {
            try writeFileAtomically(bytes, to: folder + "/" + path)
        } catch {
            throw .io(path: folder + "/" + path, message: error.message)
        }
        record(bytes, writtenTo: path)
    }

    /// Records `bytes`, the content of `path` (relative to the artifact folder) as this run wrote
    /// it earlier and has just read it back, as an output without writing it again.
    public mutating func record(_ bytes: [UInt8], writtenTo path: String) {
        outputs.removeAll { $0.path == path }
        outputs.append(OutputFile(path: path, sha256: SHA256.hex(bytes), bytes: bytes.count))
    }

    /// Writes the manifest (last, atomically) and points `current` at this key.
    ///
    /// - Returns: the manifest written.
    @discardableResult
    public func finish(summary: JSONValue) throws(ArtifactError) -> Manifest {
        let formatter = ISO8601DateFormatter()
        let environment = run.store.environment
        let manifest = Manifest(
            formatVersion: run.formatVersion, stage: run.stage, variant: run.variant, key: run.key,
            toolVersion: ToolInfo.version, inputs: inputs, config: run.config, seed: seed,
            threads: environment.threads, blasProvider: environment.blasProvider, convolution: environment.convolution,
            startedAt: formatter.string(from: started),
            durationSeconds: (Date().timeIntervalSince(started) * 1000).rounded() / 1000,
            outputs: outputs.sorted { $0.path < $1.path }, summary: summary)
        let bytes: [UInt8]
        do { bytes = try canonicalJSON(manifest) } catch {
            throw .io(path: folder, message: "cannot encode the manifest: \(error)")
        }
        do {
            try writeFileAtomically(bytes, to: folder + "/manifest.json")
        } catch {
            throw .io(path: error.path, message: error.message)
        }
        try run.markCurrent()
        run.lock?.release()
        return manifest
    }

    /// The artifact this writer finished, as a stage hands it back.
    public func result(_ manifest: Manifest) -> StageResult {
        StageResult(folder: folder, manifest: manifest, reused: false)
    }
}

/// Why `folder` could not be created, in words: the first part of its path that exists and is a
/// file (`--artifacts` naming a file, say), else the system's reason.
func folderProblem(_ folder: String, _ error: any Error) -> String {
    var url = URL(fileURLWithPath: "/")
    for component in URL(fileURLWithPath: folder).standardizedFileURL.pathComponents.dropFirst() {
        url.appendPathComponent(component)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), !isFolder.boolValue {
            return "\(url.path) is a file, not a folder"
        }
    }
    return (error as NSError).localizedFailureReason ?? error.localizedDescription
}

