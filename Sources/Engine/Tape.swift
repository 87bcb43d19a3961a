// Reverse-mode automatic differentiation over coarse ops (STYLE §2). The forward pass appends one
// node per op: its value and, when recording, a closure that turns the node's gradient into
// gradients of its inputs. `backward` walks the nodes in reverse. Gradients accumulate (`+=`), so
// a value used twice (residuals, skips) gets the sum. `backward` frees what it has passed; the
// gradients of constants and parameters, and of the activations a caller names (Grad-CAM reads the
// DCL's), stay readable. Without recording (inference), no closure is kept and nothing is retained
// for the backward pass. A backward closure captures the values it reads; the tape's own list of
// values serves the forward pass, so a model lets go of a block's intermediates once the block is
// done (`releaseIntermediates`) and what no closure captured is freed before the backward pass.
//
// Values that are cheap to rebuild from what the tape keeps anyway (batch norm's output from its
// input, an upsampled or concatenated map from its parts) are recorded with a recipe, and the
// closures that read them capture the recipe (`saved`) instead of the value: a training step then
// holds the convolutions' outputs, not also every normalised, activated, upsampled and concatenated
// copy of them, and a backward closure rebuilds its input for the moment it runs. The recipes run
// the forward arithmetic again on the same inputs, so the rebuilt values are the same bits.

import SeededRandom

/// A handle to a node of a tape.
public struct Var: Hashable, Sendable {
    public let id: Int
}

/// What a backward closure reads of a node: its value, or the recipe that rebuilds it (`Tape.saved`).
public struct Saved {
    private let make: () -> Tensor

    init(_ make: @escaping () -> Tensor) { self.make = make }

    /// The node's value, rebuilt now if it was recorded with a recipe.
    public func callAsFunction() -> Tensor { make() }
}

/// One forward pass and, when recording, its backward pass.
public final class Tape {
    /// Whether closures for the backward pass are kept.
    public let recording: Bool
    /// Training mode: batch statistics in batch norm, active drop-connect.
    public let training: Bool
    /// Drives drop-connect masks (explicit and seeded, never global).
    public var generator: SplitMix64

    private(set) var values: [Tensor] = []
    /// Each node's shape (its gradient's), kept when its value is released.
    private var shapes: [[Int]] = []
    /// Whether a node's value has been freed (by `release`, `releaseIntermediates` or `backward`).
    private var released: [Bool] = []
    private var gradients: [Tensor?] = []
    private var backwards: [((Tape, Tensor) -> Void)?] = []
    /// Recipes of the nodes that have one (recording tapes only: inference keeps no closures).
    private var recipes: [(() -> Tensor)?] = []
    private var backwardDone = false
    /// Elements in the values and gradients the tape holds now (storage shared between nodes
    /// counted per node): its share of a step's memory, which tests watch during `backward`.
    public private(set) var heldElements = 0
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

    /// A node holding `value` with no inputs.
    public func constant(_ value: Tensor) -> Var { record(value, backward: nil) }

    /// A node reading parameter `name` of `store`; its gradient is reported by `parameterGradients`.
    public func parameter(_ name: String, in store: ParameterStore) -> Var {
        let node = record(store.value(name), backward: nil)
        if recording { parameterNodes.append((name, node)) }
        return node
    }

    public func value(_ v: Var) -> Tensor {
        precondition(!released[v.id], "node \(v.id) was released (a model frees the activations it no longer reads, backward those it has passed)")
        return values[v.id]
    }

    /// Number of nodes recorded so far (a mark for `releaseIntermediates`).
    public var nodeCount: Int { values.count }

    /// Frees the tape's hold on the values of nodes created since `mark`, except `keep`: a model calls
    /// this after each block, so that inference holds only the activations it still needs (the block
    /// output and any skips), and training only those some backward closure captured (an upsampled
    /// map that a concatenation copied, a drop-connect product that an addition consumed, are gone
    /// at the block's end instead of at the backward pass). The forward pass must not read them again.
    public func releaseIntermediates(since mark: Int, keeping keep: [Var]) {
        let kept = Set(keep.map(\.id))
        release((mark..<values.count).filter { !kept.contains($0) }.map { Var(id: $0) })
    }

    /// Frees the tape's hold on the values of `vars` (a skip connection once consumed, say); see
    /// `releaseIntermediates`.
    public func release(_ vars: [Var]) {
        for v in vars where !released[v.id] {
            heldElements -= values[v.id].count
            values[v.id] = Tensor(shape: [1], data: [0])
            released[v.id] = true
        }
    }

    public func shape(_ v: Var) -> [Int] { value(v).shape }

    /// The gradient of the last `backward`'s output with respect to `v` (nil if none flowed there).
    public func gradient(_ v: Var) -> Tensor? {
        precondition(!released[v.id], "node \(v.id) was released by backward (name it in `keeping:` to read its gradient)")
        return gradients[v.id]
    }

    /// Appends a node. `backward` receives the node's gradient and adds into its inputs' gradients.
    /// Public so ops defined outside the engine (the losses) keep forward and backward together.
    ///
    /// - Parameter recompute: rebuilds `value`, bit for bit, from what the backward pass keeps
    ///   anyway (an op's captured input, other nodes' `saved`); closures that read the node then
    ///   capture it instead of the value (see `saved`).
    public func record(_ value: Tensor, recompute: (() -> Tensor)? = nil, backward: ((Tape, Tensor) -> Void)?) -> Var {
        values.append(value)
        shapes.append(value.shape)
        heldElements += value.count
        released.append(false)
        gradients.append(nil)
        backwards.append(recording ? backward : nil)
        recipes.append(recording ? recompute : nil)
        return Var(id: values.count - 1)
    }

    /// Whether every one of `inputs` has a recipe: an op whose backward does not read its inputs
    /// (upsampling, concatenation) records a recipe only then, as one capturing a value would keep
    /// alive what the tape could otherwise let go of.
    func rebuildable(_ inputs: [Var]) -> Bool { inputs.allSatisfy { recipes[$0.id] != nil } }

    /// What a backward closure should capture to read `v`: its recipe when it has one, else its
    /// value. A closure that captures the recipe leaves the value free to go when the tape lets go.
    public func saved(_ v: Var) -> Saved {
        if let recipe = recipes[v.id] { return Saved(recipe) }
        let value = value(v)
        return Saved { value }
    }

    /// Adds into the gradient of `v` through `body`, which gets a zeroed buffer the first time.
    public func accumulate(_ v: Var, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        if gradients[v.id] == nil {
            gradients[v.id] = Tensor(zeros: shapes[v.id])
            heldElements += gradients[v.id]!.count
        }
        gradients[v.id]!.data.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    /// Like `accumulate`, without zeroing a fresh buffer first: `body(buffer, add)` writes every
    /// element when `add` is false (the first contribution, into uninitialised memory) and adds
    /// into the buffer when it is true. Writing `v` equals adding `v` to zero, but for the sign of
    /// a zero, and saves a pass over memory per op in the backward pass.
    public func accumulate(_ v: Var, writing body: (UnsafeMutablePointer<Float>, _ add: Bool) -> Void) {
        guard gradients[v.id] != nil else {
            gradients[v.id] = Tensor(shape: shapes[v.id]) { body($0, false) }
            heldElements += gradients[v.id]!.count
            return
        }
        gradients[v.id]!.data.withUnsafeMutableBufferPointer { body($0.baseAddress!, true) }
    }

    /// `accumulate(_:writing:)` for several distinct nodes at once: `body(buffers, add)` gets one
    /// buffer per node, in order, each with its own `add` (a convolution of parts writes all their
    /// gradients in one pass, `conv2d(concatenating:…)`).
    ///
    /// - Precondition: no node is named twice.
    public func accumulate(_ vars: [Var], writing body: (_ buffers: [UnsafeMutablePointer<Float>], _ add: [Bool]) -> Void) {
        precondition(Set(vars).count == vars.count, "accumulate(writing:) names a node twice")
        let add = vars.map { gradients[$0.id] != nil }
        // Each gradient leaves the list while `body` runs, so that one is borrowed at a time.
        var buffers = vars.map { v in
            gradients[v.id].take() ?? Tensor(shape: shapes[v.id]) { _ in }  // `body` writes every element
        }
        func nest(_ i: Int, _ held: [UnsafeMutablePointer<Float>]) {
            guard i < buffers.count else { return body(held, add) }
            var buffer = buffers[i]
            buffers[i] = Tensor(shape: [0], data: [])
            buffer.withMutablePointer { nest(i + 1, held + [$0]) }
            buffers[i] = buffer
        }
        nest(0, [])
        for (i, v) in vars.enumerated() {
            if !add[i] { heldElements += buffers[i].count }
            gradients[v.id] = buffers[i]
        }
    }

    /// Backpropagates from `output`, seeded with `seed` (default: ones, i.e. d output/d output = 1).
    ///
    /// Memory is handed back as the pass goes: once a node's backward has run, no later step reads
    /// its value or gradient (inputs precede their ops on the tape), so both are dropped, with its
    /// closure and what that captured. The pass then holds the forward activations it has not
    /// reached plus the gradients in flight, where keeping every gradient to the end doubled the
    /// peak of a training step. What stays readable afterwards: `output`,
    /// every node without a backward (constants and parameters: their gradients are what callers
    /// read) and the nodes in `keeping` (Grad-CAM's DCL, say), values and gradients.
    ///
    /// With `stop`, the pass ends once the gradient of `stop` is complete — every op after it on the
    /// tape has run, none before it (Grad-CAM needs the gradient at one layer, not the encoder's);
    /// `stop` is kept readable.
    ///
    /// - Precondition: the tape is recording and has not run `backward` before.
    public func backward(from output: Var, seed: Tensor? = nil, keeping keep: [Var] = [], stoppingAt stop: Var? = nil) {
        precondition(recording, "backward needs a recording tape")
        precondition(!backwardDone, "backward runs once per tape (it releases what it has passed)")
        backwardDone = true
        let kept = Set(keep.map(\.id) + [output.id] + (stop.map { [$0.id] } ?? []))
        let passed = stride(from: output.id, through: (stop?.id ?? -1) + 1, by: -1)
        // The pass will free these anyway, and whoever reads them rebuilds them.
        release(passed.filter { recipes[$0] != nil && !kept.contains($0) }.map { Var(id: $0) })
        gradients[output.id] = seed ?? Tensor(shape: values[output.id].shape, repeating: 1)
        heldElements += values[output.id].count
        for id in passed {
            guard backwards[id] != nil else { continue }
            if let gradient = gradients[id] { backwards[id]!(self, gradient) }
            backwards[id] = nil
            recipes[id] = nil
            guard !kept.contains(id) else { continue }
            heldElements -= (released[id] ? 0 : values[id].count) + (gradients[id]?.count ?? 0)
            gradients[id] = nil
            values[id] = Tensor(shape: [1], data: [0])
            released[id] = true
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
