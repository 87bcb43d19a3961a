// EfficientNet-B0 as qubvel `efficientnet` 1.1.1 builds it for Keras (SPEC §1.1): stem, 16 MBConv
// blocks in 7 stages, top conv; swish activations; squeeze-excitation width from the block's
// *input* filters; per-sample drop-connect with rate 0.2·block/16 before each residual add;
// batch norm momentum 0.99, epsilon 1e-3. Layer names are Keras' (`block5c_add`).

import Engine

/// One MBConv stage of EfficientNet-B0: (kernel, repeats, in, out, expand ratio, stride).
public struct MBConvStage: Sendable {
    public let kernel, repeats, inputFilters, outputFilters, expandRatio, stride: Int
}

/// Hyper-parameters of the B0 variant.
public enum EfficientNetB0 {
    public static let stages: [MBConvStage] = [
        MBConvStage(kernel: 3, repeats: 1, inputFilters: 32, outputFilters: 16, expandRatio: 1, stride: 1),
        MBConvStage(kernel: 3, repeats: 2, inputFilters: 16, outputFilters: 24, expandRatio: 6, stride: 2),
        MBConvStage(kernel: 5, repeats: 2, inputFilters: 24, outputFilters: 40, expandRatio: 6, stride: 2),
        MBConvStage(kernel: 3, repeats: 3, inputFilters: 40, outputFilters: 80, expandRatio: 6, stride: 2),
        MBConvStage(kernel: 5, repeats: 3, inputFilters: 80, outputFilters: 112, expandRatio: 6, stride: 1),
        MBConvStage(kernel: 5, repeats: 4, inputFilters: 112, outputFilters: 192, expandRatio: 6, stride: 2),
        MBConvStage(kernel: 3, repeats: 1, inputFilters: 192, outputFilters: 320, expandRatio: 6, stride: 1),
    ]
    public static let dropConnectRate: Float = 0.2
    public static let seRatio = 0.25
    public static let totalBlocks = 16

    /// EfficientNet's conv initialiser: VarianceScaling(2.0, fan_out, truncated normal).
    public static let convInitializer = Initializer.varianceScalingFanOutTruncatedNormal(scale: 2)

    /// The name of block `index` of `stage` (0-based): "block5c".
    public static func blockName(stage: Int, index: Int) -> String {
        "block\(stage + 1)\(Character(UnicodeScalar(UInt8(97 + index))))"
    }

    /// Every encoder parameter and batch-norm statistic (stem to top) under its Keras name,
    /// initialised from `seed`.
    public static func parameters(seed: UInt64) -> ParameterStore {
        declareParameters(seed: seed) { layers, x in _ = encode(layers, x, outputs: []) }
    }

    /// Runs the encoder on `x` [N,H,W,3] and returns the named activations a consumer asked for.
    ///
    /// - Parameters:
    ///   - outputs: layer names to return (e.g. the U-Net skips, "top_activation").
    ///   - stopAfter: a block name ("block5c") after which to stop (the classifier's truncation).
    ///   - rebuildingExpanded: whether a training step rebuilds each block's depthwise activation
    ///     (six times the block's input width, and SiLU the costliest rebuild) where a backward
    ///     closure reads it, rather than keeping it; likewise the expand activation of a block whose
    ///     expand activation a caller asked for (the others are never written:
    ///     `Layers.depthwise(normalising:…)`). The U-Net does, to stay within half of PyTorch's
    ///     memory at 512²; the classifier keeps it: it has memory to spare, and rebuilding its
    ///     widest tensors cost it about a tenth of its step time.
    ///
    /// The drop-connect rate grows linearly to `layers.options.dropConnect` at the last block.
    public static func encode(_ layers: Layers, _ x: Var, outputs: Set<String>, stopAfter: String? = nil,
                              rebuildingExpanded: Bool = true) -> [String: Var] {
        let tape = layers.tape
        var found: [String: Var] = [:]
        func keep(_ name: String, _ v: Var) { if outputs.contains(name) { found[name] = v } }
        var h = layers.conv(x, "stem_conv", filters: 32, kernel: 3, stride: 2, bias: false, initializer: convInitializer)
        h = layers.batchNorm(h, "stem_bn", activation: .silu)
        keep("stem_activation", h)
        var blockNumber = 0
        for (s, stage) in stages.enumerated() {
            for r in 0..<stage.repeats {
                let mark = tape.nodeCount
                let name = blockName(stage: s, index: r)
                let input = r == 0 ? stage.inputFilters : stage.outputFilters
                let stride = r == 0 ? stage.stride : 1
                let rate = layers.options.dropConnect * Float(blockNumber) / Float(totalBlocks)
                let blockInput = h
                h = mbConv(layers, h, name: name, inputFilters: input, outputFilters: stage.outputFilters,
                           expandRatio: stage.expandRatio, kernel: stage.kernel, stride: stride, dropRate: rate,
                           rebuildingExpanded: rebuildingExpanded, wants: outputs.contains, keep: keep)
                tape.releaseIntermediates(since: mark, keeping: [h] + Array(found.values))
                if !found.values.contains(blockInput) { tape.release([blockInput]) }
                blockNumber += 1
                if name == stopAfter { return found }
            }
        }
        h = layers.conv(h, "top_conv", filters: 1280, kernel: 1, bias: false, initializer: convInitializer)
        h = layers.batchNorm(h, "top_bn", activation: .silu)
        keep("top_activation", h)
        return found
    }

    /// One MBConv block: expand (1×1) → depthwise → squeeze-excitation → project (1×1) → residual.
    /// `wants(layer)` says whether a caller asks for that activation: an expand activation nobody
    /// asks for is made inside the depthwise convolution, in inference never written.
    static func mbConv(_ layers: Layers, _ x: Var, name: String, inputFilters: Int, outputFilters: Int, expandRatio: Int,
                       kernel: Int, stride: Int, dropRate: Float, rebuildingExpanded: Bool = true,
                       wants: (String) -> Bool = { _ in true }, keep: (String, Var) -> Void) -> Var {
        let tape = layers.tape
        let filters = inputFilters * expandRatio
        var h = x
        if expandRatio != 1 && !wants(name + "_expand_activation") {
            // The expand convolution, its batch norm and activation, and the depthwise convolution as
            // one op: the expand activation is never written, nor in training the gradient at the
            // expand convolution's output.
            h = layers.depthwise(expanding: h, name + "_expand_conv", filters: filters, name + "_expand_bn", activation: .silu,
                                 name + "_dwconv", kernel: kernel, stride: stride, initializer: convInitializer)
        } else {
            if expandRatio != 1 {
                h = layers.conv(h, name + "_expand_conv", filters: filters, kernel: 1, bias: false, initializer: convInitializer)
                h = layers.batchNorm(h, name + "_expand_bn", activation: .silu, rebuilt: rebuildingExpanded)
                keep(name + "_expand_activation", h)
            }
            h = layers.depthwise(h, name + "_dwconv", kernel: kernel, stride: stride, initializer: convInitializer)
        }
        h = layers.batchNorm(h, name + "_bn", activation: .silu, rebuilt: rebuildingExpanded)
        keep(name + "_activation", h)
        // Squeeze-excitation: width from the block's input filters (SPEC §1.1).
        let reduced = max(1, Int(Double(inputFilters) * seRatio))
        var se = tape.globalAveragePool(h)
        se = tape.silu(layers.pointwiseOnVector(se, name + "_se_reduce", filters: reduced, initializer: convInitializer))
        se = tape.sigmoid(layers.pointwiseOnVector(se, name + "_se_expand", filters: filters, initializer: convInitializer))
        // The excitation (Keras' Multiply) and the projection as one op that never builds the product.
        h = layers.pointwiseConv(h, scaledBy: se, name + "_project_conv", filters: outputFilters, initializer: convInitializer)
        h = layers.batchNorm(h, name + "_project_bn")
        if stride == 1 && inputFilters == outputFilters {
            h = tape.add(tape.dropConnect(h, rate: dropRate), x)
            keep(name + "_add", h)
        }
        return h
    }
}
