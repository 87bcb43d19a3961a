// `prepare` on generated folders of every layout, the synthetic generator's determinism, the
// Keras validation rule, artifact reuse, and the errors of bad input (nothing written).

import Artifacts
import Foundation
import Imaging
import SeededRandom
import TestSupport
import XCTest
@testable import Datasets
@testable import Pipeline
@testable import Synthetic

final class IngestionTests: ScratchTestCase {
    let quiet: EventSink = { _ in }

    static let tiny = SyntheticConfig(size: 64, trainPerClass: 10, testPerClass: 2, lungImages: 4, seed: 5)

    func settings(_ layout: Layout, validation: ValidationRule = .auto, testFraction: Double = 0,
                  synthetic: SyntheticConfig? = nil) -> PrepareSettings {
        PrepareSettings(layout: layout, validation: validation, validationFraction: 0.1, testFraction: testFraction,
                        allTest: false, splitSeed: 42, contactSheetImages: 4, synthetic: synthetic)
    }

    @discardableResult
    func prepare(_ source: String, _ layout: Layout, name: String = "d", validation: ValidationRule = .auto,
                 testFraction: Double = 0, synthetic: SyntheticConfig? = nil, force: Bool = false) throws -> (StageResult, Dataset) {
        let result = try runPrepare(try context(scratch + "/artifacts", force: force), source: source, name: name,
                                    settings: settings(layout, validation: validation, testFraction: testFraction, synthetic: synthetic))
        return (result, try Dataset(folder: result.folder, manifest: result.manifest))
    }

    func write(_ bytes: [UInt8], _ path: String) throws {
        try writeFileAtomically(bytes, to: scratch + "/" + path)
    }

    /// Every file under `folder` (relative path → bytes).
    func tree(_ folder: String) -> [String: Data] {
        var out: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: folder)
        while let path = enumerator?.nextObject() as? String {
            var directory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder + "/" + path, isDirectory: &directory), !directory.boolValue {
                out[path] = FileManager.default.contents(atPath: folder + "/" + path)
            }
        }
        return out
    }

    // MARK: synthetic data

    func testSyntheticGeneratorIsByteIdenticalForASeed() throws {
        try SyntheticCXR.generate(into: scratch + "/a", config: Self.tiny, threads: 2, sink: quiet)
        try SyntheticCXR.generate(into: scratch + "/b", config: Self.tiny, threads: 1, sink: quiet)
        var other = Self.tiny
        other.seed = 6
        try SyntheticCXR.generate(into: scratch + "/c", config: other, threads: 2, sink: quiet)
        let a = tree(scratch + "/a"), b = tree(scratch + "/b"), c = tree(scratch + "/c")
        XCTAssertEqual(a.count, 3 * 12 * 2 + 4 * 3 + 1)  // image + mask per classification image, 3 files per lung image, synthetic.json
        XCTAssertEqual(a, b, "same seed, different thread count")
        XCTAssertNotEqual(a.filter { $0.key.hasSuffix(".jpeg") }, c.filter { $0.key.hasSuffix(".jpeg") })
        XCTAssertTrue(try SyntheticCXR.generate(into: scratch + "/a", config: Self.tiny, threads: 2, sink: quiet))
        XCTAssertThrowsError(try SyntheticCXR.generate(into: scratch + "/a", config: other, threads: 2, sink: quiet))
    }

    func testSyntheticClassesDifferWhereThePaperSaysTheyDo() {
        // Consolidation and haze add density inside the lungs: mean lung intensity over many
        // phantoms must order normal < the pneumonias, while the body outside stays alike.
        var lungMeans: [CXRClass: Double] = [:]
        for label in CXRClass.allCases {
            var total = 0.0
            for i in 0..<12 {
                var g = SplitMix64(seed: 77, stream: UInt64(i))
                let phantom = SyntheticCXR.render(label: label, width: 96, height: 96, generator: &g)
                let lungs = phantom.lungs
                let values = zip(phantom.image.pixels, lungs.bits).filter(\.1).map { Double($0.0) }
                total += values.reduce(0, +) / Double(values.count)
            }
            lungMeans[label] = total / 12
        }
        XCTAssertLessThan(lungMeans[.normal]!, lungMeans[.bacterial]!)
        XCTAssertLessThan(lungMeans[.normal]!, lungMeans[.viral]!)
    }

    func testSyntheticLayoutIngestsWithExactMasksAndKerasValidation() throws {
        let (result, dataset) = try prepare(scratch + "/syn", .synthetic, synthetic: Self.tiny)
        XCTAssertFalse(result.reused)
        XCTAssertEqual(dataset.rows.count, 36)
        XCTAssertEqual(dataset.summary.counts["test"], ["bacterial": 2, "normal": 2, "viral": 2])
        XCTAssertEqual(dataset.summary.counts["val"], ["bacterial": 1, "normal": 1, "viral": 1])
        XCTAssertEqual(dataset.summary.validationRule, "keras")
        for row in dataset.rows {
            let mask = try GrayImage(contentsOf: try XCTUnwrap(dataset.maskPath(row)))
            XCTAssertEqual(mask.width, row.width)
            XCTAssertEqual(mask.height, row.height)
        }
        // Keras rule: per class, the first file by name among the training images.
        for label in CXRClass.allCases {
            let pool = dataset.rows.filter { $0.label == label && $0.split != .test }
            let first = pool.map { ($0.path as NSString).lastPathComponent }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }[0]
            let val = pool.filter { $0.split == .val }.map { ($0.path as NSString).lastPathComponent }
            XCTAssertEqual(val, [first], label.name)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: result.folder + "/contact-sheet.png"))
    }

    // MARK: layouts

    func testKermanyLayoutCountsClassesAndBalancedWeights() throws {
        let jpeg = try GrayImage(width: 8, height: 8, filledWith: 100).jpegData()
        // 20 normal, 10 bacterial, 10 viral; names chosen so code-point order differs from a
        // case-insensitive one ("Z…" sorts before "a…").
        for i in 0..<20 { try write(jpeg, "k/chest_xray/train/NORMAL/\(i % 2 == 0 ? "a" : "Z")IM-\(1000 + i)-0001.jpeg") }
        for i in 0..<10 { try write(jpeg, "k/chest_xray/train/PNEUMONIA/person\(i)_bacteria_\(i).jpeg") }
        for i in 0..<10 { try write(jpeg, "k/chest_xray/train/PNEUMONIA/person\(i + 50)_virus_\(i).jpeg") }
        try write(jpeg, "k/chest_xray/test/NORMAL/IM-0001-0001.jpeg")
        try write(jpeg, "k/chest_xray/test/PNEUMONIA/person99_virus_1.jpeg")
        try write(Array("x".utf8), "k/chest_xray/train/NORMAL/.DS_Store")  // hidden files are ignored
        let (_, dataset) = try prepare(scratch + "/k", .kermany)
        XCTAssertEqual(dataset.rows.count, 42)
        XCTAssertEqual(dataset.summary.counts["val"], ["bacterial": 1, "normal": 2, "viral": 1])
        let normalVal = dataset.rows.filter { $0.split == .val && $0.label == .normal }.map(\.path)
        XCTAssertEqual(normalVal, ["train/NORMAL/ZIM-1001-0001.jpeg", "train/NORMAL/ZIM-1003-0001.jpeg"])
        // Balanced weights over 18 normal, 9 bacterial, 9 viral training images: 36/(3·n_c).
        XCTAssertEqual(dataset.summary.classWeights, ["0": 36.0 / 27, "1": 36.0 / 54, "2": 36.0 / 27])
        XCTAssertEqual(dataset.rows.first { $0.path.hasSuffix("person3_bacteria_3.jpeg") }?.patient, "person3")
    }

    func testMontgomeryMasksAreTheOROfBothLungs() throws {
        try SyntheticCXR.generate(into: scratch + "/syn", config: Self.tiny, threads: 2, sink: quiet)
        let source = scratch + "/syn/montgomery"
        let (result, dataset) = try prepare(source, .montgomery)
        XCTAssertEqual(dataset.rows.count, 4)
        XCTAssertEqual(dataset.summary.maskRoot, result.folder)
        let row = dataset.rows[0]
        let name = (row.path as NSString).lastPathComponent
        let left = Mask(thresholding: try GrayImage(contentsOf: "\(source)/ManualMask/leftMask/\(name)"))
        let right = Mask(thresholding: try GrayImage(contentsOf: "\(source)/ManualMask/rightMask/\(name)"))
        let stored = Mask(thresholding: try GrayImage(contentsOf: try XCTUnwrap(dataset.maskPath(row))))
        XCTAssertEqual(stored, try left.or(right))
        XCTAssertGreaterThan(left.count, 0)
        XCTAssertGreaterThan(stored.count, left.count)
    }

    func testShenzhenSkipsImagesWithoutAMask() throws {
        let png = try GrayImage(width: 6, height: 4, filledWith: 90).pngData()
        let mask = try Mask(width: 6, height: 4, bits: (0..<24).map { $0 % 3 == 0 }).image.pngData()
        for i in 1...3 {
            try write(png, "sz/CXR_png/CHNCXR_000\(i)_0.png")
            if i != 2 { try write(mask, "sz/mask/CHNCXR_000\(i)_0_mask.png") }
        }
        let (_, dataset) = try prepare(scratch + "/sz", .shenzhen, validation: .none)
        XCTAssertEqual(dataset.rows.map(\.path), ["CXR_png/CHNCXR_0001_0.png", "CXR_png/CHNCXR_0003_0.png"])
        XCTAssertEqual(dataset.summary.skipped.count, 1)
        XCTAssertEqual(dataset.rows[0].patient, "CHNCXR_0001")
    }

    func testPairsWithListingAndPatientGroupedSplits() throws {
        let jpeg = try GrayImage(width: 6, height: 4, filledWith: 90).jpegData()
        let mask = try Mask(width: 6, height: 4, bits: (0..<24).map { $0 % 2 == 0 }).image.pngData()
        var lines = ["image,mask,class,patient"]
        for i in 0..<40 {
            try write(jpeg, "p/images/img\(i).jpeg")
            try write(mask, "p/masks/img\(i).png")
            lines.append("img\(i).jpeg,img\(i).png,\(["bacteria", "normal", "virus"][i % 3]),patient\(i / 2)")
        }
        try write(Array(lines.joined(separator: "\n").utf8), "p/pairs.csv")
        let (_, dataset) = try prepare(scratch + "/p", .pairs, testFraction: 0.25)
        XCTAssertEqual(dataset.rows.count, 40)
        XCTAssertEqual(dataset.rows.first { $0.path == "images/img5.jpeg" }?.label, .viral)
        XCTAssertEqual(dataset.rows.first { $0.path == "images/img5.jpeg" }?.patient, "patient2")
        XCTAssertEqual(dataset.summary.validationRule, "patient")
        let test = dataset.rows.filter { $0.split == .test }, val = dataset.rows.filter { $0.split == .val }
        XCTAssertEqual(test.count, 10)  // whole patients of two images each, until int(0.25·40)
        XCTAssertEqual(val.count, 4)    // int(0.1·30) = 3, rounded up to whole patients
        var splitOf: [String: Split] = [:]
        for row in dataset.rows {
            if let seen = splitOf[row.patient] { XCTAssertEqual(seen, row.split, "patient \(row.patient) straddles") }
            splitOf[row.patient] = row.split
        }
    }

    // MARK: reuse and determinism

    func testRerunReusesAndForcedRerunIsByteIdentical() throws {
        let (first, _) = try prepare(scratch + "/syn", .synthetic, synthetic: Self.tiny)
        let before = tree(first.folder).filter { $0.key != "manifest.json" }
        let (second, _) = try prepare(scratch + "/syn", .synthetic, synthetic: Self.tiny)
        XCTAssertTrue(second.reused)
        XCTAssertEqual(second.folder, first.folder)
        let (forced, _) = try prepare(scratch + "/syn", .synthetic, synthetic: Self.tiny, force: true)
        XCTAssertFalse(forced.reused)
        XCTAssertEqual(tree(forced.folder).filter { $0.key != "manifest.json" }, before)
        XCTAssertEqual(forced.manifest.outputs, first.manifest.outputs)
        let store = try context(scratch + "/artifacts").store
        XCTAssertEqual(try Dataset.named("d", in: store).folder, first.folder)
        XCTAssertThrowsError(try Dataset.named("never", in: store)) { error in
            XCTAssertTrue("\(error)".contains("no complete 'prepare' or 'mask-crop' artifact named 'never'"), "\(error)")
        }
    }

    // MARK: bad input

    func assertFails(_ source: String, _ layout: Layout, mentioning needle: String,
                     line: UInt = #line) {
        XCTAssertThrowsError(try prepare(source, layout, name: "bad"), line: line) { error in
            XCTAssertTrue("\(error)".contains(needle), "\(error)", line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/artifacts/prepare/bad/current"), line: line)
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: scratch + "/artifacts/prepare/bad")) ?? []
        for folder in folders {
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(scratch)/artifacts/prepare/bad/\(folder)/manifest.json"), line: line)
        }
    }

    func testTruncatedJPEGInAClassFolderIsNamedAndNothingIsWritten() throws {
        try SyntheticCXR.generate(into: scratch + "/syn", config: Self.tiny, threads: 2, sink: quiet)
        let victim = scratch + "/syn/chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg"
        let bytes = try readFile(victim)
        try writeFileAtomically(Array(bytes.prefix(bytes.count / 2)), to: victim)
        assertFails(scratch + "/syn/chest_xray", .kermany, mentioning: victim)
    }

    func testMaskOfTheWrongSizeIsNamed() throws {
        try write(try GrayImage(width: 6, height: 4, filledWith: 1).pngData(), "p/images/a.png")
        try write(try GrayImage(width: 6, height: 5, filledWith: 1).pngData(), "p/masks/a.png")
        assertFails(scratch + "/p", .pairs, mentioning: scratch + "/p/masks/a.png: size 6×5, expected 6×4")
    }

    func testDanglingAndLoopingLinksStopTheRunNamingThem() throws {
        let jpeg = try GrayImage(width: 8, height: 8, filledWith: 100).jpegData()
        try write(jpeg, "links/train/NORMAL/IM-0001-0001.jpeg")
        try write(jpeg, "links/train/PNEUMONIA/person1_virus_1.jpeg")
        let dangling = scratch + "/links/train/NORMAL/IM-0002-0001.jpeg"
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: scratch + "/nothing-here.jpeg")
        assertFails(scratch + "/links", .kermany, mentioning: dangling + ": cannot be read")
        try FileManager.default.removeItem(atPath: dangling)
        let loop = scratch + "/links/train/PNEUMONIA/person2_virus_2.jpeg"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        assertFails(scratch + "/links", .kermany, mentioning: loop + ": cannot be read")
    }

    func testAKermanyFolderWithOnlyItsTestPartIsAnEvaluationSet() throws {
        let jpeg = try GrayImage(width: 8, height: 8, filledWith: 100).jpegData()
        try write(jpeg, "official/test/NORMAL/IM-0001-0001.jpeg")
        try write(jpeg, "official/test/PNEUMONIA/person1_virus_1.jpeg")
        try write(jpeg, "official/test/PNEUMONIA/person2_bacteria_2.jpeg")
        var settings = settings(.kermany)
        settings.allTest = true
        let result = try runPrepare(try context(scratch + "/artifacts"), source: scratch + "/official", name: "official", settings: settings)
        let dataset = try Dataset(folder: result.folder, manifest: result.manifest)
        XCTAssertEqual(dataset.rows.map(\.split), [.test, .test, .test])
        XCTAssertEqual(Set(dataset.rows.compactMap(\.label)), [.normal, .viral, .bacterial])
    }

    func testEmptyClassFolderMissingFoldersAndUnlabelledFilesAreNamed() throws {
        let jpeg = try GrayImage(width: 8, height: 8, filledWith: 100).jpegData()
        try write(jpeg, "k/train/NORMAL/IM-0001-0001.jpeg")
        try FileManager.default.createDirectory(atPath: scratch + "/k/train/PNEUMONIA", withIntermediateDirectories: true)
        assertFails(scratch + "/k", .kermany, mentioning: scratch + "/k/train/PNEUMONIA: the folder holds no images")
        try write(jpeg, "k/train/PNEUMONIA/person1_fungus_1.jpeg")
        assertFails(scratch + "/k", .kermany, mentioning: "person1_fungus_1.jpeg: a PNEUMONIA file name must contain")
        try FileManager.default.removeItem(atPath: scratch + "/k/train/PNEUMONIA/person1_fungus_1.jpeg")
        try write(jpeg, "k/train/PNEUMONIA/person1_virus_1.jpeg")
        try write(Array("hello".utf8), "k/train/NORMAL/notes.txt")
        assertFails(scratch + "/k", .kermany, mentioning: "notes.txt: corrupt or unreadable image")
        assertFails(scratch + "/nowhere", .kermany, mentioning: scratch + "/nowhere: missing folder")
        assertFails(scratch + "/k", .montgomery, mentioning: scratch + "/k/CXR_png: missing folder")
    }

    // MARK: the team's real data (skipped on a fresh clone)

    static let shared = Repository.sharedData

    func testKermany224CountsAndSPECValidationSplit() throws {
        let source = Self.shared + "/kermany224"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: source), "no ../shared/data/kermany224")
        let (_, dataset) = try prepare(source, .kermany)
        XCTAssertEqual(dataset.rows.count, 5216)
        XCTAssertEqual(dataset.summary.counts["train"], ["bacterial": 2277, "normal": 1207, "viral": 1211])
        XCTAssertEqual(dataset.summary.counts["val"], ["bacterial": 253, "normal": 134, "viral": 134])
    }

    func testPediatricLungPairs() throws {
        let source = Self.shared + "/pediatric-lungs"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: source), "no ../shared/data/pediatric-lungs")
        let (_, dataset) = try prepare(source, .pairs, testFraction: 0.2)
        XCTAssertEqual(dataset.rows.count, 507)
        XCTAssertEqual(dataset.summary.masks, 507)
        XCTAssertGreaterThanOrEqual(dataset.rows.filter { $0.split == .test }.count, 101)
    }
}
