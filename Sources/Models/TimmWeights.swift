// timm's `tf_efficientnet_b0` checkpoints ↔ our EfficientNet-B0 (docs/WEIGHTS.md). The tf_ variant is
// the one whose layers match Keras': TF "same" padding (asymmetric at stride 2), batch-norm epsilon
// 1e-3, squeeze-excitation width a quarter of the block's input filters. Its ImageNet weights are the
// TF release's, as Keras' are. Only names and layouts differ:
//
//     conv_stem.weight                  [32,3,3,3]  OIHW   stem_conv/kernel              [3,3,3,32] HWIO
//     bn1.weight / bias                                    stem_bn/gamma / beta
//     bn1.running_mean / running_var                       stem_bn/moving_mean / moving_variance
//     blocks.0.0.conv_dw.weight         [32,1,3,3]         block1a_dwconv/depthwise_kernel [3,3,32,1]
//     blocks.0.0.se.conv_reduce.weight  [8,32,1,1]         block1a_se_reduce/kernel      [1,1,32,8]
//     blocks.S.R.conv_pw / conv_dw / conv_pwl (+ bn1..3)   blockXy_expand_conv / _dwconv / _project_conv
//     conv_head.weight, bn2.*                              top_conv/kernel, top_bn/*
//
// num_batches_tracked and the ImageNet classifier are not part of the encoder and are skipped.

import Engine
import SeededRandom

/// How a foreign tensor's layout becomes ours.
public enum WeightLayout: String, Sendable {
    /// A convolution kernel: [out, in, kh, kw] → [kh, kw, in, out].
    case convolution
    /// A depthwise kernel: [channels, 1, kh, kw] → [kh, kw, channels, 1].
    case depthwise
    /// A vector (biases, batch-norm parameters and statistics): unchanged.
    case vector

    /// The axes of the foreign layout, in our order: our axis i is the foreign axis `order[i]`.
    var order: [Int] {
        switch self {
        case .vector: [0]
        case .convolution: [2, 3, 1, 0]
        case .depthwise: [2, 3, 0, 1]
        }
    }

    /// Our axes in the foreign order: the inverse of `order`.
    private var inverse: [Int] {
        var out = order
        for (axis, source) in order.enumerated() { out[source] = axis }
        return out
    }

    /// The foreign shape of a tensor whose shape is `ours` (`ours` itself if the ranks differ).
    func foreignShape(_ ours: [Int]) -> [Int] {
        ours.count == order.count ? inverse.map { ours[$0] } : ours
    }

    /// `tensor` in our layout.
    func importing(_ tensor: Tensor) -> Tensor { self == .vector ? tensor : tensor.permuted(order) }

    /// `tensor` (ours) in the foreign layout.
    func exporting(_ tensor: Tensor) -> Tensor { self == .vector ? tensor : tensor.permuted(inverse) }
}

/// One tensor of the mapping.
public struct WeightMapping: Sendable, Equatable {
    public let foreign: String
    public let ours: String
    public let layout: WeightLayout
}

/// What an import did: the tensors under our names, and every name it could not use.
public struct WeightImport: Sendable {
    public var tensors: [String: Tensor] = [:]
    /// Tensors of the file that are not part of the encoder (the ImageNet classifier, counters).
    public var skipped: [String] = []
    /// Encoder tensors the file lacks.
    public var missing: [String] = []
    /// "foreign name: file [shape], expected [shape]".
    public var misshaped: [String] = []
}

extension Tensor {
    /// The tensor with its axes reordered: axis i of the result is axis `order[i]` of this one.
    func permuted(_ order: [Int]) -> Tensor {
        let rank = shape.count
        precondition(order.sorted() == Array(0..<rank), "permutation \(order) of a rank-\(rank) tensor")
        let outShape = order.map { shape[$0] }
        var strides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        var out = [Float](repeating: 0, count: data.count)
        var index = [Int](repeating: 0, count: rank)
        for i in 0..<data.count {
            var source = 0
            for axis in 0..<rank { source += index[axis] * strides[order[axis]] }
            out[i] = data[source]
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < outShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return Tensor(shape: outShape, data: out)
    }
}

/// timm's `tf_efficientnet_b0` state dict, stem to head.
public enum TimmEfficientNetB0 {
    /// The model name the mapping is written for (`timm.create_model` argument).
    public static let modelName = "tf_efficientnet_b0"

    /// Every encoder tensor: timm name, our name, layout; stem, blocks in order, head.
    public static let mapping: [WeightMapping] = {
        var out: [WeightMapping] = []
        func conv(_ foreign: String, _ ours: String) { out.append(WeightMapping(foreign: foreign + ".weight", ours: ours + "/kernel", layout: .convolution)) }
        func batchNorm(_ foreign: String, _ ours: String) {
            for (f, o) in [("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")] {
                out.append(WeightMapping(foreign: foreign + "." + f, ours: ours + "/" + o, layout: .vector))
            }
        }
        conv("conv_stem", "stem_conv")
        batchNorm("bn1", "stem_bn")
        for (s, stage) in EfficientNetB0.stages.enumerated() {
            for r in 0..<stage.repeats {
                let block = "blocks.\(s).\(r)", name = EfficientNetB0.blockName(stage: s, index: r)
                let expands = stage.expandRatio != 1
                if expands {
                    conv(block + ".conv_pw", name + "_expand_conv")
                    batchNorm(block + ".bn1", name + "_expand_bn")
                }
                out.append(WeightMapping(foreign: block + ".conv_dw.weight", ours: name + "_dwconv/depthwise_kernel", layout: .depthwise))
                batchNorm(block + (expands ? ".bn2" : ".bn1"), name + "_bn")
                for part in ["reduce", "expand"] {
                    conv(block + ".se.conv_" + part, name + "_se_" + part)
                    out.append(WeightMapping(foreign: block + ".se.conv_\(part).bias", ours: name + "_se_\(part)/bias", layout: .vector))
                }
                conv(block + (expands ? ".conv_pwl" : ".conv_pw"), name + "_project_conv")
                batchNorm(block + (expands ? ".bn3" : ".bn2"), name + "_project_bn")
            }
        }
        conv("conv_head", "top_conv")
        batchNorm("bn2", "top_bn")
        return out
    }()

    /// Whether `tensors` look like a timm EfficientNet state dict (rather than ours).
    public static func isTimm(_ names: some Collection<String>) -> Bool {
        names.contains("conv_stem.weight")
    }

    /// The encoder tensors of a timm state dict under our names and layouts. `expected` gives our
    /// shape for each of our names the model has (a classifier's encoder ends at block5c: the rest
    /// is skipped); a tensor of another shape is reported, not imported.
    public static func importing(_ foreign: [String: Tensor], expected: [String: [Int]]) -> WeightImport {
        var result = WeightImport()
        let used = Set(mapping.map(\.foreign))
        result.skipped = foreign.keys.filter { !used.contains($0) }
        for entry in mapping {
            guard let wanted = expected[entry.ours] else {
                // Past this model's end (the classifier stops at block5c).
                if foreign[entry.foreign] != nil { result.skipped.append(entry.foreign) }
                continue
            }
            guard let tensor = foreign[entry.foreign] else {
                result.missing.append(entry.foreign)
                continue
            }
            let foreignShape = entry.layout.foreignShape(wanted)
            guard tensor.shape == foreignShape else {
                result.misshaped.append("\(entry.foreign): file \(tensor.shape), expected \(foreignShape)")
                continue
            }
            result.tensors[entry.ours] = entry.layout.importing(tensor)
        }
        result.skipped.sort()
        return result
    }

    /// Our encoder tensors under timm's names and layouts (every mapped tensor `tensors` holds).
    public static func exporting(_ tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for entry in mapping {
            if let tensor = tensors[entry.ours] { out[entry.foreign] = entry.layout.exporting(tensor) }
        }
        return out
    }
}

extension EfficientNetB0 {
    /// `parameters(seed:)` with the batch-norm scales, offsets and statistics and the
    /// squeeze-excitation biases drawn too (instead of ones and zeros), so that a mix-up of any of
    /// them shows in the outputs: the weight import's test fixture.
    public static func fullyRandomParameters(seed: UInt64) -> ParameterStore {
        let encoder = parameters(seed: seed)
        var generator = SplitMix64(seed: seed, stream: 7)
        for name in encoder.names {
            let scale = name.hasSuffix("/gamma") || name.hasSuffix("/moving_variance")
            guard scale || name.hasSuffix("/beta") || name.hasSuffix("/moving_mean") || name.hasSuffix("/bias") else { continue }
            encoder.update(name) { values in
                for i in values.indices { values[i] = Float(scale ? generator.uniform(0.5, 1.5) : 0.1 * generator.normal()) }
            }
        }
        return encoder
    }
}
