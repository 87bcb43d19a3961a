// Central finite differences against the tape's gradients (STYLE §9a). The engine computes in
// Float32, so the check projects the output on a fixed random direction r (loss = Σ r·y, summed in
// Double), perturbs inputs by ±h and compares with |analytic − numeric| ≤ atol + rtol·|numeric|.
// `testDeliberatelyWrongBackwardFails` shows a wrong derivative cannot pass these tolerances.

import XCTest
import SeededRandom
@testable import Engine

struct GradientCheckResult {
    var worst: Double = 0
    var failures: [String] = []
    /// Samples skipped because the function has a kink within the step there (ReLU).
    var nonsmooth = 0
    var checked = 0
}

/// Checks d(Σ r·f)/d(input) for every input tensor and every trainable parameter in `store`.
func gradientCheck(inputs: [Tensor], store: ParameterStore? = nil, training: Bool = true, step: Float = 1e-2,
                   atol: Double = 2e-3, rtol: Double = 2e-2, samples: Int = 40,
                   _ f: (Tape, [Var]) -> Var) -> GradientCheckResult {
    func run(_ inputs: [Tensor], recording: Bool) -> (Tape, [Var], Var) {
        let tape = Tape(recording: recording, training: training, generator: SplitMix64(seed: 99))
        let vars = inputs.map { tape.constant($0) }
        return (tape, vars, f(tape, vars))
    }
    let (tape, vars, output) = run(inputs, recording: true)
    var g = SplitMix64(seed: 5)
    let direction = Tensor(shape: tape.shape(output), data: (0..<tape.value(output).count).map { _ in Float(g.uniform(-1, 1)) })
    func loss(_ t: Tensor) -> Double { zip(t.data, direction.data).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
    tape.backward(from: output, seed: direction)
    let parameterGradients = tape.parameterGradients()
    var result = GradientCheckResult()
    /// Central differences at h and h/2; nil where they disagree (a kink within the step).
    func numeric(_ at: (Float) -> Double) -> Double? {
        let wide = (at(step) - at(-step)) / (2 * Double(step))
        let narrow = (at(step / 2) - at(-step / 2)) / Double(step)
        if abs(wide - narrow) > atol + rtol * abs(narrow) {
            result.nonsmooth += 1
            return nil
        }
        return narrow
    }
    func compare(_ analytic: Float, _ numeric: Double?, _ what: String) {
        guard let numeric else { return }
        result.checked += 1
        let error = abs(Double(analytic) - numeric)
        result.worst = max(result.worst, error / (atol + rtol * abs(numeric)))
        if error > atol + rtol * abs(numeric) { result.failures.append("\(what): analytic \(analytic), numeric \(numeric)") }
    }
    for (index, input) in inputs.enumerated() {
        let analytic = tape.gradient(vars[index]) ?? Tensor(zeros: input.shape)
        for element in sampledIndices(input.count, samples, &g) {
            let estimate = numeric { delta in
                var moved = inputs
                moved[index].data[element] += delta
                let (t, _, o) = run(moved, recording: false)
                return loss(t.value(o))
            }
            compare(analytic.data[element], estimate, "input \(index)[\(element)]")
        }
    }
    if let store {
        for name in store.trainableNames {
            let analytic = parameterGradients[name] ?? Tensor(zeros: store.value(name).shape)
            let original = store.value(name)
            for element in sampledIndices(original.count, samples, &g) {
                let estimate = numeric { delta in
                    var moved = original
                    moved.data[element] += delta
                    store.set(name, moved)
                    defer { store.set(name, original) }
                    let (t, _, o) = run(inputs, recording: false)
                    return loss(t.value(o))
                }
                compare(analytic.data[element], estimate, "\(name)[\(element)]")
            }
        }
    }
    return result
}

private func sampledIndices(_ count: Int, _ samples: Int, _ g: inout SplitMix64) -> [Int] {
    count <= samples ? Array(0..<count) : (0..<samples).map { _ in g.index(below: count) }
}

func randomTensor(_ shape: [Int], seed: UInt64, range: Double = 1) -> Tensor {
    var g = SplitMix64(seed: seed)
    return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(g.uniform(-range, range)) })
}

/// Asserts a passing check, listing the first failures.
func assertGradients(_ result: GradientCheckResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(result.failures.isEmpty, "\(what): \(result.failures.count) mismatches, e.g. \(result.failures.prefix(3))",
                  file: file, line: line)
    // Skipping kinks must not hollow out the check.
    XCTAssertGreaterThan(result.checked, 4 * result.nonsmooth, "\(what): \(result.nonsmooth) samples at kinks", file: file, line: line)
}
