// Reverse-mode automatic differentiation over coarse ops (STYLE §2). The forward pass appends one
// node per op: its value and, when recording, a closure that turns the node's gradient into
// gradients of its inputs. `backward` walks the nodes in reverse. Gradients accumulate (`+=`), so
// a value used twice (residuals, skips) gets the sum. Gradients of any recorded activation stay
// readable after `backward` (Grad-CAM reads the DCL's). Without recording (inference), no closure
// is kept and nothing is retained for the backward pass.

import SeededRandom

/// A handle to a node of a tape.
public struct Var: Hashable, Sendable {
    public let id: Int
}

/// One forward pass and, when recording, its backward pass.
public final class Tape {
    /// Whether closures for the backward pass are kept.
    public let recording: Bool
    /// Training mode: batch statistics in batch norm, active drop-connect.
    public let training: Bool
    /// Drives drop-connect masks (explicit and seeded, never global).
    public var generator: SplitMix64
    /// Momentum of batch norm's running statistics (Keras 0.99; the short demo profiles use less
    /// so that inference-mode statistics settle within their few hundred steps).
    public var batchNormMomentum: Float = kerasBatchNormMomentum

    private(set) var values: [Tensor] = []
    /// Whether a node's value was allocated by an op (and may go back to the buffer pool).
    private var owned: [Bool] = []
    /// Whether a node's value has been freed by `releaseIntermediates`.
    private var released: [Bool] = []
    private var gradients: [Tensor?] = []
    private var backwards: [((Tape, Tensor) -> Void)?] = []
    /// Floating-point operations of the forward pass so far (multiply and add counted separately,
    /// convolutions and dense layers only), for `make bench`'s GFLOP/s.
    public internal(set) var forwardFlops: Double = 0
    /// Parameter name of a node that reads a parameter.
    private(set) var parameterNodes: [(name: String, node: Var)] = []

    public init(recording: Bool, training: Bool, generator: SplitMix64 = SplitMix64(seed: 0)) {
        self.recording = recording
        self.training = training
        self.generator = generator
    }

    deinit {
        for (index, value) in values.enumerated() where owned[index] && !released[index] { BufferPool.shared.give(value.data) }
        for gradient in gradients { if let gradient { BufferPool.shared.give(gradient.data) } }
    }

    /// A node holding `value` with no inputs.
    public func constant(_ value: Tensor) -> Var { record(value, owned: false, backward: nil) }

    /// A node reading parameter `name` of `store`; its gradient is reported by `parameterGradients`.
    public func parameter(_ name: String, in store: ParameterStore) -> Var {
        let node = record(store.value(name), owned: false, backward: nil)
        if recording { parameterNodes.append((name, node)) }
        return node
    }

    public func value(_ v: Var) -> Tensor {
        precondition(!released[v.id], "node \(v.id) was released (inference frees activations a model no longer reads)")
        return values[v.id]
    }

    /// Number of nodes recorded so far (a mark for `releaseIntermediates`).
    public var nodeCount: Int { values.count }

    /// Without recording, frees the values of nodes created since `mark`, except `keep`: a model calls
    /// this after each block so inference holds only the activations it still needs (the block
    /// output and any skips). Recording tapes keep everything for the backward pass.
    public func releaseIntermediates(since mark: Int, keeping keep: [Var]) {
        let kept = Set(keep.map(\.id))
        release((mark..<values.count).filter { !kept.contains($0) }.map { Var(id: $0) })
    }

    /// Without recording, frees the values of `vars` (a skip connection once consumed, say).
    public func release(_ vars: [Var]) {
        guard !recording else { return }
        for v in vars where !released[v.id] {
            if owned[v.id] { BufferPool.shared.give(values[v.id].data) }
            values[v.id] = Tensor(shape: [1], data: [0])
            released[v.id] = true
        }
    }

    public func shape(_ v: Var) -> [Int] { value(v).shape }

    /// The gradient of the last `backward`'s output with respect to `v` (nil if none flowed there).
    public func gradient(_ v: Var) -> Tensor? { gradients[v.id] }

    /// Appends a node. `backward` receives the node's gradient and adds into its inputs' gradients.
    /// Public so ops defined outside the engine (the losses) keep forward and backward together.
    public func record(_ value: Tensor, owned: Bool = true, backward: ((Tape, Tensor) -> Void)?) -> Var {
        values.append(value)
        self.owned.append(owned)
        released.append(false)
        gradients.append(nil)
        backwards.append(recording ? backward : nil)
        return Var(id: values.count - 1)
    }

    /// Adds into the gradient of `v` through `body`, which gets a zeroed buffer the first time.
    public func accumulate(_ v: Var, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        if gradients[v.id] == nil { gradients[v.id] = Tensor.pooledZeros(values[v.id].shape) }
        gradients[v.id]!.data.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    /// Like `accumulate`, without zeroing a fresh buffer first: `body(buffer, add)` writes every
    /// element when `add` is false (the first contribution, into uninitialised memory) and adds
    /// into the buffer when it is true. Writing `v` equals adding `v` to zero, but for the sign of
    /// a zero, and saves a pass over memory per op in the backward pass.
    public func accumulate(_ v: Var, writing body: (UnsafeMutablePointer<Float>, _ add: Bool) -> Void) {
        guard gradients[v.id] != nil else {
            gradients[v.id] = Tensor.pooled(values[v.id].shape) { body($0, false) }
            return
        }
        gradients[v.id]!.data.withUnsafeMutableBufferPointer { body($0.baseAddress!, true) }
    }

    /// Backpropagates from `output`, seeded with `seed` (default: ones, i.e. d output/d output = 1).
    ///
    /// - Precondition: the tape is recording.
    public func backward(from output: Var, seed: Tensor? = nil) {
        precondition(recording, "backward needs a recording tape")
        for i in gradients.indices {
            if let old = gradients[i] { BufferPool.shared.give(old.data) }
            gradients[i] = nil
        }
        gradients[output.id] = seed ?? Tensor(shape: values[output.id].shape, repeating: 1)
        for id in stride(from: output.id, through: 0, by: -1) {
            guard let backward = backwards[id], let gradient = gradients[id] else { continue }
            backward(self, gradient)
        }
    }

    /// Gradients of every parameter read on this tape, summed over reads, by name.
    public func parameterGradients() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, node) in parameterNodes {
            guard let g = gradients[node.id] else { continue }
            if var existing = out[name] {
                for i in existing.data.indices { existing.data[i] += g.data[i] }
                out[name] = existing
            } else {
                out[name] = g
            }
        }
        return out
    }
}

extension Tensor {
    /// Calls `body` with read-only storage.
    @inline(__always)
    func withPointer<R>(_ body: (UnsafePointer<Float>) -> R) -> R {
        data.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Calls `body` with writable storage.
    @inline(__always)
    mutating func withMutablePointer<R>(_ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        data.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }
}
