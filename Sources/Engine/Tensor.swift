// The engine's value type: a shape and contiguous Float32 storage (copy-on-write through the
// array). Layout conventions, fixed for the whole engine:
//   activations NHWC (batch, height, width, channels), dense activations NC;
//   conv kernels HWIO (kh, kw, in, out), depthwise kernels HWC, dense kernels IO — Keras' layouts,
//   so a 1×1 convolution is one GEMM and Keras weights load without transposition.

/// A dense Float32 array with a shape.
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    /// - Precondition: `data.count` is the product of `shape`.
    public init(shape: [Int], data: [Float]) {
        precondition(data.count == shape.reduce(1, *), "tensor data count \(data.count) does not match shape \(shape)")
        self.shape = shape
        self.data = data
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    /// A tensor filled with `value`.
    public init(shape: [Int], repeating value: Float) {
        self.init(shape: shape) { $0.initialize(repeating: value, count: shape.reduce(1, *)) }
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// The same data under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, data: data) }
}

/// Dimensions of an NHWC activation.
public struct NHWC: Equatable, Sendable {
    public var n, h, w, c: Int

    /// - Precondition: `shape` has rank 4.
    public init(_ shape: [Int]) {
        precondition(shape.count == 4, "expected an NHWC shape, got \(shape)")
        n = shape[0]; h = shape[1]; w = shape[2]; c = shape[3]
    }

    public init(n: Int, h: Int, w: Int, c: Int) {
        self.n = n; self.h = h; self.w = w; self.c = c
    }

    public var shape: [Int] { [n, h, w, c] }
    public var count: Int { n * h * w * c }
}

extension Tensor {
    /// A tensor whose storage `fill` initialises completely (no zero-fill first). The storage has
    /// `BLAS.readSlack` spare elements of capacity, since gradients are GEMM outputs that BLIS reads.
    init(shape: [Int], fill: (UnsafeMutablePointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        self.init(shape: shape, data: [Float](unsafeUninitializedCapacity: count + BLAS.readSlack) { buffer, initialized in
            fill(buffer.baseAddress!)
            initialized = count
        })
    }
}

/// Runs `body` on scratch storage of `count` elements (and `BLAS.readSlack` spare ones after them)
/// with unspecified contents. Large scratch comes from the heap, which keeps freed memory
/// (`Parallel.configure`), so a training step reuses the same pages step after step instead of
/// faulting in fresh ones.
func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: count + BLAS.readSlack) { body($0.baseAddress!) }
}
