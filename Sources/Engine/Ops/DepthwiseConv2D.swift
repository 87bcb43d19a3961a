// Depthwise convolution (NHWC input, HWC kernel: one k×k filter per channel, depth multiplier 1),
// forward and backward, as loops over contiguous channels that the compiler vectorises.

extension Tape {
    /// Depthwise convolution of `x` [N,H,W,C] with `kernel` [kh,kw,C] (Keras stores [kh,kw,C,1]).
    public func depthwiseConv2d(_ x: Var, _ kernel: Var, stride: Int = 1, padding: Padding = .same) -> Var {
        let input = NHWC(shape(x))
        let k = shape(kernel)
        precondition(k.count == 3 && k[2] == input.c, "depthwise kernel \(k) does not fit input \(input.shape)")
        let (oh, padTop) = convGeometry(input: input.h, kernel: k[0], stride: stride, padding: padding)
        let (ow, padLeft) = convGeometry(input: input.w, kernel: k[1], stride: stride, padding: padding)
        let c = input.c, kh = k[0], kw = k[1]
        let xv = value(x), kv = value(kernel)
        var out = Tensor(zeros: [input.n, oh, ow, c])
        forwardFlops += 2 * Double(input.n * oh * ow * c * kh * kw)
        /// Calls body(input pixel offset, kernel tap offset, output pixel offset) for every valid tap.
        func taps(_ body: (Int, Int, Int) -> Void) {
            for n in 0..<input.n {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let o = ((n * oh + oy) * ow + ox) * c
                        for ky in 0..<kh {
                            let iy = oy * stride + ky - padTop
                            guard iy >= 0 && iy < input.h else { continue }
                            for kx in 0..<kw {
                                let ix = ox * stride + kx - padLeft
                                guard ix >= 0 && ix < input.w else { continue }
                                body(((n * input.h + iy) * input.w + ix) * c, (ky * kw + kx) * c, o)
                            }
                        }
                    }
                }
            }
        }
        out.withMutablePointer { y in
            xv.withPointer { xp in
                kv.withPointer { w in
                    taps { i, t, o in
                        for ch in 0..<c { y[o + ch] += xp[i + ch] * w[t + ch] }
                    }
                }
            }
        }
        return record(out) { tape, dy in
            dy.withPointer { g in
                xv.withPointer { xp in
                    kv.withPointer { w in
                        tape.accumulate(x) { dx in
                            taps { i, t, o in for ch in 0..<c { dx[i + ch] += g[o + ch] * w[t + ch] } }
                        }
                        tape.accumulate(kernel) { dw in
                            taps { i, t, o in for ch in 0..<c { dw[t + ch] += g[o + ch] * xp[i + ch] } }
                        }
                    }
                }
            }
        }
    }
}
