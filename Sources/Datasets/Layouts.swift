// The source folder layouts `prepare` reads (DESIGN §6), each listed in a fixed order (sorted by
// UTF-8 bytes, so it never depends on the file system): the images, their classes and patients from
// the names, their mask files and, for Kermany, the split a folder carries.

import Artifacts
import Foundation

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

/// The Kermany layout: `train/` and `test/`, either alone (a folder holding only the official
/// `test/` is an evaluation set, prepared with `--all-test`).
private func kermany(base: String, maskRoot: String?, prefix: String = "") throws(IngestError) -> [Candidate] {
    guard isDirectory(base + "/train") || isDirectory(base + "/test") else {
        throw .missingFolder(path: base + "/train", expected: "train/{NORMAL,PNEUMONIA} and/or test/{NORMAL,PNEUMONIA} (Kermany layout)")
    }
    var out: [Candidate] = []
    for split in ["train", "test"] where isDirectory(base + "/" + split) {
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
    // An entry that is neither a file nor a folder once links are followed — a dangling or looping
    // symbolic link — is an unreadable image: it stops the run rather than vanishing from the data.
    for entry in entries.sorted(by: utf8Less) where !entry.hasPrefix(".") && !isFile(folder + "/" + entry) && !isDirectory(folder + "/" + entry) {
        throw .file(FileError(path: folder + "/" + entry, message: "cannot be read (a broken or looping symbolic link?)"))
    }
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
