// Calibration of the top-class confidence: expected and maximum calibration error over equal-width
// and equal-mass bins (Guo et al. 2017), the multiclass Brier score, reliability-diagram data, and
// temperature scaling fitted on a validation set.

import Foundation

/// One bin of a reliability diagram.
public struct ReliabilityBin: Sendable, Equatable, Codable {
    public var lower: Double
    public var upper: Double
    public var count: Int
    public var accuracy: Double
    public var confidence: Double
}

/// ECE, MCE and the bins they came from.
public struct CalibrationSummary: Sendable, Equatable, Codable {
    public var binning: String
    public var ece: Double
    public var mce: Double
    public var bins: [ReliabilityBin]
}

extension Predictions {
    /// max_k p_ik and whether the arg-max is right.
    public var confidences: (confidence: [Double], correct: [Bool]) {
        let predicted = self.predicted
        return ((0..<count).map { p($0, predicted[$0]) }, (0..<count).map { predicted[$0] == labels[$0] })
    }

    /// `bins` equal-width bins over (0, 1]: a confidence c falls in bin i when i/B < c ≤ (i+1)/B
    /// (c = 0 in the first). ECE = Σ |B_i|/n·|acc_i − conf_i|; MCE = the largest gap of a non-empty bin.
    public func calibrationEqualWidth(bins: Int = 15) -> CalibrationSummary {
        let (confidence, correct) = confidences
        let step = 1.0 / Double(bins)
        let edges = (0...bins).map { $0 == bins ? 1.0 : Double($0) * step }
        var members = [[Int]](repeating: [], count: bins)
        for (i, c) in confidence.enumerated() {
            var b = 0
            while b < bins - 1 && c > edges[b + 1] { b += 1 }
            members[b].append(i)
        }
        return summarize(members.enumerated().map { (edges[$0.offset], edges[$0.offset + 1], $0.element) },
                         confidence: confidence, correct: correct, binning: "\(bins) equal-width bins")
    }

    /// `bins` equal-mass bins: images sorted by confidence (stable), split like NumPy `array_split`
    /// (the first n mod B bins one image larger).
    public func calibrationEqualMass(bins: Int = 15) -> CalibrationSummary {
        let (confidence, correct) = confidences
        let order = confidence.indices.sorted { confidence[$0] < confidence[$1] || (confidence[$0] == confidence[$1] && $0 < $1) }
        var groups: [(Double, Double, [Int])] = []
        var start = 0
        for b in 0..<bins {
            let size = count / bins + (b < count % bins ? 1 : 0)
            let slice = Array(order[start..<(start + size)])
            start += size
            let lower = slice.first.map { confidence[$0] } ?? .nan, upper = slice.last.map { confidence[$0] } ?? .nan
            groups.append((lower, upper, slice))
        }
        return summarize(groups, confidence: confidence, correct: correct, binning: "\(bins) equal-mass bins")
    }

    private func summarize(_ groups: [(Double, Double, [Int])], confidence: [Double], correct: [Bool],
                           binning: String) -> CalibrationSummary {
        var ece = 0.0, mce = 0.0
        var out: [ReliabilityBin] = []
        for (lower, upper, members) in groups {
            let n = Double(members.count)
            let accuracy = n == 0 ? 0 : Double(members.filter { correct[$0] }.count) / n
            let meanConfidence = n == 0 ? 0 : members.reduce(0) { $0 + confidence[$1] } / n
            if n > 0 {
                let gap = abs(accuracy - meanConfidence)
                ece += n / Double(count) * gap
                mce = max(mce, gap)
            }
            out.append(ReliabilityBin(lower: lower, upper: upper, count: members.count, accuracy: accuracy, confidence: meanConfidence))
        }
        return CalibrationSummary(binning: binning, ece: ece, mce: mce, bins: out)
    }

    /// Mean over images of Σ_k (p_ik − y_ik)².
    public var brier: Double {
        var sum = 0.0
        for i in 0..<count {
            for k in 0..<classes {
                let d = p(i, k) - (labels[i] == k ? 1 : 0)
                sum += d * d
            }
        }
        return sum / Double(count)
    }

    /// Mean negative log-likelihood of the true class (probabilities floored at 1e-15).
    public var negativeLogLikelihood: Double {
        (0..<count).reduce(0) { $0 - log(max(p($1, labels[$1]), 1e-15)) } / Double(count)
    }

    /// The probabilities softmax(log p / T).
    public func temperatureScaled(_ temperature: Double) -> Predictions {
        var out = [Double](repeating: 0, count: probabilities.count)
        for i in 0..<count {
            let logits = (0..<classes).map { log(max(p(i, $0), 1e-15)) / temperature }
            let top = logits.max() ?? 0
            let exps = logits.map { exp($0 - top) }
            let sum = exps.reduce(0, +)
            for k in 0..<classes { out[i * classes + k] = exps[k] / sum }
        }
        return Predictions(ids: ids, labels: labels, probabilities: out, classes: classes)
    }

    /// The temperature T minimising the NLL of softmax(log p / T) on these predictions: golden-section
    /// search over β = 1/T in [0.02, 50], where the NLL is convex.
    public func fitTemperature() -> Double {
        func loss(_ beta: Double) -> Double { temperatureScaled(1 / beta).negativeLogLikelihood }
        var lo = 0.02, hi = 50.0
        let ratio = (5.0.squareRoot() - 1) / 2
        var x1 = hi - ratio * (hi - lo), x2 = lo + ratio * (hi - lo)
        var f1 = loss(x1), f2 = loss(x2)
        while hi - lo > 1e-9 {
            if f1 <= f2 { hi = x2; x2 = x1; f2 = f1; x1 = hi - ratio * (hi - lo); f1 = loss(x1) }
            else { lo = x1; x1 = x2; f1 = f2; x2 = lo + ratio * (hi - lo); f2 = loss(x2) }
        }
        return 1 / ((lo + hi) / 2)
    }
}
