// Keyed artifact folders (DESIGN §2): `<root>/<stage>/<variant>/<key>/` with a `manifest.json`
// written last and atomically. key = SHA-256(stage, the config slice the stage reads, the keys of
// its input artifacts, the artifact format version), so a stage whose inputs and settings are
// unchanged finds its complete artifact and is skipped; a killed run leaves no manifest and is
// redone. `<root>/<stage>/<variant>/current` names the newest complete key, which is how later
// stages find a dataset by name.

import Engine
import Foundation
import Imaging

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

/// The artifact root (`--artifacts`, default `artifacts/`).
public struct ArtifactStore: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
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

    /// Where a stage run's artifact lives: its key and folder, and the artifact itself when a
    /// complete one is already there and `force` is off (the run is then skipped).
    public func locate(stage: String, variant: String, config: some Encodable, inputKeys: [String], formatVersion: Int,
                       force: Bool) throws(ArtifactError) -> (key: String, folder: String, existing: StageResult?) {
        let key: String
        do { key = try Self.key(stage: stage, config: config, inputKeys: inputKeys, formatVersion: formatVersion) } catch {
            throw .io(path: root, message: "cannot encode the \(stage) settings: \(error)")
        }
        let folder = folder(stage: stage, variant: variant, key: key)
        let existing = force ? nil : completeManifest(at: folder).map { StageResult(folder: folder, manifest: $0, reused: true) }
        return (key, folder, existing)
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

    /// Starts writing an artifact. Any leftover of an incomplete or forced run is removed first,
    /// so nothing half-written survives into the new artifact — unless `resume` is set, which keeps
    /// the folder of an incomplete run (a training stage continuing from its checkpoint).
    public func begin(stage: String, variant: String, key: String, config: some Encodable,
                      inputs: [ManifestInput], seed: UInt64, threads: Int,
                      blasProvider: String, formatVersion: Int, resume: Bool = false) throws(ArtifactError) -> ArtifactWriter
    {
        let folder = self.folder(stage: stage, variant: variant, key: key)
        let manager = FileManager.default
        do {
            if manager.fileExists(atPath: folder) && !resume { try manager.removeItem(atPath: folder) }
            try manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw .io(path: folder, message: "cannot prepare the artifact folder: \(error.localizedDescription)")
        }
        let configValue: JSONValue
        do { configValue = try JSONValue(encoding: config) } catch {
            throw .io(path: folder, message: "cannot encode the configuration: \(error)")
        }
        return ArtifactWriter(store: self, folder: folder, stage: stage, variant: variant, key: key,
                              config: configValue, inputs: inputs, seed: seed, threads: threads,
                              blasProvider: blasProvider, formatVersion: formatVersion)
    }
}

/// Writes the files of one artifact, each atomically, then the manifest.
public struct ArtifactWriter {
    public let folder: String
    let store: ArtifactStore
    let stage: String
    let variant: String
    let key: String
    let config: JSONValue
    let inputs: [ManifestInput]
    let seed: UInt64
    let threads: Int
    let blasProvider: String
    let formatVersion: Int
    let started = Date()
    private(set) var outputs: [OutputFile] = []

    init(store: ArtifactStore, folder: String, stage: String, variant: String, key: String,
         config: JSONValue, inputs: [ManifestInput], seed: UInt64, threads: Int,
         blasProvider: String, formatVersion: Int)
    {
        self.store = store
        self.folder = folder
        self.stage = stage
        self.variant = variant
        self.key = key
        self.config = config
        self.inputs = inputs
        self.seed = seed
        self.threads = threads
        self.blasProvider = blasProvider
        self.formatVersion = formatVersion
    }

    /// Writes `bytes` to `path` (relative to the artifact folder) and records its hash.
    public mutating func write(_ bytes: [UInt8], to path: String) throws(ArtifactError) {
        do {
            try writeFileAtomically(bytes, to: folder + "/" + path)
        } catch {
            throw .io(path: folder + "/" + path, message: error.description)
        }
        outputs.removeAll { $0.path == path }
        outputs.append(OutputFile(path: path, sha256: SHA256.hex(bytes), bytes: bytes.count))
    }

    /// Writes the manifest (last, atomically) and points `current` at this key.
    ///
    /// - Returns: the manifest written.
    @discardableResult
    public func finish(summary: JSONValue) throws(ArtifactError) -> Manifest {
        let formatter = ISO8601DateFormatter()
        let manifest = Manifest(
            formatVersion: formatVersion, stage: stage, variant: variant, key: key,
            toolVersion: ToolInfo.version, inputs: inputs, config: config, seed: seed,
            threads: threads, blasProvider: blasProvider, convolution: Winograd.enabled ? "winograd" : "patches",
            startedAt: formatter.string(from: started),
            durationSeconds: (Date().timeIntervalSince(started) * 1000).rounded() / 1000,
            outputs: outputs.sorted { $0.path < $1.path }, summary: summary)
        do {
            try writeFileAtomically(try canonicalJSON(manifest), to: folder + "/manifest.json")
            try writeFileAtomically(Array((key + "\n").utf8),
                                    to: "\(store.root)/\(stage)/\(variant)/current")
        } catch let error as ImagingError {
            throw .io(path: folder, message: error.description)
        } catch {
            throw .io(path: folder, message: "cannot encode the manifest: \(error)")
        }
        return manifest
    }
}
