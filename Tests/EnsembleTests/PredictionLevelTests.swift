// Prediction-level ensembles: the vote's tie-break anchors (SPEC §6.1), averaging and the log loss
// by hand, the simplex weights against SciPy's SLSQP (fixtures from make_fixtures.py), the paper's
// restart rule, and members that cannot be combined.

import Foundation
import SeededRandom
import XCTest
@testable import Ensembles
@testable import Metrics

extension Array {
    /// Consecutive slices of `size` elements.
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}

final class PredictionLevelTests: XCTestCase {
    func predictions(_ rows: [[Double]], labels: [Int], ids: [String]? = nil) -> Predictions {
        Predictions(ids: ids ?? labels.indices.map { "img\($0)" }, labels: labels, probabilities: rows.flatMap { $0 }, classes: 3)
    }

    func testVoteTieBreakTakesTheLargestClassAmongTheTied() {
        XCTAssertEqual(maxMode([0, 1, 2]), 2)  // SPEC §6.1 anchors
        XCTAssertEqual(maxMode([0, 0, 1, 1, 2]), 1)
        XCTAssertEqual(maxMode([2, 0, 0]), 0)
        XCTAssertEqual(maxMode([1, 1, 1, 0, 2]), 1)
        // Three members on two images: image 0 votes 0, 1, 2 (→ 2); image 1 votes 1, 1, 0 (→ 1).
        let a = predictions([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], labels: [0, 1])
        let b = predictions([[0.1, 0.8, 0.1], [0.1, 0.6, 0.3]], labels: [0, 1])
        let c = predictions([[0.2, 0.3, 0.5], [0.5, 0.4, 0.1]], labels: [0, 1])
        let vote = majorityVote([a, b, c])
        XCTAssertEqual(vote.probabilities, [0, 0, 1, 0, 1, 0])
        XCTAssertEqual(vote.labels, [0, 1])
    }

    func testHardVoteScoresGiveThePaperAnchorsThroughEvaluate() {
        // SPEC §11: a vote that is right on 580 of 624 images (0.9295), scored on its one-hot output,
        // has micro AUROC 0.9471 and AUPRC 0.9412. Two members predict the votes with different
        // confidences, a third dissents everywhere, so the vote itself decides every image.
        let cm = [[230, 5, 7], [4, 220, 10], [3, 15, 130]]
        var labels: [Int] = [], votes: [Int] = []
        for t in 0..<3 { for p in 0..<3 { for _ in 0..<cm[t][p] { labels.append(t); votes.append(p) } } }
        func member(_ predicted: [Int], peak: Double) -> Predictions {
            let rows = predicted.flatMap { v in (0..<3).map { $0 == v ? peak : (1 - peak) / 2 } }
            return predictions(rows.chunked(3), labels: labels)
        }
        let vote = majorityVote([member(votes, peak: 0.5), member(votes.map { ($0 + 1) % 3 }, peak: 0.9), member(votes, peak: 0.7)])
        var g = SplitMix64(seed: 1)
        let report = evaluate(vote, name: "vote", classNames: ["bacterial", "normal", "viral"], resamples: 20, level: 0.95, bins: 15,
                              validation: nil, generator: &g)
        XCTAssertEqual(report.accuracy, 580.0 / 624, accuracy: 1e-12)
        XCTAssertEqual((report.aurocMicro * 1e4).rounded() / 1e4, 0.9471)
        XCTAssertEqual((report.auprcMicro * 1e4).rounded() / 1e4, 0.9412)
    }

    func testAveragingAndLogLossByHand() {
        let a = predictions([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], labels: [0, 2])
        let b = predictions([[0.2, 0.5, 0.3], [0.0, 0.4, 0.6]], labels: [0, 2])
        let mean = averaged([a, b])
        for (got, want) in zip(mean.probabilities, [0.4, 0.4, 0.2, 0.1, 0.3, 0.6]) { XCTAssertEqual(got, want, accuracy: 1e-15) }
        XCTAssertEqual(sklearnLogLoss(mean), -(log(0.4) + log(0.6)) / 2, accuracy: 1e-15)
        // A zero probability is clipped at 1e-15 and the row renormalised.
        let certain = predictions([[0, 1, 0]], labels: [0])
        let clipped = 1e-15 / (1e-15 + (1 - 1e-15) + 1e-15)
        XCTAssertEqual(sklearnLogLoss(certain), -log(clipped), accuracy: 1e-9)
    }

    struct Fixture: Decodable {
        struct Set: Decodable {
            var name: String
            var labels: [Int]
            var members: [[Double]]
            var weights: [Double]
            var objective: Double
            var unique: Bool
        }
        var sets: [Set]
    }

    static let fixture: Fixture = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("weights.json")
        return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }()

    func members(_ set: Fixture.Set) -> [Predictions] {
        set.members.map { Predictions(ids: set.labels.indices.map { "img\($0)" }, labels: set.labels, probabilities: $0, classes: 3) }
    }

    func testWeightsMatchSciPySLSQP() {
        XCTAssertEqual(Self.fixture.sets.count, 4)
        for set in Self.fixture.sets {
            let fit = fitSimplexWeights(members(set))
            XCTAssertEqual(fit.weights.count, set.weights.count, set.name)
            XCTAssertEqual(fit.weights.reduce(0, +), 1, accuracy: 1e-12, set.name)
            XCTAssertTrue(fit.weights.allSatisfy { $0 >= 0 }, set.name)
            XCTAssertEqual(fit.objective, set.objective, accuracy: 1e-9, set.name)
            XCTAssertLessThanOrEqual(fit.objective, set.objective + 1e-12, "\(set.name): worse than SLSQP")
            XCTAssertLessThanOrEqual(fit.kktResidual, 1e-8, set.name)
            XCTAssertLessThanOrEqual(fit.dualityGap, 1e-8, set.name)
            if set.unique {
                for (got, want) in zip(fit.weights, set.weights) { XCTAssertEqual(got, want, accuracy: 1e-5, set.name) }
            } else {
                // Member 3 duplicates member 0: only their sum is determined.
                XCTAssertEqual(fit.weights[0] + fit.weights[3], set.weights[0] + set.weights[3], accuracy: 1e-5, set.name)
                for m in [1, 2] { XCTAssertEqual(fit.weights[m], set.weights[m], accuracy: 1e-5, set.name) }
            }
        }
        // The useless member's weight goes to zero exactly (an active bound), not merely near it.
        let useless = Self.fixture.sets[2]
        XCTAssertEqual(fitSimplexWeights(members(useless)).weights[2], 0)
    }

    func testTheSolutionDoesNotDependOnTheStart() {
        let set = Self.fixture.sets[1]
        var g = SplitMix64(seed: 4)
        let reference = fitSimplexWeights(members(set))
        for _ in 0..<5 {
            let fit = fitSimplexWeights(members(set), start: (0..<5).map { _ in g.unit() })
            for (a, b) in zip(fit.weights, reference.weights) { XCTAssertEqual(a, b, accuracy: 1e-7) }
        }
        // A start on a vertex (one member only) still reaches the optimum.
        let vertex = fitSimplexWeights(members(set), start: [0, 1, 0, 0, 0])
        XCTAssertEqual(vertex.objective, reference.objective, accuracy: 1e-12)
    }

    func testPaperProcedureKeepsTheFirstRestartWithTheHighestAccuracy() {
        let set = Self.fixture.sets[3]
        var g = SplitMix64(seed: 8)
        let (chosen, restarts) = chooseWeights(members(set), procedure: .paper, generator: &g)
        XCTAssertEqual(restarts.count, 50)
        let best = restarts.map(\.fit.accuracy).max()!
        let first = restarts.firstIndex { $0.fit.accuracy == best }!
        XCTAssertEqual(chosen, restarts[first].fit)
        // The starts are np.random.random(K)-style draws: K values in [0, 1), not normalised.
        XCTAssertTrue(restarts.allSatisfy { $0.start.count == 4 && $0.start.allSatisfy { (0..<1).contains($0) } })
        XCTAssertNotEqual(restarts[0].start.reduce(0, +), 1)
        var again = SplitMix64(seed: 8)
        XCTAssertEqual(chooseWeights(members(set), procedure: .paper, generator: &again).restarts, restarts)
    }

    func testMembersOfOtherImagesAreRefusedByName() {
        let a = predictions([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], labels: [0, 2])
        let shorter = predictions([[0.6, 0.3, 0.1]], labels: [0])
        let renamed = predictions([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], labels: [0, 2], ids: ["img0", "other"])
        let relabelled = predictions([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], labels: [0, 1])
        XCTAssertThrowsError(try aligned([a, shorter], names: ["cce", "focal"])) { error in
            XCTAssertEqual(error as? EnsembleError, .mismatchedImages(member: "focal", reference: "cce", detail: "1 images, not 2"))
        }
        XCTAssertThrowsError(try aligned([a, a, renamed], names: ["cce", "kl", "hinge"])) { error in
            XCTAssertTrue("\(error)".contains("hinge") && "\(error)".contains("row 2 is 'other'"), "\(error)")
        }
        XCTAssertThrowsError(try aligned([a, relabelled], names: ["cce", "kl"])) { error in
            XCTAssertTrue("\(error)".contains("kl") && "\(error)".contains("label of 'img1'"), "\(error)")
        }
        XCTAssertThrowsError(try aligned([a], names: ["cce"]))
    }
}
