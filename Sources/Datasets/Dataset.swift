// The dataset artifact written by `prepare`: one row per image with its path, content hash,
// class, patient, size, mask and split (`images.csv`), and the counts and class weights in the
// manifest summary.

import Artifacts
import Foundation

/// The three classes in Keras `flow_from_directory` order (SPEC notation: 0, 1, 2).
public enum CXRClass: Int, Codable, Sendable, CaseIterable, Comparable {
    case bacterial = 0
    case normal = 1
    case viral = 2

    public var name: String {
        switch self {
        case .bacterial: "bacterial"
        case .normal: "normal"
        case .viral: "viral"
        }
    }

    /// Parses a class name as written in files: the canonical names, the Kermany spellings
    /// (`bacteria`, `virus`) and index digits.
    public init?(name: String) {
        switch name.lowercased() {
        case "bacterial", "bacteria", "0": self = .bacterial
        case "normal", "1": self = .normal
        case "viral", "virus", "2": self = .viral
        default: return nil
        }
    }

    public static func < (a: CXRClass, b: CXRClass) -> Bool { a.rawValue < b.rawValue }
}

/// Where an image is used.
public enum Split: String, Codable, Sendable, CaseIterable {
    case train
    case val
    case test
}

/// One image of a dataset.
public struct DatasetRow: Sendable, Equatable {
    /// Relative to the dataset's image root.
    public var path: String
    public var sha256: String
    public var label: CXRClass?
    public var patient: String
    public var width: Int
    public var height: Int
    /// Relative to the dataset's mask root, when the image has a lung mask.
    public var mask: String?
    public var split: Split

    public init(path: String, sha256: String, label: CXRClass?, patient: String, width: Int,
                height: Int, mask: String?, split: Split)
    {
        self.path = path
        self.sha256 = sha256
        self.label = label
        self.patient = patient
        self.width = width
        self.height = height
        self.mask = mask
        self.split = split
    }

    static let header = ["path", "sha256", "class", "patient", "width", "height", "mask", "split"]

    var fields: [String] {
        [path, sha256, label?.name ?? "", patient, String(width), String(height), mask ?? "", split.rawValue]
    }
}

/// The manifest summary of a dataset artifact.
public struct DatasetSummary: Codable, Sendable, Equatable {
    public var layout: String
    /// Absolute folder the image paths are relative to.
    public var imageRoot: String
    /// Absolute folder the mask paths are relative to (the artifact itself for OR-ed masks).
    public var maskRoot: String
    public var images: Int
    public var masks: Int
    public var validationRule: String
    /// counts[split][class name] (class name "none" for unlabelled images).
    public var counts: [String: [String: Int]]
    /// Balanced weights from the training split, n / (K·n_c) over the classes present
    /// (scikit-learn `compute_class_weight('balanced')`), keyed by class index.
    public var classWeights: [String: Double]
    /// Images skipped because the layout allows it (Shenzhen images without a mask), with why.
    public var skipped: [String]

    public init(layout: String, imageRoot: String, maskRoot: String, images: Int, masks: Int, validationRule: String,
                counts: [String: [String: Int]], classWeights: [String: Double], skipped: [String]) {
        self.layout = layout
        self.imageRoot = imageRoot
        self.maskRoot = maskRoot
        self.images = images
        self.masks = masks
        self.validationRule = validationRule
        self.counts = counts
        self.classWeights = classWeights
        self.skipped = skipped
    }
}

/// A dataset loaded from its artifact.
public struct Dataset: Sendable {
    public let folder: String
    public let summary: DatasetSummary
    public let rows: [DatasetRow]

    /// Reads the dataset artifact in `folder`.
    ///
    /// - Throws: `ArtifactError` naming the file and row.
    public init(folder: String, manifest: Manifest) throws(ArtifactError) {
        self.folder = folder
        do {
            summary = try JSONDecoder().decode(DatasetSummary.self, from: JSONEncoder().encode(manifest.summary))
        } catch {
            throw .invalidManifest(path: folder + "/manifest.json", message: "summary is not a dataset summary: \(error)")
        }
        let path = folder + "/images.csv"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .incomplete(path: path, message: "missing")
        }
        let table: [[String]]
        do { table = try parseCSV(String(decoding: data, as: UTF8.self)) } catch {
            throw .invalidManifest(path: path, message: "line \(error.line): \(error.message)")
        }
        guard table.first == DatasetRow.header else {
            throw .invalidManifest(path: path, message: "header must be \(DatasetRow.header.joined(separator: ","))")
        }
        var rows: [DatasetRow] = []
        for (index, f) in table.dropFirst().enumerated() {
            guard f.count == 8, let width = Int(f[4]), let height = Int(f[5]),
                  let split = Split(rawValue: f[7]), f[2].isEmpty || CXRClass(name: f[2]) != nil
            else { throw .invalidManifest(path: path, message: "row \(index + 2) is malformed") }
            rows.append(DatasetRow(path: f[0], sha256: f[1], label: f[2].isEmpty ? nil : CXRClass(name: f[2]),
                                   patient: f[3], width: width, height: height,
                                   mask: f[6].isEmpty ? nil : f[6], split: split))
        }
        self.rows = rows
    }

    /// Absolute path of a row's image.
    public func imagePath(_ row: DatasetRow) -> String { summary.imageRoot + "/" + row.path }

    /// Absolute path of a row's mask, if it has one.
    public func maskPath(_ row: DatasetRow) -> String? { row.mask.map { summary.maskRoot + "/" + $0 } }
}

/// CSV text of dataset rows (`images.csv`).
public func datasetCSV(_ rows: [DatasetRow]) -> String {
    csvText(header: DatasetRow.header, rows: rows.map(\.fields))
}

extension Dataset {
    /// The dataset named `name` (what a stage's `--data NAME` resolves to).
    ///
    /// - Throws: `ArtifactError.notFound` naming the stage and name when it was never prepared.
    public static func named(_ name: String, in store: ArtifactStore) throws(ArtifactError) -> Dataset {
        let (folder, manifest) = try store.dataset(named: name)
        return try Dataset(folder: folder, manifest: manifest)
    }
}

extension ArtifactStore {
    /// The stages whose artifacts are datasets, in the order a name is looked up.
    public static let datasetStages = ["prepare", "mask-crop"]

    /// The newest dataset artifact named `name`: prepared from raw images, or else made by
    /// `mask-crop`.
    ///
    /// - Throws: `ArtifactError.notFound` when neither stage has one of that name.
    public func dataset(named name: String) throws(ArtifactError) -> (folder: String, manifest: Manifest) {
        for stage in Self.datasetStages where FileManager.default.fileExists(atPath: "\(root)/\(stage)/\(name)/current") {
            return try current(stage: stage, variant: name)
        }
        throw .notFound(stage: Self.datasetStages.joined(separator: "' or '"), variant: name, root: root)
    }
}
