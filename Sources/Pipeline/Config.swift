// `pipeline.json`: every hyper-parameter with the paper's values, and profiles that override
// sizes and epochs. Decoded strictly: an unknown key or a wrong type is an error naming the key
// path. A profile is a partial tree merged over the base before decoding, so it is checked the
// same way.

import Artifacts
import Datasets
import Foundation
import Imaging
import Metrics
import Synthetic

/// The whole pipeline configuration after a profile has been applied.
public struct PipelineConfig: Codable, Sendable, Equatable {
    /// The schema version of `pipeline.json` this build reads.
    public static let formatVersion = 1

    public var formatVersion: Int
    /// The root seed; each stage derives its own streams from it.
    public var seed: UInt64
    /// Worker threads for data-parallel loops and BLAS (recorded in every manifest).
    public var threads: Int
    public var prepare: PrepareConfig
    public var synthetic: SyntheticConfig
    public var evaluate: EvaluateConfig
    public var segment: SegmentConfig
    public var crop: CropConfig
    public var classify: ClassifyConfig
    public var ensemble: EnsembleConfig
}

/// A `pipeline.json` problem, naming the file and key path.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, message: String)
    case invalidJSON(path: String, message: String)
    case unknownKey(path: String, key: String)
    case wrongType(path: String, key: String, expected: String)
    case missingKey(path: String, key: String)
    case badValue(path: String, key: String, message: String)
    case unknownProfile(path: String, name: String, known: [String])

    public var description: String {
        switch self {
        case let .unreadable(path, message): "\(path): cannot read the configuration: \(message)"
        case let .invalidJSON(path, message): "\(path): not valid JSON: \(message)"
        case let .unknownKey(path, key): "\(path): unknown key '\(key)' (misspelt, or from another version?)"
        case let .wrongType(path, key, expected): "\(path): key '\(key)' must be \(expected)"
        case let .missingKey(path, key): "\(path): missing key '\(key)'"
        case let .badValue(path, key, message): "\(path): key '\(key)': \(message)"
        case let .unknownProfile(path, name, known):
            "\(path): no profile '\(name)'; profiles: \(known.joined(separator: ", "))"
        }
    }
}

extension PipelineConfig {
    /// Reads `path` and applies `profile` (a key of its `profiles` object).
    ///
    /// - Throws: `ConfigError` naming the file and key.
    public static func load(path: String, profile: String) throws(ConfigError) -> PipelineConfig {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        if exists && isFolder.boolValue { throw .unreadable(path: path, message: "a folder, not a configuration file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path: path, message: exists ? "permission denied" : "no such file")
        }
        return try parse(data, path: path, profile: profile)
    }

    /// Parses configuration bytes; `path` only names the source in errors.
    public static func parse(_ data: Data, path: String, profile: String) throws(ConfigError) -> PipelineConfig {
        let tree: JSONValue
        do {
            tree = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let DecodingError.typeMismatch(_, context) where !context.codingPath.isEmpty {
            // A value no JSON type takes: in practice a number out of range (1e999).
            throw .badValue(path: path, key: dotted(context.codingPath), message: "not a value this build can read (a number out of range?)")
        } catch {
            throw .invalidJSON(path: path, message: describe(error))
        }
        guard case var .object(members) = tree else {
            throw .wrongType(path: path, key: "(top level)", expected: "an object")
        }
        var merged = JSONValue.object(members)
        let profiles = members.removeValue(forKey: "profiles")
        let base = JSONValue.object(members)
        if let profiles {
            guard case let .object(named) = profiles else {
                throw .wrongType(path: path, key: "profiles", expected: "an object of profiles")
            }
            guard let overlay = named[profile] else {
                throw .unknownProfile(path: path, name: profile, known: named.keys.sorted())
            }
            merged = JSONValue.object(members).merged(with: overlay)
        } else if profile != "paper" {
            throw .unknownProfile(path: path, name: profile, known: ["paper"])
        } else {
            merged = .object(members)
        }
        let config = try decodeConfig(merged, path: path)
        // The base must be valid on its own: a profile that overrides a broken key hides it only
        // until another profile is chosen.
        do { _ = try decodeConfig(base, path: path) } catch {
            throw error.inBase
        }
        // Every key the typed config did not read is unknown.
        let known = ((try? JSONValue(encoding: config)) ?? .null).keyPaths()
        if let unknown = merged.keyPaths().subtracting(known).sorted().first {
            throw .unknownKey(path: path, key: unknown)
        }
        try config.validate(path: path)
        return config
    }

    /// The typed configuration of a merged tree, or the error naming the key.
    private static func decodeConfig(_ tree: JSONValue, path: String) throws(ConfigError) -> PipelineConfig {
        do {
            return try JSONDecoder().decode(PipelineConfig.self, from: JSONEncoder().encode(tree))
        } catch let error as DecodingError {
            // Foundation reports a fraction where an integer belongs without the key: find it by
            // rounding each fractional number in turn until the error changes.
            if case let .dataCorrupted(context) = error, context.codingPath.isEmpty,
               let key = tree.fractionalKeyPaths().first(where: { key in
                   (try? JSONDecoder().decode(PipelineConfig.self, from: JSONEncoder().encode(tree.rounding(at: key)))) != nil
                       || !isEmptyPathCorruption(tree.rounding(at: key))
               }) {
                throw .wrongType(path: path, key: key, expected: "an integer")
            }
            throw translate(error, path: path)
        } catch {
            throw .invalidJSON(path: path, message: describe(error))
        }
    }

    /// Whether decoding `tree` still fails with a data-corruption error that names no key.
    private static func isEmptyPathCorruption(_ tree: JSONValue) -> Bool {
        do { _ = try JSONDecoder().decode(PipelineConfig.self, from: JSONEncoder().encode(tree)) } catch let DecodingError.dataCorrupted(context) {
            return context.codingPath.isEmpty
        } catch { return false }
        return false
    }

    private func validate(path: String) throws(ConfigError) {
        if formatVersion != Self.formatVersion {
            throw .badValue(path: path, key: "formatVersion",
                            message: "this build reads version \(Self.formatVersion), the file has \(formatVersion)")
        }
        if threads < 1 { throw .badValue(path: path, key: "threads", message: "must be at least 1") }
        if !(0..<1).contains(prepare.validationFraction) {
            throw .badValue(path: path, key: "prepare.validationFraction", message: "must be in [0, 1)")
        }
        if evaluate.bootstrapResamples < 10 {
            throw .badValue(path: path, key: "evaluate.bootstrapResamples", message: "must be at least 10")
        }
        if !(0.5..<1).contains(evaluate.confidenceLevel) {
            throw .badValue(path: path, key: "evaluate.confidenceLevel", message: "must be in [0.5, 1)")
        }
        if segment.size < 32 || segment.size % 32 != 0 {
            throw .badValue(path: path, key: "segment.size", message: "must be a multiple of 32 (the U-Net downsamples five times)")
        }
        if segment.batchSize < 1 || segment.epochs < 1 {
            throw .badValue(path: path, key: "segment", message: "batchSize and epochs must be positive")
        }
        if !(0 < segment.threshold && segment.threshold < 1) {
            throw .badValue(path: path, key: "segment.threshold", message: "must be in (0, 1)")
        }
        if segment.ensembleSize < 1 { throw .badValue(path: path, key: "segment.ensembleSize", message: "must be at least 1") }
        if crop.size < 16 { throw .badValue(path: path, key: "crop.size", message: "must be at least 16") }
        if classify.size < 32 || classify.size % 16 != 0 {
            throw .badValue(path: path, key: "classify.size", message: "must be a multiple of 16, at least 32")
        }
        if classify.batchSize < 1 || classify.epochs < 1 {
            throw .badValue(path: path, key: "classify", message: "batchSize and epochs must be positive")
        }
        let trainers: [(String, Double, Double?, Double?, Double, Int, Int)] = [
            ("segment", segment.learningRate, nil, nil, segment.plateauFactor, segment.plateauPatience, segment.earlyStoppingPatience),
            ("classify", classify.learningRate, classify.momentum, classify.decay, classify.plateauFactor, classify.plateauPatience,
             classify.earlyStoppingPatience),
            ("ensemble.stacking", ensemble.stacking.learningRate, ensemble.stacking.momentum, ensemble.stacking.decay,
             ensemble.stacking.plateauFactor, ensemble.stacking.plateauPatience, ensemble.stacking.earlyStoppingPatience),
            ("ensemble.modelLevel", ensemble.modelLevel.learningRate, ensemble.modelLevel.momentum, ensemble.modelLevel.decay,
             ensemble.modelLevel.plateauFactor, ensemble.modelLevel.plateauPatience, ensemble.modelLevel.earlyStoppingPatience),
        ]
        for (section, rate, momentum, decay, factor, plateau, patience) in trainers {
            if !(rate > 0 && rate.isFinite) { throw .badValue(path: path, key: section + ".learningRate", message: "must be positive") }
            if let momentum, !(0..<1).contains(momentum) { throw .badValue(path: path, key: section + ".momentum", message: "must be in [0, 1)") }
            if let decay, !(decay >= 0) { throw .badValue(path: path, key: section + ".decay", message: "must not be negative") }
            if !(factor > 0 && factor < 1) { throw .badValue(path: path, key: section + ".plateauFactor", message: "must be in (0, 1)") }
            if plateau < 0 || patience < 0 {
                throw .badValue(path: path, key: section, message: "plateauPatience and earlyStoppingPatience must not be negative")
            }
        }
        for (key, value) in [("segment.batchNormMomentum", segment.batchNormMomentum), ("classify.batchNormMomentum", classify.batchNormMomentum),
                             ("classify.dropConnect", classify.dropConnect)] where !(0..<1).contains(value) {
            throw .badValue(path: path, key: key, message: "must be in [0, 1)")
        }
        if ensemble.restarts < 1 { throw .badValue(path: path, key: "ensemble.restarts", message: "must be at least 1") }
        for (key, section) in [("ensemble.stacking", ensemble.stacking), ("ensemble.modelLevel", ensemble.modelLevel)]
        where section.epochs < 1 || section.batchSize < 1 {
            throw .badValue(path: path, key: key, message: "batchSize and epochs must be positive")
        }
        if evaluate.calibrationBins < 2 { throw .badValue(path: path, key: "evaluate.calibrationBins", message: "must be at least 2") }
        if synthetic.size < 32 { throw .badValue(path: path, key: "synthetic.size", message: "must be at least 32") }
        if synthetic.trainPerClass < 1 || synthetic.testPerClass < 0 || synthetic.lungImages < 1 {
            throw .badValue(path: path, key: "synthetic", message: "image counts must be positive")
        }
    }

    private static func translate(_ error: DecodingError, path: String) -> ConfigError {
        switch error {
        case let .typeMismatch(type, context):
            return .wrongType(path: path, key: dotted(context.codingPath), expected: typeName(type))
        case let .valueNotFound(type, context):
            return .wrongType(path: path, key: dotted(context.codingPath), expected: typeName(type))
        case let .keyNotFound(key, context):
            return .missingKey(path: path, key: dotted(context.codingPath + [key]))
        case let .dataCorrupted(context):
            return .badValue(path: path, key: dotted(context.codingPath), message: context.debugDescription)
        @unknown default:
            return .invalidJSON(path: path, message: "\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type: "an integer"
        case is Double.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: "\(type)"
        }
    }
}

/// A coding path as the configuration's dotted key ("classify.epochs", "profiles.ci.seed").
private func dotted(_ codingPath: [any CodingKey]) -> String {
    codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

extension ConfigError {
    /// The same error, said of the base configuration (before the profile is laid over it).
    var inBase: ConfigError {
        switch self {
        case let .wrongType(path, key, expected): .wrongType(path: path, key: key + " (in the base configuration)", expected: expected)
        case let .missingKey(path, key): .missingKey(path: path, key: key + " (in the base configuration)")
        case let .badValue(path, key, message): .badValue(path: path, key: key + " (in the base configuration)", message: message)
        default: self
        }
    }
}

extension JSONValue {
    /// Dotted paths of every number with a fractional part.
    func fractionalKeyPaths(prefix: String = "") -> [String] {
        switch self {
        case let .object(members):
            return members.keys.sorted().flatMap { key in members[key]!.fractionalKeyPaths(prefix: prefix.isEmpty ? key : prefix + "." + key) }
        case let .number(value) where value != value.rounded() && value.isFinite:
            return [prefix]
        default:
            return []
        }
    }

    /// This tree with the number at dotted `path` rounded.
    func rounding(at path: String) -> JSONValue {
        let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
        switch self {
        case var .object(members):
            guard let first = parts.first, let child = members[first] else { return self }
            members[first] = parts.count == 1 ? child.roundedNumber : child.rounding(at: parts[1])
            return .object(members)
        default:
            return self
        }
    }

    private var roundedNumber: JSONValue {
        if case let .number(value) = self { return .number(value.rounded()) }
        return self
    }
}

private func describe(_ error: any Error) -> String {
    if case let DecodingError.dataCorrupted(context) = error {
        return (context.underlyingError.map { "\($0.localizedDescription)" }) ?? context.debugDescription
    }
    return "\(error)"
}
