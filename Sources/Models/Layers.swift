// Keras-named layers over the tape: each call declares its parameters on first use (shapes from
// the input) and applies the op. Names follow Keras: `<layer>/kernel`, `<layer>/bias`,
// `<layer>/depthwise_kernel`, `<layer>/gamma` …, so checkpoints map onto Keras weights one to one.

import Engine

/// Hyper-parameters of a model run that are not weights: fixed for the run, read by the layers.
public struct ModelOptions: Sendable, Equatable {
    /// Momentum of batch norm's running statistics in training (Keras 0.99; the short demo profiles
    /// use less so that inference-mode statistics settle within their few hundred steps).
    public var batchNormMomentum: Float
    /// EfficientNet's drop-connect rate at its last block (0.2 in B0; 0 turns it off). Active only on
    /// a training tape.
    public var dropConnect: Float

    public init(batchNormMomentum: Float = kerasBatchNormMomentum, dropConnect: Float = EfficientNetB0.dropConnectRate) {
        self.batchNormMomentum = batchNormMomentum
        self.dropConnect = dropConnect
    }
}

/// The tape, parameter store and options a model runs on.
public struct Layers {
    public let tape: Tape
    public let store: ParameterStore
    public let options: ModelOptions

    public init(tape: Tape, store: ParameterStore, options: ModelOptions = ModelOptions()) {
        self.tape = tape
        self.store = store
        self.options = options
    }

    /// Conv2D (kernel [k,k,Cin,filters]) with optional bias.
    public func conv(_ x: Var, _ name: String, filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .same,
                     bias: Bool, initializer: Initializer) -> Var {
        conv(concatenating: [.node(x)], name, filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias,
             initializer: initializer)
    }

    /// Conv2D of the channel concatenation of `parts` (Keras' UpSampling2D and Concatenate, then
    /// Conv2D: the same kernel and values), which the convolution reads in place
    /// (`Tape.conv2d(concatenating:…)`).
    public func conv(concatenating parts: [ConvPart], _ name: String, filters: Int, kernel: Int, stride: Int = 1,
                     padding: Padding = .same, bias: Bool, initializer: Initializer) -> Var {
        let cin = parts.map { tape.shape($0.node)[3] }.reduce(0, +)
        store.declare(name + "/kernel", shape: [kernel, kernel, cin, filters], initializer: initializer)
        if bias { store.declare(name + "/bias", shape: [filters], initializer: .zeros) }
        return tape.conv2d(concatenating: parts, tape.parameter(name + "/kernel", in: store),
                           bias: bias ? tape.parameter(name + "/bias", in: store) : nil, stride: stride, padding: padding)
    }

    /// DepthwiseConv2D without bias (Keras kernel [k,k,C,1]).
    public func depthwise(_ x: Var, _ name: String, kernel: Int, stride: Int, initializer: Initializer) -> Var {
        let c = tape.shape(x)[3]
        store.declare(name + "/depthwise_kernel", shape: [kernel, kernel, c, 1], initializer: initializer)
        let weight = tape.reshape(tape.parameter(name + "/depthwise_kernel", in: store), [kernel, kernel, c])
        return tape.depthwiseConv2d(x, weight, stride: stride)
    }

    /// A 1×1 Conv2D without bias (`convName`, `filters` wide), BatchNormalization (`bnName`, with
    /// `activation`) and DepthwiseConv2D without bias (`name`) as one op: neither the normalised
    /// tensor nor, in training, the gradient at the convolution's output is written
    /// (`Tape.depthwiseConv2d(normalisingExpansionOf:…)`).
    public func depthwise(expanding x: Var, _ convName: String, filters: Int, _ bnName: String, activation: Activation?,
                          _ name: String, kernel: Int, stride: Int, initializer: Initializer) -> Var {
        store.declare(convName + "/kernel", shape: [1, 1, tape.shape(x)[3], filters], initializer: initializer)
        store.declareBatchNorm(bnName, channels: filters)
        store.declare(name + "/depthwise_kernel", shape: [kernel, kernel, filters, 1], initializer: initializer)
        let weight = tape.reshape(tape.parameter(name + "/depthwise_kernel", in: store), [kernel, kernel, filters])
        return tape.depthwiseConv2d(normalisingExpansionOf: x, tape.parameter(convName + "/kernel", in: store), name: bnName,
                                    store: store, activation: activation, weight, stride: stride, momentum: options.batchNormMomentum)
    }

    /// BatchNormalization over the last axis, and the activation that follows it as one op; its
    /// output is rebuilt where a backward closure reads it unless `rebuilt` is false.
    public func batchNorm(_ x: Var, _ name: String, activation: Activation? = nil, rebuilt: Bool = true) -> Var {
        store.declareBatchNorm(name, channels: tape.shape(x).last ?? 0)
        return tape.batchNorm(x, name: name, store: store, activation: activation, momentum: options.batchNormMomentum,
                              rebuilt: rebuilt)
    }

    /// Multiply (x by its per-image channel scales `s`) then a 1×1 Conv2D without bias, as one op
    /// that never builds the product (`Tape.pointwiseConv2d(_:scaledBy:_:)`).
    public func pointwiseConv(_ x: Var, scaledBy s: Var, _ name: String, filters: Int, initializer: Initializer) -> Var {
        store.declare(name + "/kernel", shape: [1, 1, tape.shape(x)[3], filters], initializer: initializer)
        return tape.pointwiseConv2d(x, scaledBy: s, tape.parameter(name + "/kernel", in: store))
    }

    /// A 1×1 convolution applied to a [N,C] vector (SE's reduce/expand on the squeezed tensor).
    public func pointwiseOnVector(_ x: Var, _ name: String, filters: Int, initializer: Initializer) -> Var {
        let c = tape.shape(x)[1]
        store.declare(name + "/kernel", shape: [1, 1, c, filters], initializer: initializer)
        store.declare(name + "/bias", shape: [filters], initializer: .zeros)
        let weight = tape.reshape(tape.parameter(name + "/kernel", in: store), [c, filters])
        return tape.dense(x, weight, bias: tape.parameter(name + "/bias", in: store))
    }

    /// Dense with bias.
    public func dense(_ x: Var, _ name: String, units: Int, initializer: Initializer) -> Var {
        let i = tape.shape(x)[1]
        store.declare(name + "/kernel", shape: [i, units], initializer: initializer)
        store.declare(name + "/bias", shape: [units], initializer: .zeros)
        return tape.dense(x, tape.parameter(name + "/kernel", in: store), bias: tape.parameter(name + "/bias", in: store))
    }
}
