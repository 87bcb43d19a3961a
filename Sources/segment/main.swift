// `segment`: train the lung U-Net with one of the five losses, score trained U-Nets (Table 1, the
// top-k choice), and predict lung masks for a dataset (SPEC §1).

import ArgumentParser
import Artifacts
import Datasets
import Foundation
import Losses
import Pipeline
import StageCLI

extension SegmentationLoss: ExpressibleByArgument {}

struct SegmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segment",
        abstract: "Train the lung U-Net (default subcommand), score trained U-Nets, or predict lung masks.",
        subcommands: [Train.self, Evaluate.self, Predict.self],
        defaultSubcommand: Train.self)
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the EfficientNet-B0 U-Net with one of the five segmentation losses.",
        discussion: """
            Losses: \(SegmentationLoss.allCases.map(\.rawValue).joined(separator: ", ")) (SPEC §1.2, batch-level). \
            Input: a prepared dataset with lung masks (--data NAME; e.g. `prepare --layout pairs|montgomery|shenzhen`) and \
            train and val splits. Images are resampled to segment.size (512 paper, 256 fast), gray replicated to 3 \
            channels, /255; masks area-resampled and thresholded at ½. Keras Adam (segment.learningRate), [P]'s \
            augmentation (±2 px shift, horizontal flip, ±5°), ReduceLROnPlateau (×0.5 after 5), EarlyStopping (10) and \
            the best checkpoint on validation loss. Writes artifacts/segment-train/LOSS-DATA/KEY/ with \
            model.safetensors and log.jsonl (loss, val loss, Dice, IoU, accuracy, lr, seconds per epoch). A killed \
            run resumes from its last epoch. The encoder starts from random weights, or from --encoder-weights: \
            ImageNet weights as timm distributes them (tf_efficientnet_b0 model.safetensors), or a file \
            `import-weights` wrote (docs/WEIGHTS.md).
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The loss: \(SegmentationLoss.allCases.map(\.rawValue).joined(separator: ", ")).")
    var loss: SegmentationLoss

    @Option(help: "The prepared lung dataset's name.")
    var data: String

    @Option(help: "EfficientNet-B0 encoder weights to start from: timm's tf_efficientnet_b0 model.safetensors, or import-weights' output.")
    var encoderWeights: String?

    func run() throws {
        try runStage("segment train") {
            let context = try common.context(stage: "segment train")
            let encoder = try encoderWeights.map { try EncoderSource(weightsFile: $0) }
            let result = try runSegmentTrain(context, loss: loss, data: try context.dataset(named: data), encoder: encoder,
                                             variant: "\(loss.rawValue)-\(data)")
            if result.reused { context.sink(.note("reusing the complete artifact (same data and settings; --force to retrain)")) }
            return result.folder
        }
    }
}

/// The U-Net folders named by --model, or the current ones of every loss trained on --trained-on.
struct ModelChoice: ParsableArguments {
    @Option(name: .customLong("model"), help: "A segment train artifact folder (repeat for several).")
    var models: [String] = []

    @Option(help: "Use the current U-Net of every loss trained on this dataset (instead of --model).")
    var trainedOn: String?

    func folders(_ store: ArtifactStore) throws -> [String] {
        guard let trainedOn else {
            guard !models.isEmpty else { throw ValidationError("give --model FOLDER (one or more) or --trained-on NAME") }
            return models
        }
        let found = SegmentationLoss.allCases.compactMap { try? store.current(stage: "segment-train", variant: "\($0.rawValue)-\(trainedOn)").folder }
        guard !found.isEmpty else { throw ArtifactError.notFound(stage: "segment-train", variant: "<loss>-\(trainedOn)", root: store.root) }
        return models + found
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score trained U-Nets per image (Dice, IoU, accuracy), their AND ensemble, and Table 1.",
        discussion: """
            Predicts at each model's input size, resamples the probabilities bilinearly to each ground-truth mask's \
            size and thresholds at segment.threshold. Writes artifacts/segment-evaluate/NAME/KEY/ with per-image.csv, \
            metrics.json (mean ± sample SD, the ranking by segment.selectionMetric) and table1.md (the paper's \
            layout). With several models, the bitwise AND of the top segment.ensembleSize is scored too; the \
            ranking and the chosen members are in the manifest, where `segment predict --ensemble-of` finds them.
            """)

    @OptionGroup var common: CommonOptions
    @OptionGroup var choice: ModelChoice

    @Option(help: "The prepared dataset with ground-truth masks to score on.")
    var data: String

    @Option(help: "Which images: test, val, train or all (default: test when the dataset has a test split, else all).")
    var split: String?

    @Option(help: "The evaluation's name (default: the dataset's name).")
    var name: String?

    func run() throws {
        try runStage("segment evaluate") {
            let context = try common.context(stage: "segment evaluate")
            let data = try context.dataset(named: self.data)
            let dataset = data.dataset
            let models = try choice.folders(context.store).map { try TrainedSegmenter(folder: $0, store: context.store) }
            let chosen: Split?
            switch split {
            case nil: chosen = dataset.rows.contains { $0.split == .test } ? .test : nil
            case "all": chosen = nil
            case let name?:
                guard let value = Split(rawValue: name) else { throw ValidationError("--split must be test, val, train or all") }
                chosen = value
            }
            let result = try runSegmentEvaluate(context, models: models, data: data, split: chosen, variant: name ?? self.data)
            if let table = FileManager.default.contents(atPath: result.folder + "/table1.md") {
                FileHandle.standardError.write(table)
            }
            return result.folder
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Binary lung masks (PNG 0/255) of one or more U-Nets for every image of a dataset.",
        discussion: """
            Masks are at each image's own size (predicted at the U-Net's input size, probabilities resampled \
            bilinearly, p > segment.threshold) under artifacts/segment-predict/DATA/KEY/masks/K-LOSS/. \
            --ensemble-of NAME takes the members a `segment evaluate` run chose (the top segment.ensembleSize \
            by segment.selectionMetric). Empty masks are warned about and listed in the manifest.
            """)

    @OptionGroup var common: CommonOptions
    @OptionGroup var choice: ModelChoice

    @Option(help: "Use the ensemble members chosen by this segment evaluate run (its name).")
    var ensembleOf: String?

    @Option(help: "The prepared dataset whose images get masks.")
    var data: String

    func run() throws {
        try runStage("segment predict") {
            let context = try common.context(stage: "segment predict")
            let data = try context.dataset(named: self.data)
            var folders: [String] = []
            if let ensembleOf {
                let evaluation = try context.store.current(stage: "segment-evaluate", variant: ensembleOf)
                guard case let .array(members)? = evaluation.manifest.summary.objectValue?["ensemble"] else {
                    throw ArtifactError.invalidManifest(path: evaluation.folder + "/manifest.json", message: "no 'ensemble' in the summary")
                }
                folders = members.compactMap(\.stringValue)
            }
            if !choice.models.isEmpty || choice.trainedOn != nil { folders += try choice.folders(context.store) }
            guard !folders.isEmpty else { throw ValidationError("give --ensemble-of NAME, --model FOLDER or --trained-on NAME") }
            let models = try folders.map { try TrainedSegmenter(folder: $0, store: context.store) }
            let result = try runSegmentPredict(context, models: models, data: data, variant: self.data)
            return result.folder
        }
    }
}

SegmentCommand.main()
