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
    /// (`Tape.saved`) when `x` has one.
    public func upsample2x(_ x: Var) -> Var {
        let s = NHWC(shape(x))
        let oh = 2 * s.h, ow = 2 * s.w
        func each(_ body: (Int, Int) -> Void) {
            for n in 0..<s.n { for y in 0..<oh { for x in 0..<ow {
                body(((n * s.h + y / 2) * s.w + x / 2) * s.c, ((n * oh + y) * ow + x) * s.c)
            } } }
        }
        func upsampled(_ xv: Tensor) -> Tensor {
            var out = Tensor(zeros: [s.n, oh, ow, s.c])
            each { i, o in for ch in 0..<s.c { out.data[o + ch] = xv.data[i + ch] } }
            return out
        }
        let savedX = saved(x)
        return record(upsampled(value(x)), recompute: rebuildable([x]) ? { upsampled(savedX()) } : nil) { tape, dy in
            tape.accumulate(x) { dx in each { i, o in for ch in 0..<s.c { dx[i + ch] += dy.data[o + ch] } } }
        }
    }

    /// Concatenation along the last axis. Recorded with a recipe (`Tape.saved`) when every part
    /// has one.
    ///
    /// - Precondition: all leading dimensions agree.
    public func concat(_ parts: [Var]) -> Var {
        let shapes = parts.map { shape($0) }
        let lead = Array(shapes[0].dropLast())
        precondition(shapes.allSatisfy { Array($0.dropLast()) == lead }, "concat shapes \(shapes) differ before the last axis")
        let widths = shapes.map { $0.last! }, total = widths.reduce(0, +)
        let rows = lead.reduce(1, *)
        func joined(_ values: [Tensor]) -> Tensor {
            var out = Tensor(zeros: lead + [total])
            var offset = 0
            out.withMutablePointer { o in
                for (v, width) in zip(values, widths) {
                    v.withPointer { src in
                        for r in 0..<rows { (o + r * total + offset).update(from: src + r * width, count: width) }
                    }
                    offset += width
                }
            }
            return out
        }
        let savedParts = parts.map { saved($0) }
        return record(joined(parts.map { value($0) }), recompute: rebuildable(parts) ? { joined(savedParts.map { $0() }) } : nil) { tape, dy in
            var offset = 0
            for (part, width) in zip(parts, widths) {
                tape.accumulate(part, writing: { dx, add in
                    dy.withPointer { g in
                        for r in 0..<rows {
                            let src = g + r * total + offset, dst = dx + r * width
                            if add { for ch in 0..<width { dst[ch] += src[ch] } } else { for ch in 0..<width { dst[ch] = src[ch] } }
                        }
                    }
                })
                offset += width
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
