// `prepare`: turning a raw data folder into a dataset artifact. Every layout is first listed
// (sorted, so the order never depends on the file system), every image and mask is hashed and
// decoded (sizes, and any corrupt file found before anything is written), then splits are
// assigned and `images.csv`, OR-ed masks, a contact sheet and the manifest are written.

import Foundation
import Imaging

/// Source folder layouts `prepare` reads (DESIGN §6).
public enum Layout: String, CaseIterable, Sendable, Codable {
    /// `{train,test}/{NORMAL,PNEUMONIA}/…` (or `{bacterial,normal,viral}` class folders), optionally under `chest_xray/`.
    case kermany
    /// `CXR_png/*.png`, `ManualMask/{leftMask,rightMask}/*.png` (mask = left OR right).
    case montgomery
    /// `CXR_png/<stem>.png`, `mask/<stem>_mask.png`.
    case shenzhen
    /// `images/<stem>.*`, `masks/<stem>.png`, optional `pairs.csv` (image,mask,class,patient).
    case pairs
    /// The built-in generator's folder (generated first when missing), read as Kermany with masks.
    case synthetic

    /// Whether the layout is a classification set (Keras validation rule under `auto`).
    var isClassification: Bool { self == .kermany || self == .synthetic }
}

/// Why a folder could not be ingested. Every case names the file or folder.
public enum IngestError: Error, CustomStringConvertible {
    case missingFolder(path: String, expected: String)
    case emptyFolder(path: String)
    case invalidSource(path: String, message: String)
    case unlabeled(path: String, message: String)
    case missingMask(image: String, expected: String)
    case image(ImagingError)
    case artifact(ArtifactError)

    public var description: String {
        switch self {
        case let .missingFolder(path, expected): "\(path): missing folder (expected \(expected))"
        case let .emptyFolder(path): "\(path): the folder holds no images"
        case let .invalidSource(path, message): "\(path): \(message)"
        case let .unlabeled(path, message): "\(path): \(message)"
        case let .missingMask(image, expected): "\(image): no lung mask (expected \(expected))"
        case let .image(error): error.description
        case let .artifact(error): error.description
        }
    }
}

/// Everything that decides a dataset artifact's content (its key hashes this and the inputs).
public struct PrepareSettings: Codable, Sendable, Equatable {
    public var layout: Layout
    public var validation: ValidationRule
    public var validationFraction: Double
    /// Patient-grouped test hold-out for layouts without a test folder (0: none).
    public var testFraction: Double
    /// Mark every image as test (an independent evaluation set, like Montgomery in the paper).
    public var allTest: Bool
    public var splitSeed: UInt64
    public var contactSheetImages: Int
    /// Only for the synthetic layout: the generator settings.
    public var synthetic: SyntheticConfig?

    public init(layout: Layout, validation: ValidationRule, validationFraction: Double, testFraction: Double,
                allTest: Bool, splitSeed: UInt64, contactSheetImages: Int, synthetic: SyntheticConfig?)
    {
        self.layout = layout
        self.validation = validation
        self.validationFraction = validationFraction
        self.testFraction = testFraction
        self.allTest = allTest
        self.splitSeed = splitSeed
        self.contactSheetImages = contactSheetImages
        self.synthetic = synthetic
    }
}

/// An image found in the source folder, before decoding.
struct Candidate {
    var path: String
    var label: CXRClass?
    var patient: String
    /// Mask files (relative to the source root) OR-ed into the image's mask.
    var maskParts: [String]
    /// Set by folder layouts that carry a split (Kermany `test`).
    var fixedSplit: Split?
}

/// What a stage run produced: its artifact folder and manifest.
public struct StageResult: Sendable {
    public let folder: String
    public let manifest: Manifest
    /// True when a complete artifact with the same key already existed.
    public let reused: Bool
}

/// Ingests `source` as `layout` into the dataset artifact named `name`.
///
/// - Parameters:
///   - force: rebuild even when a complete artifact with the same key exists.
/// - Throws: `IngestError` naming the file or folder; nothing is written before every image has
///   decoded, and no manifest is written on failure.
public func prepareDataset(source: String, name: String, settings: PrepareSettings, store: ArtifactStore,
                           seed: UInt64, threads: Int, blasProvider: String, force: Bool,
                           sink: EventSink) throws(IngestError) -> StageResult
{
    let root = URL(fileURLWithPath: source).standardizedFileURL.path
    if settings.layout == .synthetic, let synthetic = settings.synthetic {
        try SyntheticCXR.generate(into: root, config: synthetic, threads: threads, sink: sink)
    }
    guard FileManager.default.fileExists(atPath: root) else {
        throw .missingFolder(path: root, expected: "the \(settings.layout.rawValue) data set")
    }
    let (imageRoot, candidates, skipped) = try discover(layout: settings.layout, root: root)

    // Hash every input file (the input key), then decide whether the artifact already exists.
    let files = candidates.flatMap { [$0.path] + $0.maskParts }
    let hashes = try parallelMap(files, threads: threads, sink: sink, task: "hashing files") { (path: String) throws(IngestError) -> String in
        do throws(ImagingError) { return SHA256.hex(try readFile(imageRoot + "/" + path)) } catch { throw .image(error) }
    }
    var inputHasher = SHA256()
    for (path, hash) in zip(files, hashes) { inputHasher.update(Array("\(path)\t\(hash)\n".utf8)) }
    let inputKey = inputHasher.hexDigest()
    let key: String
    do {
        key = try ArtifactStore.key(stage: "prepare", config: settings, inputKeys: [inputKey], formatVersion: datasetFormatVersion)
    } catch {
        throw .invalidSource(path: root, message: "cannot encode settings: \(error)")
    }
    let folder = store.folder(stage: "prepare", variant: name, key: key)
    if !force, let manifest = store.completeManifest(at: folder) {
        do {
            try writeFileAtomically(Array((key + "\n").utf8), to: "\(store.root)/prepare/\(name)/current")
        } catch { throw .image(error) }
        return StageResult(folder: folder, manifest: manifest, reused: true)
    }

    // Decode everything before writing anything.
    let hashOf = Dictionary(zip(files, hashes), uniquingKeysWith: { a, _ in a })
    let decoded = try parallelMap(candidates, threads: threads, sink: sink, task: "decoding images") {
        (candidate: Candidate) throws(IngestError) -> DecodedCandidate in
        try decode(candidate, root: imageRoot)
    }
    var rows: [DatasetRow] = []
    for (candidate, item) in zip(candidates, decoded) {
        let maskPath: String? = candidate.maskParts.isEmpty ? nil
            : candidate.maskParts.count == 1 ? candidate.maskParts[0]
            : "masks/" + ((candidate.path as NSString).lastPathComponent as NSString).deletingPathExtension + ".png"
        rows.append(DatasetRow(path: candidate.path, sha256: hashOf[candidate.path] ?? "", label: candidate.label,
                               patient: candidate.patient, width: item.width, height: item.height,
                               mask: maskPath, split: candidate.fixedSplit ?? .train))
    }
    let rule = assignSplits(&rows, settings: settings)

    // Write: OR-ed masks, the table, the contact sheet, then the manifest.
    let maskRoot = decoded.contains { $0.unionMask != nil } ? folder : imageRoot
    do {
        var writer = try store.begin(
            stage: "prepare", variant: name, key: key, config: settings,
            inputs: [ManifestInput(name: "source", path: root, key: inputKey)],
            seed: seed, threads: threads, blasProvider: blasProvider, formatVersion: datasetFormatVersion)
        for (row, item) in zip(rows, decoded) {
            if let union = item.unionMask, let mask = row.mask {
                try writer.write(try encodePNG(union.image), to: mask)
            }
        }
        try writer.write(Array(datasetCSV(rows).utf8), to: "images.csv")
        let sheet = try contactSheet(rows: rows, imageRoot: imageRoot, maskRoot: maskRoot, decoded: decoded,
                                     count: settings.contactSheetImages)
        if let sheet { try writer.write(try encodePNG(sheet), to: "contact-sheet.png") }
        let summary = summarize(rows, layout: settings.layout, imageRoot: imageRoot, maskRoot: maskRoot,
                                validationRule: rule, skipped: skipped)
        let manifest = try writer.finish(summary: try JSONValue(encoding: summary))
        return StageResult(folder: folder, manifest: manifest, reused: false)
    } catch let error as ArtifactError {
        throw .artifact(error)
    } catch let error as IngestError {
        throw error
    } catch {
        throw .invalidSource(path: folder, message: "\(error)")
    }
}

/// Version of the dataset artifact's files (part of its key).
public let datasetFormatVersion = 1

private func encodePNG(_ image: GrayImage) throws -> [UInt8] {
    do { return try image.pngData() } catch { throw IngestError.image(error) }
}

private func encodePNG(_ image: RGBImage) throws -> [UInt8] {
    do { return try image.pngData() } catch { throw IngestError.image(error) }
}

// MARK: - Listing the layouts

/// The image root, the candidates in a fixed order, and what was skipped.
func discover(layout: Layout, root: String) throws(IngestError) -> (String, [Candidate], [String]) {
    switch layout {
    case .kermany:
        let base = isDirectory(root + "/chest_xray") ? root + "/chest_xray" : root
        return (base, try kermany(base: base, maskRoot: nil), [])
    case .synthetic:
        return (root, try kermany(base: root + "/chest_xray", maskRoot: "chest_xray_masks", prefix: "chest_xray/"), [])
    case .montgomery:
        let images = try imageFiles(in: root + "/CXR_png", expected: "CXR_png/ with the chest X-rays")
        var out: [Candidate] = []
        for file in images {
            var parts: [String] = []
            for side in ["leftMask", "rightMask"] {
                let part = "ManualMask/\(side)/\(file)"
                guard isFile(root + "/" + part) else {
                    throw .missingMask(image: root + "/CXR_png/" + file, expected: root + "/" + part)
                }
                parts.append(part)
            }
            out.append(Candidate(path: "CXR_png/" + file, label: nil, patient: patientID(file), maskParts: parts))
        }
        return (root, out, [])
    case .shenzhen:
        let images = try imageFiles(in: root + "/CXR_png", expected: "CXR_png/ with the chest X-rays")
        guard isDirectory(root + "/mask") else { throw .missingFolder(path: root + "/mask", expected: "mask/<stem>_mask.png") }
        var out: [Candidate] = [], skipped: [String] = []
        for file in images {
            let mask = "mask/\(stem(file))_mask.png"
            if isFile(root + "/" + mask) {
                out.append(Candidate(path: "CXR_png/" + file, label: nil, patient: patientID(file), maskParts: [mask]))
            } else {
                skipped.append("CXR_png/\(file): no \(mask)")
            }
        }
        if out.isEmpty { throw .emptyFolder(path: root + "/mask") }
        return (root, out, skipped)
    case .pairs:
        return (root, try pairs(root: root), [])
    }
}

private func kermany(base: String, maskRoot: String?, prefix: String = "") throws(IngestError) -> [Candidate] {
    guard isDirectory(base + "/train") else {
        throw .missingFolder(path: base + "/train", expected: "train/{NORMAL,PNEUMONIA} (Kermany layout)")
    }
    var out: [Candidate] = []
    for split in ["train", "test"] where split == "train" || isDirectory(base + "/" + split) {
        let folder = base + "/" + split
        let classFolders: [(String, CXRClass?)]
        if isDirectory(folder + "/bacterial") || isDirectory(folder + "/viral") {
            classFolders = CXRClass.allCases.map { ($0.name, $0) }
        } else {
            classFolders = [("NORMAL", .normal), ("PNEUMONIA", nil)]
        }
        for (name, fixed) in classFolders {
            let files = try imageFiles(in: "\(folder)/\(name)", expected: "\(split)/\(name)/ with images")
            for file in files {
                let relative = "\(split)/\(name)/\(file)"
                let label: CXRClass
                if let fixed { label = fixed }
                else if file.lowercased().contains("bacteria") { label = .bacterial }
                else if file.lowercased().contains("virus") { label = .viral }
                else {
                    throw .unlabeled(path: "\(folder)/\(name)/\(file)",
                                     message: "a PNEUMONIA file name must contain 'bacteria' or 'virus'")
                }
                var parts: [String] = []
                if let maskRoot {
                    let mask = "\(maskRoot)/\(split)/\(name)/\(stem(file)).png"
                    guard isFile((base as NSString).deletingLastPathComponent + "/" + mask) else {
                        throw .missingMask(image: "\(folder)/\(name)/\(file)", expected: mask)
                    }
                    parts = [mask]
                }
                out.append(Candidate(path: prefix + relative, label: label, patient: patientID(file),
                                     maskParts: parts, fixedSplit: split == "test" ? .test : nil))
            }
        }
    }
    return out
}

private func pairs(root: String) throws(IngestError) -> [Candidate] {
    guard isDirectory(root + "/images") else { throw .missingFolder(path: root + "/images", expected: "images/<stem>.*") }
    guard isDirectory(root + "/masks") else { throw .missingFolder(path: root + "/masks", expected: "masks/<stem>.png") }
    let listing = root + "/pairs.csv"
    var out: [Candidate] = []
    if isFile(listing) {
        let text: String
        do { text = String(decoding: try readFile(listing), as: UTF8.self) } catch { throw .image(error) }
        let table: [[String]]
        do { table = try parseCSV(text) } catch {
            throw .invalidSource(path: listing, message: "line \(error.line): \(error.message)")
        }
        guard let header = table.first, let imageColumn = header.firstIndex(of: "image"),
              let maskColumn = header.firstIndex(of: "mask") else {
            throw .invalidSource(path: listing, message: "the header must name the columns image and mask (class, patient optional)")
        }
        let classColumn = header.firstIndex(of: "class"), patientColumn = header.firstIndex(of: "patient")
        for (index, row) in table.dropFirst().enumerated() where !(row.count == 1 && row[0].isEmpty) {
            guard row.count == header.count else {
                throw .invalidSource(path: listing, message: "line \(index + 2) has \(row.count) fields, expected \(header.count)")
            }
            let image = "images/" + row[imageColumn], mask = "masks/" + row[maskColumn]
            guard isFile(root + "/" + image) else { throw .invalidSource(path: listing, message: "line \(index + 2): no file \(root)/\(image)") }
            guard isFile(root + "/" + mask) else { throw .missingMask(image: root + "/" + image, expected: root + "/" + mask) }
            var label: CXRClass? = nil
            if let classColumn, !row[classColumn].isEmpty {
                guard let parsed = CXRClass(name: row[classColumn]) else {
                    throw .invalidSource(path: listing, message: "line \(index + 2): unknown class '\(row[classColumn])' "
                                         + "(expected bacterial, normal or viral)")
                }
                label = parsed
            }
            let patient = patientColumn.map { row[$0] }.flatMap { $0.isEmpty ? nil : $0 } ?? patientID(row[imageColumn])
            out.append(Candidate(path: image, label: label, patient: patient, maskParts: [mask]))
        }
        out.sort { utf8Less($0.path, $1.path) }
    } else {
        for file in try imageFiles(in: root + "/images", expected: "images/<stem>.*") {
            let mask = "masks/\(stem(file)).png"
            guard isFile(root + "/" + mask) else { throw .missingMask(image: root + "/images/" + file, expected: root + "/" + mask) }
            out.append(Candidate(path: "images/" + file, label: nil, patient: patientID(file), maskParts: [mask]))
        }
    }
    if out.isEmpty { throw .emptyFolder(path: root + "/images") }
    return out
}

/// The non-hidden regular files of `folder`, sorted by code point (Python `sorted`).
private func imageFiles(in folder: String, expected: String) throws(IngestError) -> [String] {
    guard isDirectory(folder) else { throw .missingFolder(path: folder, expected: expected) }
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    let files = entries.filter { !$0.hasPrefix(".") && isFile(folder + "/" + $0) }.sorted(by: utf8Less)
    if files.isEmpty { throw .emptyFolder(path: folder) }
    return files
}

/// Code-point order (what Python's `sorted` and Keras use), not Swift's locale-free String order.
func utf8Less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

private func isDirectory(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}

private func isFile(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && !directory.boolValue
}

private func stem(_ file: String) -> String { (file as NSString).deletingPathExtension }

/// The patient of a file, from the naming conventions of the public sets: `person123_…` →
/// person123, `NORMAL2-IM-1427-0001` → NORMAL2-IM-1427, `IM-0115-0001` → IM-0115,
/// `MCUCXR_0001_0` / `CHNCXR_0001_0` → MCUCXR_0001 / CHNCXR_0001; otherwise the file stem.
public func patientID(_ file: String) -> String {
    let name = stem((file as NSString).lastPathComponent)
    let underscore = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
    if name.hasPrefix("person"), let first = underscore.first { return first }
    if name.hasPrefix("MCUCXR_") || name.hasPrefix("CHNCXR_"), underscore.count >= 2 {
        return underscore[0] + "_" + underscore[1]
    }
    let dash = name.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
    if let im = dash.firstIndex(of: "IM"), im + 1 < dash.count {
        return dash[...(im + 1)].joined(separator: "-")
    }
    return name
}

// MARK: - Decoding

struct DecodedCandidate: Sendable {
    var width: Int
    var height: Int
    /// The OR of several mask parts (Montgomery), written into the artifact.
    var unionMask: Mask?
}

private func decode(_ candidate: Candidate, root: String) throws(IngestError) -> DecodedCandidate {
    let imagePath = root + "/" + candidate.path
    let image: GrayImage
    do { image = try GrayImage(contentsOf: imagePath) } catch { throw .image(error) }
    var union: Mask? = nil
    for part in candidate.maskParts {
        let maskPath = root + "/" + part
        let maskImage: GrayImage
        do { maskImage = try GrayImage(contentsOf: maskPath) } catch { throw .image(error) }
        guard maskImage.width == image.width, maskImage.height == image.height else {
            throw .image(.sizeMismatch(source: maskPath, expected: "\(image.width)×\(image.height) like its image \(imagePath)",
                                       actual: "\(maskImage.width)×\(maskImage.height)"))
        }
        let mask = Mask(thresholding: maskImage)
        if candidate.maskParts.count > 1 {
            union = union.map { Mask(width: $0.width, height: $0.height, bits: zip($0.bits, mask.bits).map { $0 || $1 }) } ?? mask
        }
    }
    return DecodedCandidate(width: image.width, height: image.height, unionMask: union)
}

/// `transform` over `items` on `threads` workers with fixed strided partitions; results keep
/// the input order and the error thrown is the one of the lowest index, so runs are repeatable.
func parallelMap<T, R>(_ items: [T], threads: Int, sink: EventSink, task: String,
                       _ transform: (T) throws(IngestError) -> R) throws(IngestError) -> [R]
{
    var results = [R?](repeating: nil, count: items.count)
    var failures = [IngestError?](repeating: nil, count: items.count)
    let counter = ProgressCounter()
    let step = max(1, items.count / 20)
    withoutActuallyEscaping(transform) { transform in
        results.withUnsafeMutableBufferPointer { out in
            failures.withUnsafeMutableBufferPointer { errors in
                let out = UncheckedSendable(out), errors = UncheckedSendable(errors)
                let work = UncheckedSendable(transform), items = UncheckedSendable(items)
                DispatchQueue.concurrentPerform(iterations: max(1, threads)) { worker in
                    for index in stride(from: worker, to: items.value.count, by: max(1, threads)) {
                        do throws(IngestError) { out.value[index] = try work.value(items.value[index]) } catch { errors.value[index] = error }
                        let done = counter.increment()
                        if done % step == 0 || done == items.value.count { sink(.progress(task: task, done: done, total: items.value.count)) }
                    }
                }
            }
        }
    }
    if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
    return results.compactMap { $0 }
}
