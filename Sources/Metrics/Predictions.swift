// The input of every metric: true class indices and per-class probabilities, one row per image.
// Dimension letters: n images, K classes (3 here: 0 bacterial, 1 normal, 2 viral; SPEC notation).

/// Predictions of one model (or ensemble) on a set of images.
public struct Predictions: Sendable, Equatable {
    /// Image identifiers, in file order.
    public let ids: [String]
    /// True class index of each image, in 0..<classes.
    public let labels: [Int]
    /// n×K probabilities, row-major.
    public let probabilities: [Double]
    public let classes: Int

    /// - Precondition: shapes agree and labels lie in 0..<classes.
    public init(ids: [String], labels: [Int], probabilities: [Double], classes: Int) {
        precondition(classes >= 2, "at least two classes")
        precondition(ids.count == labels.count && probabilities.count == labels.count * classes, "shape mismatch")
        precondition(labels.allSatisfy { (0..<classes).contains($0) }, "label out of range")
        self.ids = ids
        self.labels = labels
        self.probabilities = probabilities
        self.classes = classes
    }

    public var count: Int { labels.count }

    /// Probability of class `k` for image `i`.
    @inline(__always) public func p(_ i: Int, _ k: Int) -> Double { probabilities[i * classes + k] }

    /// The arg-max class of each image (the first maximum on ties, as NumPy's argmax).
    public var predicted: [Int] {
        (0..<count).map { i in
            var best = 0
            for k in 1..<classes where p(i, k) > p(i, best) { best = k }
            return best
        }
    }

    /// The rows `indices` (with repetition), for resampling.
    public func subset(_ indices: [Int]) -> Predictions {
        var probs: [Double] = []
        probs.reserveCapacity(indices.count * classes)
        for i in indices { probs.append(contentsOf: probabilities[(i * classes)..<((i + 1) * classes)]) }
        return Predictions(ids: indices.map { ids[$0] }, labels: indices.map { labels[$0] },
                           probabilities: probs, classes: classes)
    }

    /// One-hot rows of the labels, n×K row-major (the `Y` of SPEC §5).
    public var oneHot: [Double] {
        var y = [Double](repeating: 0, count: count * classes)
        for (i, label) in labels.enumerated() { y[i * classes + label] = 1 }
        return y
    }

    /// Predictions replaced by the one-hot of `votes` (majority voting is scored this way, SPEC §5).
    public func hardened(_ votes: [Int]) -> Predictions {
        var probs = [Double](repeating: 0, count: count * classes)
        for (i, v) in votes.enumerated() { probs[i * classes + v] = 1 }
        return Predictions(ids: ids, labels: labels, probabilities: probs, classes: classes)
    }
}
