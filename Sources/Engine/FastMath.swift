// A branch-free e^x for the activation loops: call-free, so loops that use it vectorise (libm's
// expf is a call per element). Cody–Waite reduction x = k·ln2 + r with |r| ≤ ln2/2, then the
// degree-7 Taylor polynomial of e^r (truncation error below 3e-9 relative) and 2^k from the
// exponent bits. Inputs are clamped to [−87.3, 88.7], where the result stays a normal float;
// across that range it agrees with libm's expf to a few ulp (checked in EngineTests).

@inline(__always)
func fastExp(_ x: Float) -> Float {
    let clamped = min(max(x, -87.3), 88.7)
    // Round x·log2(e) to an integer by adding 1.5·2²³, which leaves k in the low mantissa bits:
    // no conversion instruction, no overflow check, so the loop vectorises.
    let shifted = clamped * 1.442_695_04 + 12_582_912
    let k = shifted - 12_582_912
    let kBits = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
    let r = clamped - k * 0.693_145_75 - k * 1.428_606_8e-6
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let scale = Float(bitPattern: UInt32(bitPattern: (kBits &+ 127) &<< 23))
    return p * scale
}
