// Split assignment (SPEC §0) and the dataset summary: class counts and balanced class weights.

import SeededRandom
import Artifacts
import Foundation
import Imaging

/// How `prepare` assigns splits (SPEC §0).
public struct SplitRule: Sendable, Equatable {
    /// The validation rule; `auto` resolves by the layout.
    public var validation: ValidationRule
    public var validationFraction: Double
    /// Patient-grouped test hold-out for layouts without a test folder (0: none).
    public var testFraction: Double
    /// Mark every image as test (an independent evaluation set).
    public var allTest: Bool
    public var splitSeed: UInt64
    /// Decides what `auto` means (Keras for classification layouts).
    public var layout: Layout

    public init(validation: ValidationRule, validationFraction: Double, testFraction: Double, allTest: Bool,
                splitSeed: UInt64, layout: Layout) {
        self.validation = validation
        self.validationFraction = validationFraction
        self.testFraction = testFraction
        self.allTest = allTest
        self.splitSeed = splitSeed
        self.layout = layout
    }
}

/// Validation split rules.
public enum ValidationRule: String, Codable, Sendable, CaseIterable {
    /// Keras for classification layouts (kermany, synthetic), patient-grouped for the others.
    case auto
    /// Keras `validation_split`: per class, files sorted by name, the first int(f·n) (SPEC §0).
    case keras
    /// Seeded shuffle of patients; whole patients go to validation until f·n images.
    case patient
    /// No validation images.
    case none
}

/// Assigns test and validation splits in place and returns the validation rule applied.
///
/// Order: `allTest` marks everything test; otherwise a patient-grouped test hold-out is drawn
/// (layouts without a test folder, `testFraction > 0`), then validation is drawn from the rest of
/// the training rows by the rule.
func assignSplits(_ rows: inout [DatasetRow], rule settings: SplitRule) -> ValidationRule {
    if settings.allTest {
        for i in rows.indices { rows[i].split = .test }
        return .none
    }
    let hasTestFolder = rows.contains { $0.split == .test }
    if !hasTestFolder && settings.testFraction > 0 {
        var generator = SplitMix64(seed: settings.splitSeed, stream: 0x7E57)
        let all = Array(rows.indices)
        for i in patientGroupedHoldOut(rows, candidates: all, fraction: settings.testFraction, generator: &generator) {
            rows[i].split = .test
        }
    }
    var rule = settings.validation
    if rule == .auto { rule = settings.layout.isClassification ? .keras : .patient }
    let training = rows.indices.filter { rows[$0].split == .train }
    switch rule {
    case .keras:
        for i in kerasValidation(rows, candidates: training, fraction: settings.validationFraction) { rows[i].split = .val }
    case .patient:
        var generator = SplitMix64(seed: settings.splitSeed, stream: 0x7A1)
        for i in patientGroupedHoldOut(rows, candidates: training, fraction: settings.validationFraction, generator: &generator) {
            rows[i].split = .val
        }
    case .none, .auto:
        break
    }
    return rule
}

/// Keras `ImageDataGenerator(validation_split=f)` with `subset='validation'`: for each class
/// folder, files sorted by name in code-point order, the first int(f·n_c) (SPEC §0). Unlabelled
/// rows count as one class.
func kerasValidation(_ rows: [DatasetRow], candidates: [Int], fraction: Double) -> [Int] {
    var byClass: [Int: [Int]] = [:]
    for i in candidates { byClass[rows[i].label?.rawValue ?? -1, default: []].append(i) }
    var out: [Int] = []
    for (_, members) in byClass.sorted(by: { $0.key < $1.key }) {
        let sorted = members.sorted { utf8Less(fileName(rows[$0].path), fileName(rows[$1].path)) }
        out.append(contentsOf: sorted.prefix(Int(fraction * Double(sorted.count))))
    }
    return out.sorted()
}

/// Whole patients, in a seeded shuffle of the sorted patient ids, until at least int(f·n)
/// images are held out; a patient's images never straddle the split.
func patientGroupedHoldOut(_ rows: [DatasetRow], candidates: [Int], fraction: Double,
                           generator: inout SplitMix64) -> [Int]
{
    var byPatient: [String: [Int]] = [:]
    for i in candidates { byPatient[rows[i].patient, default: []].append(i) }
    var patients = byPatient.keys.sorted(by: utf8Less)
    seededShuffle(&patients, &generator)
    let target = Int(fraction * Double(candidates.count))
    var out: [Int] = []
    for patient in patients where out.count < target {
        out.append(contentsOf: byPatient[patient] ?? [])
    }
    return out.sorted()
}

private func fileName(_ path: String) -> String { (path as NSString).lastPathComponent }

/// Counts per split and class, and balanced class weights of the training split.
func summarize(_ rows: [DatasetRow], layout: Layout, imageRoot: String, maskRoot: String,
               validationRule: ValidationRule, skipped: [String]) -> DatasetSummary
{
    var counts: [String: [String: Int]] = [:]
    for row in rows { counts[row.split.rawValue, default: [:]][row.label?.name ?? "none", default: 0] += 1 }
    let training = rows.filter { $0.split == .train }.compactMap(\.label)
    var weights: [String: Double] = [:]
    let present = Set(training).sorted()
    for label in present {
        let n = training.filter { $0 == label }.count
        weights[String(label.rawValue)] = Double(training.count) / (Double(present.count) * Double(n))
    }
    return DatasetSummary(layout: layout.rawValue, imageRoot: imageRoot, maskRoot: maskRoot, images: rows.count,
                          masks: rows.filter { $0.mask != nil }.count, validationRule: validationRule.rawValue,
                          counts: counts, classWeights: weights, skipped: skipped)
}

/// A sheet of evenly spaced sample images: mask outline in yellow, its crop box (SPEC §2 step 4)
/// in cyan, and a band along the top coloured by class (bacterial red, normal green, viral blue,
/// unlabelled gray). Nil when `count` is 0.
func contactSheet(rows: [DatasetRow], imageRoot: String, maskRoot: String, decoded: [DecodedCandidate],
                  count: Int) throws(IngestError) -> RGBImage?
{
    guard count > 0, !rows.isEmpty else { return nil }
    let picks = Array(Set((0..<min(count, rows.count)).map { $0 * rows.count / min(count, rows.count) })).sorted()
    var tiles: [(image: RGBImage, band: RGB?)] = []
    for index in picks {
        let row = rows[index]
        do throws(ImagingError) {
            var tile = RGBImage(gray: try GrayImage(contentsOf: imageRoot + "/" + row.path))
            if let maskFile = row.mask {
                let mask: Mask
                if let union = decoded[index].unionMask { mask = union } else {
                    mask = Mask(thresholding: try GrayImage(contentsOf: maskRoot + "/" + maskFile))
                }
                let thickness = max(1, tile.width / 160)
                tile.drawOutline(of: mask, color: RGB(255, 220, 0), thickness: thickness)
                if let box = mask.cropBox { tile.drawRectangle(box, color: RGB(0, 220, 255), thickness: thickness) }
            }
            let band: RGB = switch row.label {
            case .bacterial: RGB(220, 40, 40)
            case .normal: RGB(40, 200, 70)
            case .viral: RGB(60, 110, 255)
            case nil: RGB(150, 150, 150)
            }
            tiles.append((tile, band))
        } catch {
            throw .image(error)
        }
    }
    return ContactSheet(columns: min(8, tiles.count), tileSize: 160).render(tiles)
}
