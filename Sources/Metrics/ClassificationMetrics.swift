// Threshold-free counts: the confusion matrix and everything computed from it (SPEC §5):
// accuracy, precision/recall/F1 weighted by true-class support (the paper's) and macro, the
// multiclass MCC of Gorodkin (scikit-learn's `matthews_corrcoef`), and Cohen's κ.

/// Counts of (true class, predicted class); rows are true classes.
public struct ConfusionMatrix: Sendable, Equatable, Codable {
    public let classes: Int
    /// counts[t][p].
    public var counts: [[Int]]

    public init(classes: Int, counts: [[Int]]) {
        self.classes = classes
        self.counts = counts
    }

    public init(labels: [Int], predicted: [Int], classes: Int) {
        var counts = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (t, p) in zip(labels, predicted) { counts[t][p] += 1 }
        self.init(classes: classes, counts: counts)
    }

    public var total: Int { counts.joined().reduce(0, +) }
    public var correct: Int { (0..<classes).reduce(0) { $0 + counts[$1][$1] } }
    /// Images per true class (row sums).
    public var support: [Int] { counts.map { $0.reduce(0, +) } }
    /// Images per predicted class (column sums).
    public var predictedCounts: [Int] { (0..<classes).map { c in counts.reduce(0) { $0 + $1[c] } } }

    public var accuracy: Double { Double(correct) / Double(total) }

    /// Per-class precision tp/(tp+fp); 0 when nothing was predicted as the class.
    public var precision: [Double] {
        let predicted = predictedCounts
        return (0..<classes).map { predicted[$0] == 0 ? 0 : Double(counts[$0][$0]) / Double(predicted[$0]) }
    }

    /// Per-class recall tp/(tp+fn); 0 for a class absent from the truth.
    public var recall: [Double] {
        let support = self.support
        return (0..<classes).map { support[$0] == 0 ? 0 : Double(counts[$0][$0]) / Double(support[$0]) }
    }

    /// Per-class F1; 0 where precision + recall is 0.
    public var f1: [Double] {
        zip(precision, recall).map { p, r in p + r == 0 ? 0 : 2 * p * r / (p + r) }
    }

    /// The support-weighted mean of per-class values (scikit-learn `average='weighted'`).
    public func weighted(_ values: [Double]) -> Double {
        let support = self.support
        return zip(values, support).reduce(0) { $0 + $1.0 * Double($1.1) } / Double(total)
    }

    /// The unweighted mean over all K classes (`average='macro'` with every label listed).
    public func macro(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }

    /// Gorodkin's R_K: (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)); 0 when undefined.
    public var mcc: Double {
        let s = Double(total), c = Double(correct)
        let t = support.map(Double.init), p = predictedCounts.map(Double.init)
        let cov = c * s - zip(p, t).reduce(0) { $0 + $1.0 * $1.1 }
        let varP = s * s - p.reduce(0) { $0 + $1 * $1 }
        let varT = s * s - t.reduce(0) { $0 + $1 * $1 }
        let denominator = (varP * varT).squareRoot()
        return denominator == 0 ? 0 : cov / denominator
    }

    /// Cohen's κ = (p_o − p_e)/(1 − p_e) with p_e = Σ p_k t_k / s².
    public var kappa: Double {
        let s = Double(total)
        let pe = zip(predictedCounts, support).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } / (s * s)
        return pe == 1 ? 0 : (accuracy - pe) / (1 - pe)
    }

    /// Rows divided by their sums (0 for an empty row).
    public var rowNormalized: [[Double]] {
        counts.map { row in
            let sum = row.reduce(0, +)
            return row.map { sum == 0 ? 0 : Double($0) / Double(sum) }
        }
    }
}
