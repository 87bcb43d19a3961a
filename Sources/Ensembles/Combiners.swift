// Prediction-level ensembles (SPEC §6.1): majority voting with the released code's tie-break,
// simple averaging, and the weighted average of member probabilities. Members are `Predictions`
// of the same images in the same order (`aligned` checks it, naming the member that differs).

import Foundation
import Metrics

/// Why members cannot be combined.
public enum EnsembleError: Error, CustomStringConvertible, Equatable {
    /// Fewer than two members.
    case tooFewMembers(Int)
    /// A member's images or labels differ from the first member's.
    case mismatchedImages(member: String, reference: String, detail: String)
    /// A weight vector of the wrong length or off the simplex.
    case badWeights(String)

    public var description: String {
        switch self {
        case let .tooFewMembers(count): "an ensemble needs at least two members, got \(count)"
        case let .mismatchedImages(member, reference, detail):
            "\(member): its images differ from those of \(reference) (\(detail)); members must be predictions of the same images"
        case let .badWeights(message): "ensemble weights: \(message)"
        }
    }
}

/// Checks that every member predicts the same images, in the same order, with the same labels.
///
/// - Parameter names: one per member, used in errors.
/// - Throws: `EnsembleError.mismatchedImages` naming the first member that differs and how.
public func aligned(_ members: [Predictions], names: [String]) throws(EnsembleError) -> [Predictions] {
    guard members.count >= 2 else { throw .tooFewMembers(members.count) }
    let reference = members[0]
    for (member, name) in zip(members, names).dropFirst() {
        if member.count != reference.count {
            throw .mismatchedImages(member: name, reference: names[0], detail: "\(member.count) images, not \(reference.count)")
        }
        if member.classes != reference.classes {
            throw .mismatchedImages(member: name, reference: names[0], detail: "\(member.classes) classes, not \(reference.classes)")
        }
        if let i = (0..<member.count).first(where: { member.ids[$0] != reference.ids[$0] }) {
            throw .mismatchedImages(member: name, reference: names[0], detail: "row \(i + 1) is '\(member.ids[i])', not '\(reference.ids[i])'")
        }
        if let i = (0..<member.count).first(where: { member.labels[$0] != reference.labels[$0] }) {
            throw .mismatchedImages(member: name, reference: names[0], detail: "the label of '\(member.ids[i])' differs")
        }
    }
    return members
}

/// The most frequent vote, ties going to the largest class index: the released code's
/// `find_max_mode` (CPython ≤ 3.7 `statistics._counts` lists every value tied at the top count;
/// the code takes their maximum). [0,1,2] → 2, [0,0,1,1,2] → 1 (SPEC §6.1).
public func maxMode(_ votes: [Int]) -> Int {
    var counts: [Int: Int] = [:]
    for v in votes { counts[v, default: 0] += 1 }
    let top = counts.values.max() ?? 0
    return counts.filter { $0.value == top }.keys.max() ?? 0
}

/// Majority voting on the members' arg-max labels, as one-hot rows (SPEC §5: voting is scored on
/// the one-hot of the voted label).
///
/// - Precondition: members are aligned.
public func majorityVote(_ members: [Predictions]) -> Predictions {
    let labels = members.map(\.predicted)
    let votes = (0..<members[0].count).map { i in maxMode(labels.map { $0[i] }) }
    return members[0].hardened(votes)
}

/// The arithmetic mean of the members' probabilities.
///
/// - Precondition: members are aligned.
public func averaged(_ members: [Predictions]) -> Predictions {
    weightedSum(members, weights: [Double](repeating: 1 / Double(members.count), count: members.count))
}

/// Σ_m w_m·P_m row by row (members added in order, in Double).
///
/// - Precondition: members are aligned and `weights` has one entry per member.
public func weightedSum(_ members: [Predictions], weights: [Double]) -> Predictions {
    precondition(weights.count == members.count, "one weight per member")
    let first = members[0]
    var probabilities = [Double](repeating: 0, count: first.probabilities.count)
    for (member, w) in zip(members, weights) {
        for j in probabilities.indices { probabilities[j] += w * member.probabilities[j] }
    }
    return Predictions(ids: first.ids, labels: first.labels, probabilities: probabilities, classes: first.classes)
}

/// scikit-learn's `log_loss(Y_onehot, P)`: every probability clipped to [1e-15, 1 − 1e-15], each
/// row renormalised to sum 1, then the mean of −log of the true class's probability.
public func sklearnLogLoss(_ predictions: Predictions) -> Double {
    let eps = 1e-15, k = predictions.classes
    var total = 0.0
    for i in 0..<predictions.count {
        var row = (0..<k).map { min(max(predictions.p(i, $0), eps), 1 - eps) }
        let sum = row.reduce(0, +)
        row = row.map { $0 / sum }
        total -= Foundation.log(row[predictions.labels[i]])
    }
    return total / Double(predictions.count)
}

/// Top-1 accuracy of arg-max predictions.
public func accuracy(_ predictions: Predictions) -> Double {
    Double(zip(predictions.predicted, predictions.labels).filter { $0 == $1 }.count) / Double(predictions.count)
}
