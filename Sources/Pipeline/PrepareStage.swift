// `prepare`: a raw data folder (or the built-in synthetic generator's) into a dataset artifact.
// The folder is listed and hashed first (the input key), so an unchanged folder is found complete
// and reused; otherwise every image and mask is decoded before anything is written, splits are
// assigned, and `images.csv`, OR-ed masks, a contact sheet and the manifest are written.

import Artifacts
import Datasets
import Foundation
import Synthetic

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

    /// The split assignment these settings ask for.
    public var splitRule: SplitRule {
        SplitRule(validation: validation, validationFraction: validationFraction, testFraction: testFraction,
                  allTest: allTest, splitSeed: splitSeed, layout: layout)
    }
}

/// Ingests `source` as `settings.layout` into the dataset artifact named `name`; for the synthetic
/// layout the generator first writes `source` (or reuses it when it holds the same generation).
///
/// - Throws: `IngestError` naming the file or folder; nothing is written before every image has
///   decoded, and no manifest is written on failure.
public func runPrepare(_ context: StageContext, source: String, name: String, settings: PrepareSettings) throws(IngestError) -> StageResult {
    if settings.layout == .synthetic, let synthetic = settings.synthetic {
        let root = URL(fileURLWithPath: source).standardizedFileURL.path
        do {
            try SyntheticCXR.generate(into: root, config: synthetic, threads: context.threads, sink: context.sink)
        } catch {
            switch error {
            case let .folder(path, message): throw .invalidSource(path: path, message: message)
            case let .image(inner): throw .image(inner)
            case let .file(inner): throw .file(inner)
            }
        }
    }
    let listing = try SourceListing(source: source, layout: settings.layout, threads: context.threads, sink: context.sink)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "prepare", variant: name, settings: settings, inputKeys: [listing.inputKey],
                                       formatVersion: datasetFormatVersion, force: context.force)
        if let existing = run.existing {
            try run.markCurrent()
            return existing
        }
    } catch { throw .artifact(error) }
    let ingested = try listing.ingest(splits: settings.splitRule, threads: context.threads, sink: context.sink)
    do {
        var writer = try run.begin(inputs: [ManifestInput(name: "source", path: listing.root, key: listing.inputKey)],
                                   seed: context.config.seed)
        let summary = try ingested.write(into: &writer, layout: settings.layout, contactSheetImages: settings.contactSheetImages)
        return writer.result(try writer.finish(summary: try JSONValue(encoding: summary)))
    } catch let error as ArtifactError {
        throw .artifact(error)
    } catch let error as IngestError {
        throw error
    } catch {
        throw .invalidSource(path: run.folder, message: "\(error)")
    }
}
