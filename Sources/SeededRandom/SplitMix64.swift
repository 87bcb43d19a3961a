// Seeded random streams. Every consumer gets its own generator, passed explicitly; there is no
// global RNG, so results do not depend on call order elsewhere (STYLE §10).

import Foundation

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, statistically sound 64-bit generator.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable, Equatable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    /// A generator for sub-stream `stream` of `seed` (image i of a generator, say), independent
    /// of how many numbers other streams drew.
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SplitMix64(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
        state = mixer.next() ^ stream
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * unit()
    }

    /// A standard normal deviate (Box–Muller, one of the pair).
    public mutating func normal() -> Double {
        let u = max(unit(), 0x1.0p-53)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * unit())
    }

    /// FNV-1a 64 of `text`: a stable seed for a named stream (Swift's `hashValue` changes per process).
    public static func stableHash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// A uniformly chosen index below `count`.
    public mutating func index(below count: Int) -> Int {
        Int(next() % UInt64(count))
    }
}

/// Fisher–Yates shuffle driven by `generator` (the same sequence of draws on every platform,
/// unlike `shuffle(using:)`, whose algorithm the standard library does not promise).
public func seededShuffle<T>(_ items: inout [T], _ generator: inout SplitMix64) {
    guard items.count > 1 else { return }
    for i in stride(from: items.count - 1, to: 0, by: -1) {
        items.swapAt(i, generator.index(below: i + 1))
    }
}

