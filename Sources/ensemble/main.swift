// `ensemble`: prediction-level ensembles of trained classifiers (SPEC §6.1, Table 3), and their
// predictions for any prepared dataset.

import ArgumentParser
import Artifacts
import Ensembles
import Foundation
import Losses
import Pipeline
import StageCLI

extension EnsembleMethod: ExpressibleByArgument {}
extension EnsembleSplit: ExpressibleByArgument {}
extension WeightProcedure: ExpressibleByArgument {}
extension ClassificationLoss: ExpressibleByArgument {}

struct EnsembleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ensemble",
        abstract: "Combine trained classifiers (default subcommand: fit), or predict with a fitted ensemble.",
        subcommands: [Fit.self, Proposed.self, Rank.self, Predict.self],
        defaultSubcommand: Fit.self)
}

struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build one ensemble (prediction or model level) of classify-train artifacts of one dataset.",
        discussion: """
            Methods (SPEC §6.1): vote (majority of the members' labels, ties to the largest class index, one-hot \
            output), average (mean probabilities), weighted (weights on the simplex minimising the log loss on \
            ensemble.fitOn, by an exact convex solver whose KKT residual is reported; --weights paper repeats the \
            released code's 50 random restarts and keeps the best accuracy), stacking (Dense(3K, relu) → \
            Dense(3, softmax) on the members' concatenated probabilities, trained on the training split with \
            callbacks on validation accuracy), model-level (SPEC §6.2: the members' DCL maps concatenated → \
            Conv2D(512, 1×1, relu) → GAP → Dense(3, softmax), members frozen, trained like stacking with \
            ensemble.modelLevel; --code-compat trains only the Dense, as the released code did). Members: --members LOSS … (the classify-train artifacts LOSS-DATA), \
            or --top K by MCC on ensemble.rankOn (val by default; test is the paper's protocol and is labelled so). \
            Writes artifacts/ensemble/METHOD-topK-DATA/KEY/ with predictions-val.csv, predictions-test.csv (the \
            evaluate format), ensemble.json (members and keys, the ranking and its split, weights with their \
            objective and optimality residual, the restart log) and, for stacking, model.safetensors and log.jsonl.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "vote, average, weighted, stacking or model-level.")
    var method: EnsembleMethod

    @Option(help: "The dataset the members were trained on (their classify-train --data).")
    var data: String

    @Option(help: "Take the K classifiers with the highest MCC on the ranking split.")
    var top: Int?

    @Option(parsing: .upToNextOption, help: "The members' losses, in order (instead of --top).")
    var members: [ClassificationLoss] = []

    @Option(help: "Rank on val or test (default: ensemble.rankOn; test is the paper's protocol).")
    var rankOn: EnsembleSplit?

    @Option(help: "Fit the weights on val or test (default: ensemble.fitOn; test is the paper's protocol).")
    var fitOn: EnsembleSplit?

    @Option(help: "optimum (one exact solve) or paper (the released code's restarts; default: ensemble.weights).")
    var weights: WeightProcedure?

    @Flag(help: "Model level: the released code's freezing bug (only the final Dense trains; NewConv stays random).")
    var codeCompat = false

    func validate() throws {
        guard (top == nil) != members.isEmpty else { throw ValidationError("give --top K or --members LOSS …, not both") }
        if let top, top < 2 { throw ValidationError("--top must be at least 2") }
        if !members.isEmpty && members.count < 2 { throw ValidationError("--members needs at least two losses") }
        if Set(members).count != members.count { throw ValidationError("--members names a loss twice") }
    }

    func run() throws {
        try runStage("ensemble") {
            let context = try common.context(stage: "ensemble") { config in
                if let rankOn { config.ensemble.rankOn = rankOn }
                if let fitOn { config.ensemble.fitOn = fitOn }
                if let weights { config.ensemble.weights = weights }
                if codeCompat { config.ensemble.modelLevelCodeCompat = true }
            }
            let choice: MemberChoice = top.map { .top($0) } ?? .named(members)
            let result = try runEnsemble(context, method: method, data: data, choice: choice)
            if result.reused { context.sink(.note("reusing the complete artifact (same members and settings; --force to redo)")) }
            if let label = result.manifest.summary.stringValue(of: "label") { context.sink(.note(label)) }
            return result.folder
        }
    }
}

struct Proposed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The paper's proposed model: the weighted average of the model-level top-3 and top-5 ensembles.",
        discussion: "Reads the current model-level-top3-DATA and model-level-top5-DATA ensembles (--sizes: others, e.g. 2 3 "
            + "when fewer than five classifiers were trained), fits their weights like "
            + "weighted averaging (on ensemble.fitOn; --fit-on test and --weights paper for the paper's protocol) and "
            + "writes artifacts/ensemble/proposed-DATA/KEY/ with predictions-val.csv, predictions-test.csv and proposed.json.")

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset the ensembles were built on.")
    var data: String

    @Option(help: "Fit the weights on val or test (default: ensemble.fitOn).")
    var fitOn: EnsembleSplit?

    @Option(help: "optimum or paper (default: ensemble.weights).")
    var weights: WeightProcedure?

    @Option(parsing: .upToNextOption, help: "The sizes K of the model-level-topK ensembles combined.")
    var sizes: [Int] = [3, 5]

    func validate() throws {
        guard sizes.count >= 2, Set(sizes).count == sizes.count, sizes.allSatisfy({ $0 >= 2 }) else {
            throw ValidationError("--sizes needs at least two different sizes, each at least 2 (the paper's: 3 5)")
        }
    }

    func run() throws {
        try runStage("ensemble proposed") {
            let context = try common.context(stage: "ensemble proposed") { config in
                if let fitOn { config.ensemble.fitOn = fitOn }
                if let weights { config.ensemble.weights = weights }
            }
            let result = try runProposed(context, data: data, sizes: sizes)
            if let label = result.manifest.summary.stringValue(of: "label") { context.sink(.note(label)) }
            return result.folder
        }
    }
}

struct Rank: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rank the classifiers trained on a dataset by MCC, as --top K would.",
        discussion: "Prints every classify-train artifact of --data with its MCC on the ranking split (ensemble.rankOn, or "
            + "--rank-on), best first, on standard error; the last line of standard output is the best one's folder "
            + "(the single model the ensembles are compared with).")

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset the classifiers were trained on.")
    var data: String

    @Option(help: "Rank on val or test (default: ensemble.rankOn).")
    var rankOn: EnsembleSplit?

    func run() throws {
        try runStage("ensemble rank") {
            let context = try common.context(stage: "ensemble rank") { config in
                if let rankOn { config.ensemble.rankOn = rankOn }
            }
            let ranking = try rankClassifiers(context, data: data, rankOn: context.config.ensemble.rankOn)
            for (place, entry) in ranking.enumerated() {
                context.sink(.note("\(place + 1). \(entry.loss.rawValue): MCC \(String(format: "%.4f", entry.mcc)) on "
                    + "\(context.config.ensemble.rankOn.rawValue)  \(entry.folder)"))
            }
            return ranking[0].folder
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a fitted ensemble's predictions for every image of a prepared dataset.",
        discussion: "--model is an ensemble artifact folder (the last line `ensemble` printed). Its members predict the "
            + "images (classify-train predict artifacts, made or reused) and are combined as the ensemble was. Writes "
            + "artifacts/ensemble-predict/NAME-on-DATA/KEY/predictions.csv in the evaluate format.")

    @OptionGroup var common: CommonOptions

    @Option(help: "An ensemble artifact folder.")
    var model: String

    @Option(help: "The prepared dataset's name.")
    var data: String

    func run() throws {
        try runStage("ensemble predict") {
            let context = try common.context(stage: "ensemble predict")
            guard let manifest = context.store.completeManifest(at: model) else {
                throw ArtifactError.incomplete(path: model, message: "no complete ensemble artifact here")
            }
            return try runEnsemblePredict(context, model: (model, manifest), data: data).folder
        }
    }
}

EnsembleCommand.main()
