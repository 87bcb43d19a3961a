// The sections of `pipeline.json`, one per stage, with the paper's values in the repository's file.
// Named choices (interpolation, selection metric, encoder start) are enums decoded once when the
// configuration loads; an unknown name is an error there, never a silent default later.

import Datasets
import Ensembles
import Foundation
import Imaging
import Losses
import Metrics
import Training

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
/// A configuration section with Keras-style callbacks.
protocol CallbackSection {
    var plateauFactor: Double { get }
    var plateauPatience: Int { get }
    var earlyStoppingPatience: Int { get }
    var minDelta: Double { get }
    var minLearningRate: Double { get }
}

extension CallbackSection {
    /// The callbacks' settings (watching the validation loss unless the caller says otherwise).
    var callbacks: CallbackSettings {
        CallbackSettings(plateauFactor: plateauFactor, plateauPatience: plateauPatience, earlyStoppingPatience: earlyStoppingPatience,
                         minDelta: minDelta, minLearningRate: minLearningRate)
    }
}

extension SegmentConfig: CallbackSection {}
extension ClassifyConfig: CallbackSection {}
extension MetaLearnerConfig: CallbackSection {}

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

/// The split an ensemble's members are ranked on or its weights fitted on. `val` is the default;
/// `test` is the paper's protocol (selection on the test set), and every output made that way says so.
public enum EnsembleSplit: String, Codable, Sendable, CaseIterable {
    case val, test

    public init(from decoder: any Decoder) throws {
        self = try decodeNamed(decoder, Self.allCases.map(\.rawValue)) { Self(rawValue: $0) }
    }
}

/// The `ensemble` stage (SPEC §6).
public struct EnsembleConfig: Codable, Sendable, Equatable {
    /// The split `--top K` ranks the classifiers on, by MCC.
    public var rankOn: EnsembleSplit
    /// The split weighted averaging fits its weights on.
    public var fitOn: EnsembleSplit
    /// `optimum` (one exact solve) or `paper` (the released code's restarts, best accuracy kept).
    public var weights: WeightProcedure
    /// Random starts of the `paper` weight procedure ([C]: 50).
    public var restarts: Int
    /// The stacking meta-learner's training (SPEC §6.1).
    public var stacking: MetaLearnerConfig
    /// The model-level head's training (SPEC §6.2).
    public var modelLevel: MetaLearnerConfig
    /// The released code's model-level freezing bug: only the final Dense trains, NewConv stays at its
    /// random initialisation (SPEC §6.2).
    public var modelLevelCodeCompat: Bool
}

/// Training of an ensemble's trained part — the stacking meta-learner or the model-level head —
/// with Keras SGD and callbacks on validation accuracy (SPEC §6.1, §6.2).
public struct MetaLearnerConfig: Codable, Sendable, Equatable {
    public var epochs: Int
    public var batchSize: Int
    public var learningRate: Double
    public var momentum: Double
    public var nesterov: Bool
    public var decay: Double
    public var earlyStoppingPatience: Int
    public var plateauPatience: Int
    public var plateauFactor: Double
    public var minLearningRate: Double
    public var minDelta: Double
    /// Balanced class weights from the training split, as for the members.
    public var classWeights: Bool
}


