// Named parameters and their Keras initialisers. Names are Keras weight names
// ("block1a_dwconv/depthwise_kernel", "stem_bn/moving_mean"), so checkpoints map one to one onto a
// Keras model. A parameter is created the first time a model asks for it, with an initialiser
// whose random stream depends only on the store's seed and the parameter's name — never on the
// order of creation.

import Foundation
import SeededRandom

/// How a parameter is initialised (Keras semantics).
public enum Initializer: Sendable, Equatable {
    case zeros
    case ones
    /// `glorot_uniform`: U(±√(6/(fan_in+fan_out))).
    case glorotUniform
    /// `he_uniform`: U(±√(6/fan_in)).
    case heUniform
    /// `VarianceScaling(scale, mode='fan_out', distribution='normal')`: a normal truncated at two
    /// standard deviations, σ = √(scale/fan_out)/0.8796 (EfficientNet's conv initialiser, scale 2).
    case varianceScalingFanOutTruncatedNormal(scale: Double)
    /// `VarianceScaling(scale, mode='fan_out', distribution='uniform')`: U(±√(3·scale/fan_out))
    /// (EfficientNet's dense initialiser, scale 1/3).
    case varianceScalingFanOutUniform(scale: Double)

    /// Keras' fans of a kernel shape: receptive field × the last two dimensions.
    static func fans(_ shape: [Int]) -> (fanIn: Double, fanOut: Double) {
        if shape.count < 2 { let n = Double(shape.first ?? 1); return (n, n) }
        let receptive = Double(shape.dropLast(2).reduce(1, *))
        return (receptive * Double(shape[shape.count - 2]), receptive * Double(shape[shape.count - 1]))
    }

    func values(_ shape: [Int], generator g: inout SplitMix64) -> [Float] {
        let count = shape.reduce(1, *)
        let (fanIn, fanOut) = Self.fans(shape)
        func uniform(_ limit: Double) -> [Float] { (0..<count).map { _ in Float(g.uniform(-limit, limit)) } }
        switch self {
        case .zeros: return [Float](repeating: 0, count: count)
        case .ones: return [Float](repeating: 1, count: count)
        case .glorotUniform: return uniform((6 / (fanIn + fanOut)).squareRoot())
        case .heUniform: return uniform((6 / fanIn).squareRoot())
        case let .varianceScalingFanOutUniform(scale): return uniform((3 * scale / fanOut).squareRoot())
        case let .varianceScalingFanOutTruncatedNormal(scale):
            let sigma = (scale / fanOut).squareRoot() / 0.879_625_661_034_239_78
            return (0..<count).map { _ in
                var x = g.normal()
                while abs(x) > 2 { x = g.normal() }
                return Float(x * sigma)
            }
        }
    }
}

/// Every parameter and state tensor of a model, by name, in creation order.
public final class ParameterStore {
    public let seed: UInt64
    public private(set) var names: [String] = []
    private var tensors: [String: Tensor] = [:]
    /// Names of non-trainable state (batch-norm moving statistics).
    public private(set) var frozen: Set<String> = []

    public init(seed: UInt64) {
        self.seed = seed
    }

    /// The parameter `name`, created with `initializer` on first use.
    ///
    /// - Precondition: a parameter that exists already has `shape`.
    @discardableResult
    public func declare(_ name: String, shape: [Int], initializer: Initializer, trainable: Bool = true) -> Tensor {
        if let existing = tensors[name] {
            precondition(existing.shape == shape, "parameter \(name) exists with shape \(existing.shape), asked for \(shape)")
            return existing
        }
        var generator = SplitMix64(seed: seed, stream: SplitMix64.stableHash(name))
        let tensor = Tensor(shape: shape, data: initializer.values(shape, generator: &generator))
        tensors[name] = tensor
        names.append(name)
        if !trainable { frozen.insert(name) }
        return tensor
    }

    /// - Precondition: the parameter exists.
    public func value(_ name: String) -> Tensor {
        guard let tensor = tensors[name] else { preconditionFailure("no parameter \(name)") }
        return tensor
    }

    /// Replaces a parameter's values.
    ///
    /// - Precondition: the parameter exists with the same shape.
    public func set(_ name: String, _ tensor: Tensor) {
        precondition(tensors[name]?.shape == tensor.shape, "parameter \(name): shape \(tensor.shape) differs")
        tensors[name] = tensor
    }

    /// Applies `body` to a parameter's storage in place.
    public func update(_ name: String, _ body: (inout [Float]) -> Void) {
        guard var tensor = tensors.removeValue(forKey: name) else { preconditionFailure("no parameter \(name)") }
        body(&tensor.data)
        tensors[name] = tensor
    }

    public var trainableNames: [String] { names.filter { !frozen.contains($0) } }

    /// Element counts: (all, trainable).
    public var counts: (total: Int, trainable: Int) {
        let total = names.reduce(0) { $0 + (tensors[$1]?.count ?? 0) }
        let trainable = trainableNames.reduce(0) { $0 + (tensors[$1]?.count ?? 0) }
        return (total, trainable)
    }
}
