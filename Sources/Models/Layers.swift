// Keras-named layers over the tape: each call declares its parameters on first use (shapes from
// the input) and applies the op. Names follow Keras: `<layer>/kernel`, `<layer>/bias`,
// `<layer>/depthwise_kernel`, `<layer>/gamma` …, so checkpoints map onto Keras weights one to one.

import Engine

/// The tape and parameter store a model runs on.
public struct Layers {
    public let tape: Tape
    public let store: ParameterStore

    public init(tape: Tape, store: ParameterStore) {
        self.tape = tape
        self.store = store
    }

    /// Conv2D (kernel [k,k,Cin,filters]) with optional bias.
    public func conv(_ x: Var, _ name: String, filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .same,
                     bias: Bool, initializer: Initializer) -> Var {
        let cin = tape.shape(x)[3]
        store.declare(name + "/kernel", shape: [kernel, kernel, cin, filters], initializer: initializer)
        if bias { store.declare(name + "/bias", shape: [filters], initializer: .zeros) }
        return tape.conv2d(x, tape.parameter(name + "/kernel", in: store),
                           bias: bias ? tape.parameter(name + "/bias", in: store) : nil, stride: stride, padding: padding)
    }

    /// DepthwiseConv2D without bias (Keras kernel [k,k,C,1]).
    public func depthwise(_ x: Var, _ name: String, kernel: Int, stride: Int, initializer: Initializer) -> Var {
        let c = tape.shape(x)[3]
        store.declare(name + "/depthwise_kernel", shape: [kernel, kernel, c, 1], initializer: initializer)
        let weight = tape.reshape(tape.parameter(name + "/depthwise_kernel", in: store), [kernel, kernel, c])
        return tape.depthwiseConv2d(x, weight, stride: stride)
    }

    /// BatchNormalization over the last axis, and the activation that follows it as one op.
    public func batchNorm(_ x: Var, _ name: String, activation: Activation? = nil) -> Var {
        store.declareBatchNorm(name, channels: tape.shape(x).last ?? 0)
        return tape.batchNorm(x, name: name, store: store, activation: activation)
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
