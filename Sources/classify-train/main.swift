// `classify-train`: train the paper's classifier with one of the twelve losses (SPEC §3, §4).

import ArgumentParser
import Artifacts
import Foundation
import Losses
import Pipeline
import StageCLI

extension ClassificationLoss: ExpressibleByArgument {}

struct ClassifyTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify-train",
        abstract: "Train the paper's classifier (default subcommand), or predict with a trained one.",
        subcommands: [Train.self, Predict.self],
        defaultSubcommand: Train.self)
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the classifier (EfficientNet-B0 to block5c_add + head) with one of the twelve losses.",
        discussion: """
            Losses (stable names): \(ClassificationLoss.allCases.map(\.rawValue).joined(separator: ", ")).
            Input: a prepared dataset (--data NAME) with train and val splits; images are resampled to \
            classify.size, gray replicated to 3 channels, /255. Keras SGD (lr, momentum 0.9, Nesterov, \
            decay 1e-6), balanced class weights (SPEC §4.0), ReduceLROnPlateau, EarlyStopping and the \
            best checkpoint on validation loss. Writes artifacts/classify-train/LOSS-DATA/KEY/ with \
            model.safetensors (best weights), log.jsonl (one line per epoch), predictions-val.csv and \
            predictions-test.csv (the evaluate format). A killed run resumes from its last epoch. The \
            encoder (stem to block5c) starts from the U-Net that `segment train --loss ENCODER --data \
            ENCODER-FROM` trained (classify.encoder, focal-tversky by default), from random weights with \
            --encoder random, or from --encoder-weights FILE (timm's tf_efficientnet_b0 ImageNet weights, docs/WEIGHTS.md).
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The loss: \(ClassificationLoss.allCases.map(\.rawValue).joined(separator: ", ")).")
    var loss: ClassificationLoss

    @Option(help: "The prepared dataset's name.")
    var data: String

    @Flag(help: "Use the released code's loss behaviour (DCA without gradient, its λ and γ, no entropy term).")
    var codeCompat = false

    @Option(help: "Encoder start: random, or the segmentation loss of the U-Net to take it from (default: classify.encoder).")
    var encoder: String?

    @Option(help: "The lung dataset that U-Net was trained on (its segment train --data).")
    var encoderFrom = "lungs"

    @Option(help: "Start the encoder from this weights file instead: timm's tf_efficientnet_b0 model.safetensors, or import-weights' output.")
    var encoderWeights: String?

    func run() throws {
        try runStage("classify-train") {
            let context = try common.context(stage: "classify-train") { config in
                if codeCompat { config.classify.codeCompat = true }
            }
            let data = try context.dataset(named: self.data)
            let choice = try encoder.map { name in
                guard let start = EncoderStart(name: name) else {
                    throw ValidationError("--encoder must be one of \(EncoderStart.names.joined(separator: ", "))")
                }
                return start
            } ?? context.config.classify.encoder
            var source: EncoderSource?
            if let encoderWeights {
                guard encoder == nil else { throw ValidationError("--encoder and --encoder-weights are alternatives: give one") }
                source = try EncoderSource(weightsFile: encoderWeights)
            } else if case let .unet(segmentationLoss) = choice {
                let name = segmentationLoss.rawValue
                do {
                    let unet = try context.store.current(stage: "segment-train", variant: "\(name)-\(encoderFrom)")
                    source = EncoderSource(folder: unet.folder, key: unet.manifest.key)
                } catch {
                    throw ArtifactError.missingInput(message: "\(error); the encoder comes from the \(name) U-Net trained on "
                        + "'\(encoderFrom)': run `segment train --loss \(name) --data \(encoderFrom)`, name another lung dataset "
                        + "with --encoder-from, or start from random weights with --encoder random")
                }
            }
            let result = try runClassifyTrain(context, loss: loss, data: data, encoder: source, variant: "\(loss.rawValue)-\(self.data)")
            if result.reused { context.sink(.note("reusing the complete artifact (same data and settings; --force to retrain)")) }
            return result.folder
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Write a trained classifier's predictions for every image of a prepared dataset.",
        discussion: "--model is a classify-train artifact folder (the last line classify-train printed). Writes "
            + "artifacts/classify-predict/NAME/KEY/predictions.csv in the evaluate format, for every split, so a "
            + "model can be scored on data it never saw.")

    @OptionGroup var common: CommonOptions

    @Option(help: "A classify-train artifact folder.")
    var model: String

    @Option(help: "The prepared dataset's name.")
    var data: String

    @Flag(help: "Also write features.safetensors: the DCL (extra_conv_eff0) maps of every image, for model-level ensembles.")
    var features = false

    func run() throws {
        try runStage("classify-train predict") {
            let context = try common.context(stage: "classify-train predict")
            guard let modelManifest = context.store.completeManifest(at: model) else {
                throw ArtifactError.incomplete(path: model, message: "no complete classify-train artifact here")
            }
            let loss = modelManifest.summary.stringValue(of: "loss") ?? "model"
            let result = try runClassifyPredict(context, model: (model, modelManifest), data: try context.dataset(named: data),
                                                variant: "\(loss)-on-\(data)", features: features)
            return result.folder
        }
    }
}

ClassifyTrainCommand.main()
