// `prepare`: ingest a raw data folder (or the built-in synthetic generator) into a dataset artifact.

import ArgumentParser
import Datasets
import Pipeline
import StageCLI

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Ingest a folder of chest X-rays into a dataset artifact.",
        discussion: """
            Lists the folder in its layout, hashes and decodes every image and mask (a corrupt file \
            stops the run, naming it, before anything is written), assigns train/val/test splits and \
            writes artifacts/prepare/NAME/KEY/ with images.csv, contact-sheet.png and manifest.json \
            (class counts and balanced class weights). Later stages find it with --data NAME. The \
            last line of standard output is the artifact folder.

            Layouts:
              kermany     SOURCE/{train,test}/{NORMAL,PNEUMONIA}/* (or chest_xray/ above them); \
            class from the folder and 'bacteria'/'virus' in the file name
              montgomery  SOURCE/CXR_png/*.png, SOURCE/ManualMask/{leftMask,rightMask}/*.png (OR-ed)
              shenzhen    SOURCE/CXR_png/<stem>.png, SOURCE/mask/<stem>_mask.png (images without a mask are skipped)
              pairs       SOURCE/images/<stem>.*, SOURCE/masks/<stem>.png, optional SOURCE/pairs.csv
              synthetic   the built-in generator: writes SOURCE first when it does not exist (sizes from \
            the profile's 'synthetic' section), then reads it as kermany with exact masks; its lung set \
            is SOURCE/montgomery (prepare it with --layout montgomery)

            Validation (SPEC §0): 'keras' takes, per class, the first int(f·n) files by name; \
            'patient' draws whole patients with a seeded shuffle; 'auto' is keras for kermany and \
            synthetic, patient otherwise.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Folder layout: \(Layout.allCases.map(\.rawValue).joined(separator: ", ")).")
    var layout: Layout

    @Option(help: "The data folder.")
    var source: String

    @Option(help: "Dataset name, used by later stages as --data NAME.")
    var name: String

    @Option(help: "Validation rule: auto, keras, patient or none (default: the configuration's).")
    var validation: ValidationRule?

    @Option(help: "Validation fraction (default: the configuration's prepare.validationFraction).")
    var validationFraction: Double?

    @Option(help: "Hold out this fraction of patients as test, for layouts without a test folder.")
    var testFraction: Double = 0

    @Flag(help: "Mark every image as test (an independent evaluation set).")
    var allTest = false

    func validate() throws {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw ValidationError("--name must be a plain name without '/'")
        }
        guard (0..<1).contains(testFraction) else { throw ValidationError("--test-fraction must be in [0, 1)") }
        if let validationFraction, !(0..<1).contains(validationFraction) {
            throw ValidationError("--validation-fraction must be in [0, 1)")
        }
    }

    func run() throws {
        try runStage("prepare") {
            let context = try common.context(stage: "prepare")
            let config = context.config
            let settings = PrepareSettings(
                layout: layout, validation: validation ?? config.prepare.validation,
                validationFraction: validationFraction ?? config.prepare.validationFraction,
                testFraction: testFraction, allTest: allTest, splitSeed: config.prepare.splitSeed,
                contactSheetImages: config.prepare.contactSheetImages,
                synthetic: layout == .synthetic ? config.synthetic : nil)
            let sink = context.sink
            let result = try runPrepare(context, source: source, name: name, settings: settings)
            let summary = try Dataset(folder: result.folder, manifest: result.manifest).summary
            sink(.note(result.reused ? "reusing the complete artifact (same inputs and settings; --force to rebuild)"
                                     : "wrote dataset '\(name)'"))
            sink(.note(describe(summary)))
            return result.folder
        }
    }
}

/// One line per split with its class counts, and the class weights.
private func describe(_ summary: DatasetSummary) -> String {
    var lines = ["\(summary.images) images (\(summary.masks) with masks), validation rule \(summary.validationRule)"]
    for split in Split.allCases {
        guard let counts = summary.counts[split.rawValue] else { continue }
        let total = counts.values.reduce(0, +)
        let detail = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        lines.append("  \(split.rawValue): \(total) (\(detail))")
    }
    if !summary.classWeights.isEmpty {
        let weights = summary.classWeights.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        lines.append("  class weights {\(weights.joined(separator: ", "))}")
    }
    if !summary.skipped.isEmpty { lines.append("  skipped \(summary.skipped.count) images without a mask") }
    return lines.joined(separator: "\n")
}

extension Layout: ExpressibleByArgument {}
extension ValidationRule: ExpressibleByArgument {}

Prepare.main()
