// Segmentation metrics (SPEC §1.2, per image): Dice, IoU and pixel accuracy of a predicted mask
// against the ground truth, their mean and sample standard deviation over images, and the Table 1
// rows and ranking they make.

/// Dice, IoU and pixel accuracy of one predicted mask against the ground truth (both empty:
/// Dice = IoU = 1).
public struct MaskScore: Codable, Sendable, Equatable {
    public var dice: Double
    public var iou: Double
    public var accuracy: Double

    /// Scores `predicted` against `truth`, pixel by pixel (lung = true).
    ///
    /// - Precondition: both have the same number of pixels.
    public init(predicted: [Bool], truth: [Bool]) {
        precondition(predicted.count == truth.count, "a mask of \(predicted.count) pixels scored against \(truth.count)")
        var both = 0, either = 0, equal = 0, predictedCount = 0, truthCount = 0
        for (p, t) in zip(predicted, truth) {
            if p && t { both += 1 }
            if p || t { either += 1 }
            if p == t { equal += 1 }
            if p { predictedCount += 1 }
            if t { truthCount += 1 }
        }
        dice = predictedCount + truthCount == 0 ? 1 : 2 * Double(both) / Double(predictedCount + truthCount)
        iou = either == 0 ? 1 : Double(both) / Double(either)
        accuracy = Double(equal) / Double(max(1, truth.count))
    }
}

/// Mean and sample standard deviation.
public struct MeanSD: Codable, Sendable, Equatable {
    public var mean: Double
    public var sd: Double

    public init(_ values: [Double]) {
        let n = Double(values.count)
        let mean = values.reduce(0, +) / max(n, 1)
        self.mean = mean
        sd = n > 1 ? (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)).squareRoot() : 0
    }
}

/// The Table 1 metric that ranks U-Nets for the AND ensemble ([P]: "accuracy/Dice/IoU").
public enum SelectionMetric: String, Codable, Sendable, CaseIterable {
    case dice, iou, accuracy

    /// Decodes a name; an unknown one is an error that lists the known ones.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let value = Self(rawValue: name) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(name)' must be one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = value
    }
}

/// One row of Table 1.
public struct SegmentationRow: Codable, Sendable {
    public var name: String
    /// The U-Net artifact folders (several for the ensemble).
    public var models: [String]
    public var dice: MeanSD
    public var iou: MeanSD
    public var accuracy: MeanSD

    public init(name: String, models: [String], scores: [MaskScore]) {
        self.name = name
        self.models = models
        dice = MeanSD(scores.map(\.dice))
        iou = MeanSD(scores.map(\.iou))
        accuracy = MeanSD(scores.map(\.accuracy))
    }

    /// The mean of `metric`.
    public func value(of metric: SelectionMetric) -> Double {
        switch metric {
        case .dice: dice.mean
        case .iou: iou.mean
        case .accuracy: accuracy.mean
        }
    }
}

/// metrics.json of a segmentation evaluation.
public struct SegmentationEvaluation: Codable, Sendable {
    public var formatVersion: Int
    public var dataset: String
    public var split: String
    public var images: Int
    public var comparedAt: String
    public var threshold: Double
    public var selectionMetric: SelectionMetric
    /// Individual models, in the order given.
    public var models: [SegmentationRow]
    /// The models ranked by `selectionMetric` (best first), as artifact folders.
    public var ranking: [String]
    /// The bitwise AND of the top `ensembleSize` (when more than one model was evaluated).
    public var ensemble: SegmentationRow?

    public init(formatVersion: Int, dataset: String, split: String, images: Int, comparedAt: String, threshold: Double,
                selectionMetric: SelectionMetric, models: [SegmentationRow], ranking: [String], ensemble: SegmentationRow?) {
        self.formatVersion = formatVersion
        self.dataset = dataset
        self.split = split
        self.images = images
        self.comparedAt = comparedAt
        self.threshold = threshold
        self.selectionMetric = selectionMetric
        self.models = models
        self.ranking = ranking
        self.ensemble = ensemble
    }
}
