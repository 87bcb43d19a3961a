// `ensemble` (SPEC §6.1, Table 3): prediction-level ensembles of classify-train artifacts of one
// dataset — majority voting, simple averaging, weighted averaging on the simplex, and stacking.
// Members are named or the top K by MCC on a split (val by default; test is the paper's protocol,
// and the artifact says so). Outputs: predictions for the validation and test splits in the
// evaluate format, ensemble.json (members with their keys, the ranking and its split, the weights
// with their objective and optimality residual, the restart log), and for stacking its weights and
// epoch log.

import Artifacts
import Datasets
import Ensembles
import Foundation
import Losses
import Metrics
import SeededRandom
import Models
import Training

/// How the members' outputs are combined.
public enum EnsembleMethod: String, Codable, Sendable, CaseIterable {
    case vote, average, weighted, stacking
    /// The members' DCL maps concatenated into a trained head (SPEC §6.2, Table 4).
    case modelLevel = "model-level"

    /// The paper's name of the method (Tables 3 and 4).
    public var title: String {
        switch self {
        case .vote: "majority voting"
        case .average: "simple averaging"
        case .weighted: "weighted averaging"
        case .stacking: "stacking"
        case .modelLevel: "model-level ensemble"
        }
    }

    /// Whether the method trains a part of its own (and so resumes like a training stage).
    var trains: Bool { self == .stacking || self == .modelLevel }
}

/// How the members are chosen.
public enum MemberChoice: Sendable, Equatable {
    /// The K classifiers with the highest MCC on the ranking split (ties: the losses' order).
    case top(Int)
    /// These losses, in this order.
    case named([ClassificationLoss])
}

/// A member: a classify-train artifact.
public struct EnsembleMember: Codable, Sendable, Equatable {
    public var loss: ClassificationLoss
    public var folder: String
    public var key: String
}

/// A classifier's place in the ranking.
public struct RankedClassifier: Codable, Sendable, Equatable {
    public var loss: ClassificationLoss
    public var folder: String
    public var key: String
    public var mcc: Double
}

/// Everything that decides an ensemble artifact besides its members' keys.
struct EnsembleSettings: Codable, Equatable {
    var method: EnsembleMethod
    var members: [ClassificationLoss]
    /// "top K by MCC on <split>" or "named".
    var selection: String
    var rankedOn: EnsembleSplit?
    var fittedOn: EnsembleSplit?
    var weights: WeightProcedure?
    var restarts: Int?
    var stacking: MetaLearnerConfig?
    var modelLevel: MetaLearnerConfig?
    var modelLevelCodeCompat: Bool?
    var seed: UInt64
}

/// ensemble.json.
public struct EnsembleFile: Codable, Sendable {
    public var formatVersion: Int
    public var method: EnsembleMethod
    /// A row label for tables, with the splits it was ranked and fitted on.
    public var label: String
    public var dataset: String
    public var members: [EnsembleMember]
    public var selection: String
    /// Every candidate by MCC on `rankedOn`, best first (top-K choices only).
    public var ranking: [RankedClassifier]
    public var rankedOn: EnsembleSplit?
    public var fittedOn: EnsembleSplit?
    public var weightProcedure: WeightProcedure?
    public var weights: SimplexFit?
    public var restarts: [SimplexRestart]
    /// What differs from an honest held-out protocol, in words.
    public var protocolNotes: [String]
}

/// Version of the ensemble artifact's files (part of its key).
public let ensembleFormatVersion = 1

/// The members `choice` names among the classify-train artifacts of dataset `data`, and for a top-K
/// choice every candidate's MCC on `rankOn`.
///
/// - Throws: `StageError` naming a member that is missing, was trained on another version of the
///   dataset, or lacks predictions for the ranking split.
public func chooseMembers(_ context: StageContext, data: String, choice: MemberChoice,
                          rankOn: EnsembleSplit) throws(StageError) -> (members: [EnsembleMember], ranking: [RankedClassifier]) {
    func artifact(_ loss: ClassificationLoss) -> (folder: String, manifest: Manifest)? {
        try? context.store.current(stage: "classify-train", variant: "\(loss.rawValue)-\(data)")
    }
    let candidates: [ClassificationLoss]
    switch choice {
    case let .named(losses):
        guard losses.count >= 2 else { throw .artifact(.missingInput(message: "an ensemble needs at least two members, got \(losses.count)")) }
        candidates = losses
        if let missing = losses.first(where: { artifact($0) == nil }) {
            throw .artifact(.missingInput(message: "member '\(missing.rawValue)': no complete classify-train artifact "
                + "'\(missing.rawValue)-\(data)'; run `classify-train --loss \(missing.rawValue) --data \(data)`"))
        }
    case let .top(k):
        candidates = ClassificationLoss.allCases.filter { artifact($0) != nil }
        guard k >= 2, candidates.count >= k else {
            throw .artifact(.missingInput(message: "--top \(k) needs at least \(max(k, 2)) classifiers trained on '\(data)'; found "
                + "\(candidates.count) (\(candidates.map(\.rawValue).joined(separator: ", "))): train more with classify-train"))
        }
    }
    var found: [(member: EnsembleMember, dataset: String)] = []
    var ranking: [RankedClassifier] = []
    for loss in candidates {
        guard let (folder, manifest) = artifact(loss) else { continue }
        let dataset = manifest.inputs.first { $0.name == "dataset" }?.key ?? ""
        let path = folder + "/predictions-\(rankOn.rawValue).csv"
        let predictions: Predictions
        do { predictions = try readPredictions(path: path).predictions } catch {
            throw .artifact(.missingInput(message: "member '\(loss.rawValue)': \(error.description) (no \(rankOn.rawValue) predictions to rank on)"))
        }
        found.append((EnsembleMember(loss: loss, folder: folder, key: manifest.key), dataset))
        let matrix = ConfusionMatrix(labels: predictions.labels, predicted: predictions.predicted, classes: predictions.classes)
        ranking.append(RankedClassifier(loss: loss, folder: folder, key: manifest.key, mcc: matrix.mcc))
    }
    if let first = found.first, let other = found.first(where: { $0.dataset != first.dataset }) {
        throw .artifact(.missingInput(message: "member '\(other.member.loss.rawValue)' (\(other.member.folder)) was trained on another "
            + "version of '\(data)' than '\(first.member.loss.rawValue)'; retrain it on the current dataset"))
    }
    switch choice {
    case .named:
        return (found.map(\.member), ranking)
    case let .top(k):
        // Best MCC first; ties keep the losses' order (a stable sort).
        let order = ranking.indices.sorted { ranking[$0].mcc != ranking[$1].mcc ? ranking[$0].mcc > ranking[$1].mcc : $0 < $1 }
        return (order.prefix(k).map { found[$0].member }, order.map { ranking[$0] })
    }
}

/// Every classify-train artifact of dataset `data`, best MCC on `rankOn` first (ties: the losses'
/// order): the ranking `--top K` takes its members from.
///
/// - Throws: `StageError` when fewer than two classifiers are there or one lacks the split's predictions.
public func rankClassifiers(_ context: StageContext, data: String, rankOn: EnsembleSplit) throws(StageError) -> [RankedClassifier] {
    let trained = ClassificationLoss.allCases.filter {
        (try? context.store.current(stage: "classify-train", variant: "\($0.rawValue)-\(data)")) != nil
    }
    return try chooseMembers(context, data: data, choice: .top(max(2, trained.count)), rankOn: rankOn).ranking
}

/// Reads one split's predictions of every member.
///
/// - Returns: nil when no member has that split's file (a dataset without a test split).
/// - Throws: `StageError` naming the member whose file is missing or unreadable while others have it.
func memberPredictions(_ members: [EnsembleMember], split: String) throws(StageError) -> [Predictions]? {
    let paths = members.map { $0.folder + "/predictions-\(split).csv" }
    let present = paths.map { FileManager.default.fileExists(atPath: $0) }
    guard present.contains(true) else { return nil }
    var out: [Predictions] = []
    for (member, path) in zip(members, paths) {
        do { out.append(try readPredictions(path: path).predictions) } catch {
            throw .artifact(.missingInput(message: "member '\(member.loss.rawValue)': \(error.description)"))
        }
    }
    do { return try aligned(out, names: members.map(\.loss.rawValue)) } catch {
        throw .data(.invalidSource(path: members[0].folder, message: error.description))
    }
}

/// Builds (or reuses) the `method` ensemble of the members `choice` names on dataset `data`.
public func runEnsemble(_ context: StageContext, method: EnsembleMethod, data: String, choice: MemberChoice) throws(StageError) -> StageResult {
    let config = context.config.ensemble
    let (members, ranking) = try chooseMembers(context, data: data, choice: choice, rankOn: config.rankOn)
    let selection: String
    switch choice {
    case let .top(k): selection = "top \(k) by MCC on \(config.rankOn.rawValue)"
    case .named: selection = "named"
    }
    let ranked: EnsembleSplit? = if case .top = choice { config.rankOn } else { nil }
    let settings = EnsembleSettings(
        method: method, members: members.map(\.loss), selection: selection, rankedOn: ranked,
        fittedOn: method == .weighted ? config.fitOn : nil, weights: method == .weighted ? config.weights : nil,
        restarts: method == .weighted && config.weights == .paper ? config.restarts : nil,
        stacking: method == .stacking ? config.stacking : nil, modelLevel: method == .modelLevel ? config.modelLevel : nil,
        modelLevelCodeCompat: method == .modelLevel ? config.modelLevelCodeCompat : nil, seed: context.config.seed)
    let variant: String
    switch choice {
    case let .top(k): variant = "\(method.rawValue)-top\(k)-\(data)"
    case let .named(losses): variant = "\(method.rawValue)-\(losses.count)members-\(data)"
    }
    let dataset: Dataset, datasetKey: String
    do { (dataset, datasetKey) = try context.dataset(named: data) } catch { throw .artifact(error) }
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "ensemble", variant: variant, settings: settings,
                                       inputKeys: members.map(\.key) + [datasetKey], formatVersion: ensembleFormatVersion,
                                       force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    // A training method keeps an interrupted run's folder: its checkpoint and, for the model level,
    // the DCL maps already cached.
    let resuming = method.trains && !context.force && FileManager.default.fileExists(atPath: run.folder + "/training.safetensors")
    let keepFolder = resuming || (method == .modelLevel && !context.force
        && ((try? FileManager.default.contentsOfDirectory(atPath: run.folder)) ?? []).contains { $0.hasSuffix(".f16") })

    guard let val = try memberPredictions(members, split: "val") else {
        throw .emptySplit(dataset: members[0].folder, split: "validation predictions")
    }
    let test = try memberPredictions(members, split: "test")
    var notes: [String] = []
    if ranked == .test { notes.append("members ranked by MCC on the test split (the paper's protocol): test-set numbers are optimistic") }
    var fit: SimplexFit?, restarts: [SimplexRestart] = []
    let outputs: (val: Predictions, test: Predictions?)
    var writer: ArtifactWriter
    do {
        writer = try run.begin(inputs: members.map { ManifestInput(name: "member", path: $0.folder, key: $0.key) }
                                   + [ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                               seed: context.config.seed, resume: keepFolder)
    } catch { throw .artifact(error) }
    switch method {
    case .vote:
        outputs = (majorityVote(val), test.map(majorityVote))
    case .average:
        outputs = (averaged(val), test.map(averaged))
    case .weighted:
        guard let fitting = config.fitOn == .val ? val : test else {
            throw .emptySplit(dataset: dataset.folder, split: "test (ensemble.fitOn is test)")
        }
        if config.fitOn == .test { notes.append("weights fitted on the test split (the paper's protocol): test-set numbers are optimistic") }
        var generator = SplitMix64(seed: context.config.seed, stream: 0xE45E)
        (fit, restarts) = chooseWeights(fitting, procedure: config.weights, restarts: config.restarts, generator: &generator)
        let weights = fit?.weights ?? []
        outputs = (weightedSum(val, weights: weights), test.map { weightedSum($0, weights: weights) })
        context.sink(.note("weights " + weights.map { String(format: "%.6f", $0) }.joined(separator: ", ")
            + " (log loss \(String(format: "%.6f", fit?.objective ?? .nan)) on \(config.fitOn.rawValue), KKT residual "
            + "\(String(format: "%.1e", fit?.kktResidual ?? .nan)))"))
    case .stacking:
        let trained = try trainStacking(context, members: members, data: (data, dataset, datasetKey), resuming: resuming, writer: &writer)
        outputs = (trained.val, trained.test)
    case .modelLevel:
        let cache = try DCLCache.build(context, members: members, dataset: dataset, folder: run.folder)
        let trained = try trainModelLevel(context, cache: cache, splits: dataset.rows.map(\.split), resuming: resuming, writer: &writer)
        cache.remove()
        if config.modelLevelCodeCompat { notes.append("the released code's freezing bug: only the final Dense trained, NewConv left at its random initialisation") }
        outputs = (trained.val, trained.test)
    }
    let label = "Top-\(members.count) \(method.title)" + (ranked.map { " [ranked on \($0.rawValue)" } ?? " [named members")
        + (settings.fittedOn.map { ", fitted on \($0.rawValue)]" } ?? "]")
    let file = EnsembleFile(formatVersion: ensembleFormatVersion, method: method, label: label, dataset: dataset.folder,
                            members: members, selection: selection, ranking: ranked == nil ? [] : ranking, rankedOn: ranked,
                            fittedOn: settings.fittedOn, weightProcedure: settings.weights, weights: fit, restarts: restarts,
                            protocolNotes: notes)
    do {
        try writer.write(Array(predictionCSV(outputs.val).utf8), to: "predictions-val.csv")
        if let test = outputs.test { try writer.write(Array(predictionCSV(test).utf8), to: "predictions-test.csv") }
        try writer.write(try canonicalJSON(file), to: "ensemble.json")
        var summary: [String: JSONValue] = [
            "method": .string(method.rawValue), "label": .string(label), "selection": .string(selection),
            "members": .array(members.map { .string($0.loss.rawValue) }),
            "rankedOn": ranked.map { .string($0.rawValue) } ?? .null, "fittedOn": settings.fittedOn.map { .string($0.rawValue) } ?? .null,
        ]
        if let fit { summary["weights"] = .array(fit.weights.map { .number($0) }) }
        return writer.result(try writer.finish(summary: .object(summary)))
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}

/// What decides an ensemble prediction artifact besides the ensemble and the dataset.
struct EnsemblePredictSettings: Codable, Equatable {
    var method: EnsembleMethod
    var members: [ClassificationLoss]
}

/// Predictions of a fitted ensemble (an `ensemble` artifact) for every image of any prepared
/// dataset, written as `predictions.csv` in the evaluate format, so an ensemble can be scored on
/// data it never saw: its members predict the images (their `classify-train predict` artifacts are
/// made or reused) and are combined as the ensemble was, with its fitted weights or meta-learner.
///
/// - Throws: `StageError` naming the ensemble file, a member that is gone, or unreadable weights.
public func runEnsemblePredict(_ context: StageContext, model: (folder: String, manifest: Manifest), data: String) throws(StageError) -> StageResult {
    guard model.manifest.stage == "ensemble" else {
        throw .artifact(.invalidManifest(path: model.folder + "/manifest.json", message: "stage '\(model.manifest.stage)', not an ensemble artifact"))
    }
    let file: EnsembleFile
    do {
        file = try JSONDecoder().decode(EnsembleFile.self, from: Data(readFile(model.folder + "/ensemble.json")))
    } catch {
        throw .artifact(.invalidManifest(path: model.folder + "/ensemble.json", message: "unreadable: \(error)"))
    }
    let dataset: Dataset, datasetKey: String
    do { (dataset, datasetKey) = try context.dataset(named: data) } catch { throw .artifact(error) }
    let settings = EnsemblePredictSettings(method: file.method, members: file.members.map(\.loss))
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "ensemble-predict", variant: "\(model.manifest.variant)-on-\(data)", settings: settings,
                                       inputKeys: [model.manifest.key, datasetKey], formatVersion: ensembleFormatVersion,
                                       force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    var writer: ArtifactWriter
    do {
        writer = try run.begin(inputs: [ManifestInput(name: "ensemble", path: model.folder, key: model.manifest.key),
                                        ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)],
                               seed: context.config.seed)
    } catch { throw .artifact(error) }
    let combined: Predictions
    if file.method == .modelLevel {
        let cache = try DCLCache.build(context, members: file.members, dataset: dataset, folder: run.folder)
        let parameters = ModelLevelHead.parameters(seed: context.config.seed, channels: cache.channels)
        try loadWeights(parameters, from: model.folder + "/model.safetensors")
        combined = try modelLevelPredict(parameters, cache, rows: Array(0..<cache.ids.count),
                                         batchSize: context.config.ensemble.modelLevel.batchSize).predictions
        cache.remove()
    } else {
        let all = try memberPredictionsOnAllImages(context, members: file.members, data: (data, dataset, datasetKey))
        switch file.method {
        case .vote: combined = majorityVote(all)
        case .average: combined = averaged(all)
        case .weighted:
            guard let weights = file.weights?.weights, weights.count == all.count else {
                throw .artifact(.invalidManifest(path: model.folder + "/ensemble.json", message: "no weights for its \(all.count) members"))
            }
            combined = weightedSum(all, weights: weights)
        case .stacking, .modelLevel:
            let parameters = StackingHead.parameters(seed: context.config.seed, inputs: 3 * all.count)
            try loadWeights(parameters, from: model.folder + "/model.safetensors")
            combined = stackingPredict(parameters, StackingFeatures(all, rows: Array(0..<all[0].count))).predictions
        }
    }
    do {
        try writer.write(Array(predictionCSV(combined).utf8), to: "predictions.csv")
        return writer.result(try writer.finish(summary: .object([
            "images": .number(Double(combined.count)), "method": .string(file.method.rawValue), "label": .string(file.label),
        ])))
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}

/// One ensemble artifact combined into the proposed model.
public struct CombinedEnsemble: Codable, Sendable, Equatable {
    public var name: String
    public var folder: String
    public var key: String
}

/// proposed.json: the paper's "proposed" model (SPEC §6.2), the weighted average of the
/// model-level top-3 and top-5 ensembles.
public struct ProposedFile: Codable, Sendable {
    public var formatVersion: Int
    public var label: String
    public var ensembles: [CombinedEnsemble]
    public var fittedOn: EnsembleSplit
    public var weightProcedure: WeightProcedure
    public var weights: SimplexFit
    public var restarts: [SimplexRestart]
    public var protocolNotes: [String]
}

/// What decides the proposed model besides its two ensembles' keys.
struct ProposedSettings: Codable, Equatable {
    var ensembles: [String]
    var fittedOn: EnsembleSplit
    var weights: WeightProcedure
    var restarts: Int?
    var seed: UInt64
}

/// The paper's proposed model on dataset `data`: the weighted average (same weight procedure as
/// weighted averaging, fitted on `ensemble.fitOn`) of the current `model-level-top3-<data>` and
/// `model-level-top5-<data>` ensembles. Writes `artifacts/ensemble/proposed-<data>/<key>/`.
///
/// - Throws: `StageError` naming the model-level ensemble that is missing.
public func runProposed(_ context: StageContext, data: String, sizes: [Int] = [3, 5]) throws(StageError) -> StageResult {
    let config = context.config.ensemble
    var parts: [CombinedEnsemble] = []
    for k in sizes {
        let variant = "model-level-top\(k)-\(data)"
        guard let found = try? context.store.current(stage: "ensemble", variant: variant) else {
            throw .artifact(.missingInput(message: "no complete ensemble '\(variant)': run `ensemble --method model-level --top \(k) --data \(data)` first"))
        }
        parts.append(CombinedEnsemble(name: variant, folder: found.folder, key: found.manifest.key))
    }
    let settings = ProposedSettings(ensembles: parts.map(\.name), fittedOn: config.fitOn, weights: config.weights,
                                    restarts: config.weights == .paper ? config.restarts : nil, seed: context.config.seed)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "ensemble", variant: "proposed-\(data)", settings: settings, inputKeys: parts.map(\.key),
                                       formatVersion: ensembleFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    func read(_ split: String) throws(StageError) -> [Predictions]? {
        let paths = parts.map { $0.folder + "/predictions-\(split).csv" }
        guard paths.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else { return nil }
        var out: [Predictions] = []
        for path in paths {
            do { out.append(try readPredictions(path: path).predictions) } catch { throw .artifact(.missingInput(message: error.description)) }
        }
        do { return try aligned(out, names: parts.map(\.name)) } catch { throw .data(.invalidSource(path: parts[0].folder, message: error.description)) }
    }
    guard let val = try read("val") else { throw .emptySplit(dataset: parts[0].folder, split: "validation predictions") }
    let test = try read("test")
    guard let fitting = config.fitOn == .val ? val : test else { throw .emptySplit(dataset: parts[0].folder, split: "test (ensemble.fitOn is test)") }
    var generator = SplitMix64(seed: context.config.seed, stream: 0x9809)
    let (fit, restarts) = chooseWeights(fitting, procedure: config.weights, restarts: config.restarts, generator: &generator)
    var notes: [String] = []
    if config.fitOn == .test { notes.append("weights fitted on the test split (the paper's protocol): test-set numbers are optimistic") }
    let label = "Proposed: weighted average of the model-level " + sizes.map { "top-\($0)" }.joined(separator: " and ")
        + " [fitted on \(config.fitOn.rawValue)]"
    let file = ProposedFile(formatVersion: ensembleFormatVersion, label: label, ensembles: parts, fittedOn: config.fitOn,
                            weightProcedure: config.weights, weights: fit, restarts: restarts, protocolNotes: notes)
    do {
        var writer = try run.begin(inputs: parts.map { ManifestInput(name: $0.name, path: $0.folder, key: $0.key) }, seed: context.config.seed)
        try writer.write(Array(predictionCSV(weightedSum(val, weights: fit.weights)).utf8), to: "predictions-val.csv")
        if let test { try writer.write(Array(predictionCSV(weightedSum(test, weights: fit.weights)).utf8), to: "predictions-test.csv") }
        try writer.write(try canonicalJSON(file), to: "proposed.json")
        context.sink(.note("weights " + fit.weights.map { String(format: "%.4f", $0) }.joined(separator: ", ")
            + " on \(config.fitOn.rawValue) (KKT residual \(String(format: "%.1e", fit.kktResidual)))"))
        return writer.result(try writer.finish(summary: .object([
            "method": .string("proposed"), "label": .string(label), "fittedOn": .string(config.fitOn.rawValue),
            "weights": .array(fit.weights.map { .number($0) }),
        ])))
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}
