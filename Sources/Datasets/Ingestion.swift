// `prepare`: turning a raw data folder into a dataset artifact. Every layout is first listed
// (sorted, so the order never depends on the file system), every image and mask is hashed and
// decoded (sizes, and any corrupt file found before anything is written), then splits are
// assigned and `images.csv`, OR-ed masks, a contact sheet and the manifest are written.

import Artifacts
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
    public var isClassification: Bool { self == .kermany || self == .synthetic }
}

/// Why a folder could not be ingested. Every case names the file or folder.
public enum IngestError: Error, CustomStringConvertible {
    case missingFolder(path: String, expected: String)
    case emptyFolder(path: String)
    case invalidSource(path: String, message: String)
    case unlabeled(path: String, message: String)
    case missingMask(image: String, expected: String)
    case image(ImagingError)
    case file(FileError)
    case artifact(ArtifactError)

    public var description: String {
        switch self {
        case let .missingFolder(path, expected): "\(path): missing folder (expected \(expected))"
        case let .emptyFolder(path): "\(path): the folder holds no images"
        case let .invalidSource(path, message): "\(path): \(message)"
        case let .unlabeled(path, message): "\(path): \(message)"
        case let .missingMask(image, expected): "\(image): no lung mask (expected \(expected))"
        case let .image(error): error.description
        case let .file(error): error.description
        case let .artifact(error): error.description
        }
    }
}

/// An image found in the source folder, before decoding.
struct Candidate: Sendable {
    var path: String
    var label: CXRClass?
    var patient: String
    /// Mask files (relative to the source root) OR-ed into the image's mask.
    var maskParts: [String]
    /// Set by folder layouts that carry a split (Kermany `test`).
    var fixedSplit: Split?
}

/// A source folder listed in its layout with every file hashed: what decides a dataset's inputs.
public struct SourceListing: Sendable {
    /// The source folder, absolute.
    public let root: String
    /// The folder image paths are relative to.
    public let imageRoot: String
    /// Images the layout allows to skip (Shenzhen images without a mask), with why.
    public let skipped: [String]
    /// SHA-256 over every image and mask file's relative path and content hash.
    public let inputKey: String
    let candidates: [Candidate]
    let hashes: [String: String]

    /// Lists `source` as `layout` (sorted, so the order never depends on the file system) and hashes
    /// every image and mask file.
    ///
    /// - Throws: `IngestError` naming the missing folder, unreadable file or unlabelled image.
    public init(source: String, layout: Layout, threads: Int, sink: EventSink) throws(IngestError) {
        root = URL(fileURLWithPath: source).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: root) else {
            throw .missingFolder(path: root, expected: "the \(layout.rawValue) data set")
        }
        (imageRoot, candidates, skipped) = try discover(layout: layout, root: root)
        let files = candidates.flatMap { [$0.path] + $0.maskParts }
        let imageRoot = imageRoot
        let digests = try parallelMap(files, threads: threads, sink: sink, task: "hashing files") {
            (path: String) throws(IngestError) -> String in
            do throws(FileError) { return SHA256.hex(try readFile(imageRoot + "/" + path)) } catch { throw .file(error) }
        }
        var inputHasher = SHA256()
        for (path, hash) in zip(files, digests) { inputHasher.update(Array("\(path)\t\(hash)\n".utf8)) }
        inputKey = inputHasher.hexDigest()
        hashes = Dictionary(zip(files, digests), uniquingKeysWith: { a, _ in a })
    }

    /// Decodes every image and mask (sizes, and any corrupt file found before anything is written)
    /// and assigns the splits.
    ///
    /// - Throws: `IngestError` naming the first corrupt file (in listing order).
    public func ingest(splits: SplitRule, threads: Int, sink: EventSink) throws(IngestError) -> IngestedSource {
        let imageRoot = imageRoot
        let decoded = try parallelMap(candidates, threads: threads, sink: sink, task: "decoding images") {
            (candidate: Candidate) throws(IngestError) -> DecodedCandidate in
            try decode(candidate, root: imageRoot)
        }
        var rows: [DatasetRow] = []
        for (candidate, item) in zip(candidates, decoded) {
            let maskPath: String? = candidate.maskParts.isEmpty ? nil
                : candidate.maskParts.count == 1 ? candidate.maskParts[0]
                : "masks/" + ((candidate.path as NSString).lastPathComponent as NSString).deletingPathExtension + ".png"
            rows.append(DatasetRow(path: candidate.path, sha256: hashes[candidate.path] ?? "", label: candidate.label,
                                   patient: candidate.patient, width: item.width, height: item.height,
                                   mask: maskPath, split: candidate.fixedSplit ?? .train))
        }
        let rule = assignSplits(&rows, rule: splits)
        return IngestedSource(listing: self, rows: rows, decoded: decoded, validationRule: rule)
    }
}

/// A listed source after decoding and split assignment: the rows of `images.csv` and what else a
/// dataset artifact holds.
public struct IngestedSource: Sendable {
    public let listing: SourceListing
    public let rows: [DatasetRow]
    let decoded: [DecodedCandidate]
    public let validationRule: ValidationRule

    /// Whether the artifact itself holds masks (OR-ed from several parts, Montgomery).
    public var writesMasks: Bool { decoded.contains { $0.unionMask != nil } }

    /// Writes the OR-ed masks, `images.csv` and the contact sheet into the artifact `writer` is
    /// building, and returns the manifest summary.
    ///
    /// - Throws: `IngestError` naming the file that could not be read or written.
    public func write(into writer: inout ArtifactWriter, layout: Layout, contactSheetImages: Int) throws(IngestError) -> DatasetSummary {
        let maskRoot = writesMasks ? writer.folder : listing.imageRoot
        do {
            for (row, item) in zip(rows, decoded) {
                if let union = item.unionMask, let mask = row.mask {
                    try writer.write(try encodePNG(union.image), to: mask)
                }
            }
            try writer.write(Array(datasetCSV(rows).utf8), to: "images.csv")
            let sheet = try contactSheet(rows: rows, imageRoot: listing.imageRoot, maskRoot: maskRoot, decoded: decoded,
                                         count: contactSheetImages)
            if let sheet { try writer.write(try encodePNG(sheet), to: "contact-sheet.png") }
        } catch let error as ArtifactError {
            throw .artifact(error)
        } catch let error as IngestError {
            throw error
        } catch {
            throw .invalidSource(path: writer.folder, message: "\(error)")
        }
        return summarize(rows, layout: layout, imageRoot: listing.imageRoot, maskRoot: maskRoot,
                         validationRule: validationRule, skipped: listing.skipped)
    }
}

/// Version of the dataset artifact's files (part of its key).
public let datasetFormatVersion = 1

private func encodePNG(_ image: GrayImage) throws(IngestError) -> [UInt8] {
    do { return try image.pngData() } catch { throw .image(error) }
}

private func encodePNG(_ image: RGBImage) throws(IngestError) -> [UInt8] {
    do { return try image.pngData() } catch { throw .image(error) }
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
        do { text = String(decoding: try readFile(listing), as: UTF8.self) } catch { throw .file(error) }
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
        let mask: Mask
        do { mask = try Mask(contentsOf: root + "/" + part, sizedLike: image, imagePath: imagePath) } catch { throw .image(error) }
        if candidate.maskParts.count > 1 {
            union = union.map { Mask(width: $0.width, height: $0.height, bits: zip($0.bits, mask.bits).map { $0 || $1 }) } ?? mask
        }
    }
    return DecodedCandidate(width: image.width, height: image.height, unionMask: union)
}
