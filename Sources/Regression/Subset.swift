// The regression subset (data/regress/): a few real chest X-rays per class and a few lung
// image/mask pairs, drawn reproducibly from the development data so `make regress` runs the whole
// study on real images in minutes. Rebuilt by `regress subset`; committed, never regenerated in CI.

import Artifacts
import Datasets
import Foundation
import Imaging
import SeededRandom

/// How many images the subset holds and how they are drawn.
public struct SubsetPlan: Sendable {
    /// Chest X-rays per class (normal, bacterial, viral) in the subset's `train/` and `test/`.
    public var trainPerClass = 30
    public var testPerClass = 10
    /// Lung image/mask pairs, spread over the three classes.
    public var lungPairs = 40
    /// Lung images and masks are reduced so their long side is this many pixels.
    public var lungLongSide = 256
    /// JPEG quality of the reduced lung images.
    public var jpegQuality = 90
    public var seed: UInt64 = 20_261_203

    public init() {}
}

/// What `buildSubset` wrote.
public struct SubsetSummary: Codable, Sendable {
    /// Per file of the subset (relative to its folder): the source file it came from and that
    /// file's SHA-256, so the subset's provenance can be checked against the development data.
    public var files: [SubsetFile]
    public var bytes: Int
}

public struct SubsetFile: Codable, Sendable {
    public var path: String
    public var source: String
    public var sourceSHA256: String
}

public enum SubsetError: Error, CustomStringConvertible {
    case source(path: String, message: String)
    case tooFew(what: String, found: Int, needed: Int)

    public var description: String {
        switch self {
        case let .source(path, message): "\(path): \(message)"
        case let .tooFew(what, found, needed): "only \(found) \(what) with distinct patients; the subset needs \(needed)"
        }
    }
}

/// Draws the subset from `source` (the development data: `kermany224/train/{NORMAL,PNEUMONIA}` and
/// `pediatric-lungs/` with `pairs.csv`) into `out`: `kermany/{train,test}/{NORMAL,PNEUMONIA}/`
/// (the source JPEGs byte for byte), `lungs/{images,masks,pairs.csv}` (images area-reduced to
/// `plan.lungLongSide`, JPEG; masks nearest-neighbour, PNG 0/255) and `subset.json`. Every patient
/// appears once in the whole subset, so train, test and the lung pairs are patient-disjoint.
/// Replaces `out/kermany` and `out/lungs`; leaves other files in `out` (the baselines) alone.
///
/// - Throws: `SubsetError` naming a missing or unreadable source file, or a class with too few patients.
public func buildSubset(source: String, out: String, plan: SubsetPlan = SubsetPlan(),
                        sink: EventSink = { _ in }) throws -> SubsetSummary {
    var used = Set<String>()
    var files: [SubsetFile] = []
    var pending: [(path: String, bytes: [UInt8])] = []

    // Lung pairs first: their patients are then kept out of the chest X-ray subset.
    let lungRoot = source + "/pediatric-lungs"
    let listing = lungRoot + "/pairs.csv"
    let table: [[String]]
    do { table = try parseCSV(String(decoding: try readFile(listing), as: UTF8.self)) } catch {
        throw SubsetError.source(path: listing, message: "\(error)")
    }
    guard let header = table.first, let imageColumn = header.firstIndex(of: "image"), let maskColumn = header.firstIndex(of: "mask"),
          let classColumn = header.firstIndex(of: "class"), let patientColumn = header.firstIndex(of: "patient") else {
        throw SubsetError.source(path: listing, message: "expected the columns image, mask, class, patient")
    }
    let pairs = table.dropFirst().filter { $0.count == header.count }
    var lungRows: [[String]] = []
    for (classIndex, label) in CXRClass.allCases.enumerated() {
        let wanted = plan.lungPairs / 3 + (classIndex < plan.lungPairs % 3 ? 1 : 0)
        let candidates = pairs.filter { CXRClass(name: $0[classColumn]) == label }
        let chosen = drawOnePerPatient(candidates.map { (file: $0[imageColumn], patient: $0[patientColumn]) }, count: wanted,
                                       excluding: used, seed: plan.seed, stream: UInt64(classIndex))
        guard chosen.count == wanted else { throw SubsetError.tooFew(what: "\(label.name) lung pairs", found: chosen.count, needed: wanted) }
        for pick in chosen {
            let row = candidates.first { $0[imageColumn] == pick.file }!
            used.insert(pick.patient)
            let imagePath = lungRoot + "/images/" + row[imageColumn], maskPath = lungRoot + "/masks/" + row[maskColumn]
            let imageBytes: [UInt8], maskBytes: [UInt8]
            do { imageBytes = try readFile(imagePath); maskBytes = try readFile(maskPath) } catch {
                throw SubsetError.source(path: error.path, message: error.message)
            }
            let image = try GrayImage.decode(imageBytes, source: imagePath).image
            let mask = try GrayImage(maskAt: maskPath, sizedLike: image, imagePath: imagePath)
            let scale = Double(plan.lungLongSide) / Double(max(image.width, image.height))
            let width = max(1, Int((Double(image.width) * scale).rounded())), height = max(1, Int((Double(image.height) * scale).rounded()))
            let small = image.to8Bit().resized(width: width, height: height, method: .area).quantized()
            let smallMask = Mask(thresholding: mask.resized(width: width, height: height, method: .nearest))
            let stem = (row[imageColumn] as NSString).deletingPathExtension
            let imageOut = "lungs/images/\(stem).jpeg", maskOut = "lungs/masks/\(stem).png"
            pending.append((imageOut, try small.jpegData(quality: plan.jpegQuality)))
            pending.append((maskOut, try GrayImage(width: width, height: height, pixels: smallMask.bits.map { $0 ? 255 : 0 }).pngData()))
            files.append(SubsetFile(path: imageOut, source: "pediatric-lungs/images/" + row[imageColumn], sourceSHA256: SHA256.hex(imageBytes)))
            files.append(SubsetFile(path: maskOut, source: "pediatric-lungs/masks/" + row[maskColumn], sourceSHA256: SHA256.hex(maskBytes)))
            lungRows.append(["\(stem).jpeg", "\(stem).png", row[classColumn], pick.patient])
        }
        sink(.progress(task: "lung pairs", done: lungRows.count, total: plan.lungPairs))
    }
    lungRows.sort { $0[0].utf8.lexicographicallyPrecedes($1[0].utf8) }
    pending.append(("lungs/pairs.csv", Array(csvText(header: ["image", "mask", "class", "patient"], rows: lungRows).utf8)))

    // Chest X-rays: one image per patient, the first `trainPerClass` drawn to train, the rest to test.
    let kermanyRoot = source + "/kermany224/train"
    for (classIndex, label) in CXRClass.allCases.enumerated() {
        let folder = label == .normal ? "NORMAL" : "PNEUMONIA"
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: kermanyRoot + "/" + folder) } catch {
            throw SubsetError.source(path: kermanyRoot + "/" + folder, message: "cannot list the folder (expected Kermany train/NORMAL and train/PNEUMONIA)")
        }
        let members = names.filter { name in
            let lower = name.lowercased()
            return !name.hasPrefix(".") && (label == .normal || lower.contains(label == .bacterial ? "bacteria" : "virus"))
        }
        let wanted = plan.trainPerClass + plan.testPerClass
        let chosen = drawOnePerPatient(members.map { (file: $0, patient: patientID($0)) }, count: wanted, excluding: used,
                                       seed: plan.seed, stream: 16 + UInt64(classIndex))
        guard chosen.count == wanted else { throw SubsetError.tooFew(what: "\(label.name) chest X-rays", found: chosen.count, needed: wanted) }
        for (index, pick) in chosen.enumerated() {
            used.insert(pick.patient)
            let path = "\(kermanyRoot)/\(folder)/\(pick.file)"
            let bytes: [UInt8]
            do { bytes = try readFile(path) } catch { throw SubsetError.source(path: error.path, message: error.message) }
            _ = try GrayImage.decode(bytes, source: path)  // a corrupt source file stops here, not in CI
            let target = "kermany/\(index < plan.trainPerClass ? "train" : "test")/\(folder)/\(pick.file)"
            pending.append((target, bytes))
            files.append(SubsetFile(path: target, source: "kermany224/train/\(folder)/\(pick.file)", sourceSHA256: SHA256.hex(bytes)))
        }
        sink(.progress(task: "chest X-rays", done: classIndex + 1, total: 3))
    }

    // Everything read and encoded: only now replace the old subset.
    for folder in ["kermany", "lungs"] { try? FileManager.default.removeItem(atPath: out + "/" + folder) }
    for (path, bytes) in pending {
        let target = out + "/" + path
        do {
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        } catch { throw SubsetError.source(path: target, message: "cannot create its folder (\(error.localizedDescription))") }
        try writeFileAtomically(bytes, to: target)
    }
    files.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    let summary = SubsetSummary(files: files, bytes: pending.reduce(0) { $0 + $1.bytes.count })
    try writeFileAtomically(try canonicalJSON(summary), to: out + "/subset.json")
    return summary
}

/// `count` files of distinct patients not in `excluding`: patients in a seeded shuffle of their
/// sorted names, each represented by its first file in code-point order.
func drawOnePerPatient(_ files: [(file: String, patient: String)], count: Int, excluding: Set<String>,
                       seed: UInt64, stream: UInt64) -> [(file: String, patient: String)] {
    var first: [String: String] = [:]
    for (file, patient) in files where !excluding.contains(patient) {
        if let current = first[patient], current.utf8.lexicographicallyPrecedes(file.utf8) { continue }
        first[patient] = file
    }
    var patients = first.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    var random = SplitMix64(seed: seed, stream: stream)
    for i in stride(from: patients.count - 1, to: 0, by: -1) { patients.swapAt(i, random.index(below: i + 1)) }
    return patients.prefix(count).map { (file: first[$0]!, patient: $0) }
}
