// `classify-train`: train the paper's classifier with one of the twelve losses (SPEC §3, §4).

import ArgumentParser
import Engine
import Foundation
import Losses
import Pipeline
import StageCLI

extension ClassificationLoss: ExpressibleByArgument {}

struct ClassifyTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify-train",
        abstract: "Train the classifier (EfficientNet-B0 to block5c_add + head) with one of the twelve losses.",
        discussion: """
            Losses (stable names): \(ClassificationLoss.allCases.map(\.rawValue).joined(separator: ", ")).
            Input: a prepared dataset (--data NAME) with train and val splits; images are resampled to \
            classify.size, gray replicated to 3 channels, /255. Keras SGD (lr, momentum 0.9, Nesterov, \
            decay 1e-6), balanced class weights (SPEC §4.0), ReduceLROnPlateau, EarlyStopping and the \
            best checkpoint on validation loss. Writes artifacts/classify-train/LOSS-DATA/KEY/ with \
            model.safetensors (best weights), log.jsonl (one line per epoch), predictions-val.csv and \
            predictions-test.csv (the evaluate format). A killed run resumes from its last epoch. The \
            encoder starts from random weights until the segment stage provides trained U-Nets.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The loss: \(ClassificationLoss.allCases.map(\.rawValue).joined(separator: ", ")).")
    var loss: ClassificationLoss

    @Option(help: "The prepared dataset's name.")
    var data: String

    @Flag(help: "Use the released code's loss behaviour (DCA without gradient, its λ and γ, no entropy term).")
    var codeCompat = false

    func run() throws {
        try runStage("classify-train") {
            var config = try common.loadConfig()
            if codeCompat { config.classify.codeCompat = true }
            let (folder, manifest) = try common.store.current(stage: "prepare", variant: data)
            let dataset = try Dataset(folder: folder, manifest: manifest)
            let settings = ClassifySettings(loss: loss, config: config.classify, seed: config.seed, initialization: "random")
            let sink = common.sink(stage: "classify-train")
            let result = try runClassifyTrain(dataset: dataset, datasetKey: manifest.key, variant: "\(loss.rawValue)-\(data)",
                                              settings: settings, store: common.store, threads: config.threads,
                                              blasProvider: BLAS.provider, force: common.force, sink: sink)
            if result.reused { sink(.note("reusing the complete artifact (same data and settings; --force to retrain)")) }
            return result.folder
        }
    }
}

ClassifyTrain.main()
