// `pipeline.json`: every hyper-parameter with the paper's values, and profiles that override
// sizes and epochs. Decoded strictly: an unknown key or a wrong type is an error naming the key
// path. A profile is a partial tree merged over the base before decoding, so it is checked the
// same way.

import Artifacts
import Datasets
import Foundation
import Imaging
import Losses
import Metrics
import Synthetic
import Training

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
}

/// The `segment` stage (SPEC §1.3 training table).
public struct SegmentConfig: Codable, Sendable, Equatable {
    /// Input side in pixels (SPEC §1.1: 512; the `fast` profile 256), a multiple of 32.
    public var size: Int
    /// Resampling of images to `size` ([P]: bicubic); masks are area-averaged and re-thresholded.
    public var interpolation: Interpolation
    public var batchSize: Int
    public var epochs: Int
    /// Keras Adam (β1 0.9, β2 0.999, ε 1e-7).
    public var learningRate: Double
    public var earlyStoppingPatience: Int
    public var plateauPatience: Int
    public var plateauFactor: Double
    public var minLearningRate: Double
    public var minDelta: Double
    /// [P]'s augmentation: a random integer shift of at most this many pixels on each axis…
    public var shiftPixels: Int
    /// …a rotation uniform in ±this many degrees…
    public var rotationDegrees: Double
    /// …and a horizontal flip with probability ½. All off when false.
    public var augment: Bool
    /// Batch-norm running-statistics momentum (Keras 0.99).
    public var batchNormMomentum: Double
    /// Probability above which a pixel is lung (SPEC §2 step 2).
    public var threshold: Double
    /// The `segment evaluate` metric that ranks the models for the top-3 ensemble.
    public var selectionMetric: SelectionMetric
    /// How many of the ranked models `mask-crop` ANDs ([P]: 3).
    public var ensembleSize: Int
}

/// The `mask-crop` stage (SPEC §2).
public struct CropConfig: Codable, Sendable, Equatable {
    /// Side of the square crops written ([C]: 512).
    public var size: Int
    /// Resampling of the crop to `size` ([C]: INTER_AREA).
    public var interpolation: Interpolation
    /// SPEC §2 step 6: MATLAB imadjust with stretchlim's 1 %/99 %.
    public var contrastStretch: Bool
    /// Thumbnails on the crop contact sheet.
    public var contactSheetImages: Int
}

/// The `classify-train` stage (SPEC §3 training table).
public struct ClassifyConfig: Codable, Sendable, Equatable {
    /// Input side in pixels (SPEC §3: 256 from the 512 crops; 224 suits the shared 224-pixel data).
    public var size: Int
    /// Resampling to `size` (SPEC §3: Keras load_img's nearest neighbour).
    public var interpolation: Interpolation
    public var batchSize: Int
    public var epochs: Int
    public var learningRate: Double
    public var momentum: Double
    public var nesterov: Bool
    public var decay: Double
    public var earlyStoppingPatience: Int
    public var plateauPatience: Int
    public var plateauFactor: Double
    public var minLearningRate: Double
    public var minDelta: Double
    /// Balanced class weights applied with Keras semantics (SPEC §4.0).
    public var classWeights: Bool
    /// The released code's loss behaviour instead of the paper's (SPEC §9 rows 1–6).
    public var codeCompat: Bool
    /// Drop-connect rate at the encoder's last block (0.2 in EfficientNet-B0).
    public var dropConnect: Double
    /// Batch-norm running-statistics momentum (Keras 0.99). With 0.99 the statistics need several
    /// hundred steps to settle; the demo and ci profiles train for fewer and use 0.9.
    public var batchNormMomentum: Double
    /// Where the encoder starts: the U-Net trained with this segmentation loss (SPEC §3: the best,
    /// focal-tversky), or "random".
    public var encoder: EncoderStart
}

/// Where a classifier's encoder starts (SPEC §3): the encoder of the U-Net trained with a
/// segmentation loss, or random weights. Written as the loss name or "random".
public enum EncoderStart: Codable, Sendable, Equatable {
    case random
    case unet(SegmentationLoss)

    /// "random" or the segmentation loss name.
    public init?(name: String) {
        if name == "random" { self = .random } else if let loss = SegmentationLoss(rawValue: name) { self = .unet(loss) } else { return nil }
    }

    public var name: String {
        switch self {
        case .random: "random"
        case let .unet(loss): loss.rawValue
        }
    }

    public static var names: [String] { ["random"] + SegmentationLoss.allCases.map(\.rawValue) }

    public init(from decoder: any Decoder) throws {
        self = try decodeNamed(decoder, Self.names) { Self(name: $0) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// Decodes a string that must be one of `names`; any other is an error that lists them.
func decodeNamed<T>(_ decoder: any Decoder, _ names: [String], _ make: (String) -> T?) throws -> T {
    let container = try decoder.singleValueContainer()
    let name = try container.decode(String.self)
    guard let value = make(name) else {
        throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(name)' must be one of \(names.joined(separator: ", "))")
    }
    return value
}
extension SegmentConfig {
    var callbacks: CallbackSettings {
        CallbackSettings(plateauFactor: plateauFactor, plateauPatience: plateauPatience, earlyStoppingPatience: earlyStoppingPatience,
                         minDelta: minDelta, minLearningRate: minLearningRate)
    }
}

extension ClassifyConfig {
    var callbacks: CallbackSettings {
        CallbackSettings(plateauFactor: plateauFactor, plateauPatience: plateauPatience, earlyStoppingPatience: earlyStoppingPatience,
                         minDelta: minDelta, minLearningRate: minLearningRate)
    }
}

/// The `evaluate` stage's intervals and calibration bins.
public struct EvaluateConfig: Codable, Sendable, Equatable {
    /// Stratified bootstrap resamples per metric (and for the paired ΔMCC test).
    public var bootstrapResamples: Int
    /// Two-sided level of the bootstrap intervals.
    public var confidenceLevel: Double
    /// Bins of the calibration errors and reliability diagrams.
    public var calibrationBins: Int
}

/// How `prepare` assigns validation and test splits (SPEC §0).
public struct PrepareConfig: Codable, Sendable, Equatable {
    /// `auto` (Keras rule for classification layouts, patient-grouped otherwise), `keras`, `patient`.
    public var validation: ValidationRule
    /// The fraction of each class (Keras rule) or of the images (patient rule) held out.
    public var validationFraction: Double
    /// Seed of the patient-grouped splits.
    public var splitSeed: UInt64
    /// Thumbnails on the dataset's contact sheet.
    public var contactSheetImages: Int
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
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw .unreadable(path: path, message: exists ? "permission denied" : "no such file")
        }
        return try parse(data, path: path, profile: profile)
    }

    /// Parses configuration bytes; `path` only names the source in errors.
    public static func parse(_ data: Data, path: String, profile: String) throws(ConfigError) -> PipelineConfig {
        let tree: JSONValue
        do {
            tree = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw .invalidJSON(path: path, message: describe(error))
        }
        guard case var .object(members) = tree else {
            throw .wrongType(path: path, key: "(top level)", expected: "an object")
        }
        var merged = JSONValue.object(members)
        let profiles = members.removeValue(forKey: "profiles")
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
        let config: PipelineConfig
        do {
            let bytes = try JSONEncoder().encode(merged)
            config = try JSONDecoder().decode(PipelineConfig.self, from: bytes)
        } catch let error as DecodingError {
            throw translate(error, path: path)
        } catch {
            throw .invalidJSON(path: path, message: describe(error))
        }
        // Every key the typed config did not read is unknown.
        let known = ((try? JSONValue(encoding: config)) ?? .null).keyPaths()
        if let unknown = merged.keyPaths().subtracting(known).sorted().first {
            throw .unknownKey(path: path, key: unknown)
        }
        try config.validate(path: path)
        return config
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
        if evaluate.calibrationBins < 2 { throw .badValue(path: path, key: "evaluate.calibrationBins", message: "must be at least 2") }
        if synthetic.size < 32 { throw .badValue(path: path, key: "synthetic.size", message: "must be at least 32") }
        if synthetic.trainPerClass < 1 || synthetic.testPerClass < 0 || synthetic.lungImages < 1 {
            throw .badValue(path: path, key: "synthetic", message: "image counts must be positive")
        }
    }

    private static func translate(_ error: DecodingError, path: String) -> ConfigError {
        func dotted(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
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

private func describe(_ error: any Error) -> String {
    if case let DecodingError.dataCorrupted(context) = error {
        return (context.underlyingError.map { "\($0.localizedDescription)" }) ?? context.debugDescription
    }
    return "\(error)"
}
