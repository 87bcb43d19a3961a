// `prepare`: turning a raw data folder into a dataset artifact. Every layout is first listed
// (sorted, so the order never depends on the file system), every image and mask is hashed and
// decoded (sizes, and any corrupt file found before anything is written), then splits are
// assigned and `images.csv`, OR-ed masks, a contact sheet and the manifest are written.

import Artifacts
import Foundation
import Imaging

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
