// Ops that move values without arithmetic: global average pooling, zero padding, nearest ×2
// upsampling, channel concatenation, reshape.

import Artifacts

extension Tape {
    /// Mean over H and W: [N,H,W,C] → [N,C]. Images are split across threads.
    public func globalAveragePool(_ x: Var) -> Var {
        let s = NHWC(shape(x)), xv = value(x)
        let area = s.h * s.w, c = s.c
        var out = Tensor(zeros: [s.n, c])
        out.withMutablePointer { y in
            xv.withPointer { xp in
                let box = SendableBox((y, xp))
                Parallel.forEachRange(s.n, grain: 1) { images in
                    let (y, xp) = box.value
                    for n in images {
                        let row = y + n * c
                        for p in 0..<area { let i = xp + (n * area + p) * c; for ch in 0..<c { row[ch] += i[ch] } }
                        for ch in 0..<c { row[ch] /= Float(area) }
                    }
                }
            }
        }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in
                dy.withPointer { g in
                    let box = SendableBox((dx, g))
                    Parallel.forEachRange(s.n, grain: 1) { images in
                        let (dx, g) = box.value
                        for n in images {
                            let row = g + n * c
                            for p in 0..<area { let o = dx + (n * area + p) * c; for ch in 0..<c { o[ch] += row[ch] / Float(area) } }
                        }
                    }
                }
            }
        }
    }

    /// Keras ZeroPadding2D with `pad` pixels on every side.
    public func zeroPad(_ x: Var, _ pad: Int = 1) -> Var {
        let s = NHWC(shape(x)), xv = value(x)
        let oh = s.h + 2 * pad, ow = s.w + 2 * pad
        var out = Tensor(zeros: [s.n, oh, ow, s.c])
        func each(_ body: (Int, Int) -> Void) {  // (input offset, output offset) of each pixel
            for n in 0..<s.n { for y in 0..<s.h { for x in 0..<s.w {
                body(((n * s.h + y) * s.w + x) * s.c, ((n * oh + y + pad) * ow + x + pad) * s.c)
            } } }
        }
        each { i, o in for ch in 0..<s.c { out.data[o + ch] = xv.data[i + ch] } }
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in each { i, o in for ch in 0..<s.c { dx[i + ch] += dy.data[o + ch] } } }
        }
    }

    /// Keras UpSampling2D(2), nearest: each pixel becomes a 2×2 block. Recorded with a recipe
    /// (`Tape.saved`) when `x` has one. Rows are split across threads.
    public func upsample2x(_ x: Var) -> Var {
        let s = NHWC(shape(x)), c = s.c
        let oh = 2 * s.h, ow = 2 * s.w
        func upsampled(_ xv: Tensor) -> Tensor {
            Tensor(shape: [s.n, oh, ow, c]) { out in
                xv.withPointer { src in
                    let box = SendableBox((out, src))
                    Parallel.forEachRange(s.n * oh, grain: 8) { rows in
                        let (out, src) = box.value
                        for row in rows {  // output row (n, y) repeats input row (n, y / 2)
                            let from = src + (row / oh * s.h + row % oh / 2) * s.w * c, to = out + row * ow * c
                            for x in 0..<s.w {  // pointers, not q[c + ch]: a checked index keeps a loop scalar
                                let p = from + x * c, q = to + 2 * x * c, q2 = q + c
                                for ch in 0..<c { q[ch] = p[ch]; q2[ch] = p[ch] }
                            }
                        }
                    }
                }
            }
        }
        let savedX = saved(x)
        return record(upsampled(value(x)), recompute: rebuildable([x]) ? { upsampled(savedX()) } : nil) { tape, dy in
            // dx[y][x] += dy[2y][2x], dy[2y][2x+1], dy[2y+1][2x], dy[2y+1][2x+1], in that order.
            tape.accumulate(x, writing: { dx, add in
                dy.withPointer { g in
                    let box = SendableBox((dx, g))
                    Parallel.forEachRange(s.n * s.h, grain: 4) { rows in
                        let (dx, g) = box.value
                        for row in rows {
                            let top = g + (row / s.h * oh + 2 * (row % s.h)) * ow * c, bottom = top + ow * c
                            let to = dx + row * s.w * c
                            for x in 0..<s.w {
                                let a = top + 2 * x * c, b = bottom + 2 * x * c, d = to + x * c
                                let a2 = a + c, b2 = b + c
                                if add {
                                    for ch in 0..<c { d[ch] = d[ch] + a[ch] + a2[ch] + b[ch] + b2[ch] }
                                } else {
                                    for ch in 0..<c { d[ch] = a[ch] + a2[ch] + b[ch] + b2[ch] }
                                }
                            }
                        }
                    }
                }
            })
        }
    }

    /// Concatenation along the last axis. Recorded with a recipe (`Tape.saved`) when every part
    /// has one. Rows are split across threads.
    ///
    /// - Precondition: all leading dimensions agree.
    public func concat(_ parts: [Var]) -> Var {
        let shapes = parts.map { shape($0) }
        let lead = Array(shapes[0].dropLast())
        precondition(shapes.allSatisfy { Array($0.dropLast()) == lead }, "concat shapes \(shapes) differ before the last axis")
        let widths = shapes.map { $0.last! }, total = widths.reduce(0, +)
        let offsets = widths.indices.map { widths[..<$0].reduce(0, +) }
        let rows = lead.reduce(1, *)
        func joined(_ values: [Tensor]) -> Tensor {
            Tensor(shape: lead + [total]) { o in
                for ((v, width), offset) in zip(zip(values, widths), offsets) {
                    v.withPointer { src in
                        let box = SendableBox((o, src))
                        Parallel.forEachRange(rows, grain: max(1, (1 << 14) / width)) { range in
                            let (o, src) = box.value
                            for r in range { (o + r * total + offset).update(from: src + r * width, count: width) }
                        }
                    }
                }
            }
        }
        let savedParts = parts.map { saved($0) }
        return record(joined(parts.map { value($0) }), recompute: rebuildable(parts) ? { joined(savedParts.map { $0() }) } : nil) { tape, dy in
            for ((part, width), offset) in zip(zip(parts, widths), offsets) {
                tape.accumulate(part, writing: { dx, add in
                    dy.withPointer { g in
                        let box = SendableBox((dx, g))
                        Parallel.forEachRange(rows, grain: max(1, (1 << 14) / width)) { range in
                            let (dx, g) = box.value
                            for r in range {
                                let src = g + r * total + offset, dst = dx + r * width
                                if add { for ch in 0..<width { dst[ch] += src[ch] } } else { dst.update(from: src, count: width) }
                            }
                        }
                    }
                })
            }
        }
    }

    /// The same values under another shape.
    public func reshape(_ x: Var, _ newShape: [Int]) -> Var {
        let out = value(x).reshaped(newShape)
        return record(out) { tape, dy in
            tape.accumulate(x) { dx in for i in 0..<dy.count { dx[i] += dy.data[i] } }
        }
    }
}
