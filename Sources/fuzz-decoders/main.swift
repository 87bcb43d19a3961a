// `fuzz-decoders`: a seeded mutation fuzzer for the PNG and JPEG decoders (libpng and libjpeg behind
// the C shims of CCodecs). It mutates a corpus of valid files (bit flips, special bytes, truncation,
// repeated and spliced slices), decodes each result with a 64 MiB raster limit, and counts what
// happened. A decoder that crashes kills the process; the input that did it is left in --out as
// crash-candidate.bin (written before every decode), so a finding is always reproducible.

import ArgumentParser
import Foundation
import Imaging
import SeededRandom

struct FuzzDecoders: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz-decoders",
        abstract: "Mutation-fuzz the PNG/JPEG decoders for a bounded time; print executions and outcomes as JSON.")

    @Option(help: "How long to run, in seconds.")
    var seconds = 60.0

    @Option(help: "Seed of the mutations (the same seed and corpus give the same inputs).")
    var seed: UInt64 = 1

    @Option(parsing: .upToNextOption, help: "Extra corpus files or folders (PNG/JPEG); the image test fixtures are always used.")
    var corpus: [String] = []

    @Option(help: "Where the input being decoded is written before each decode.")
    var out = "fuzz"

    func run() throws {
        var files = corpusFiles(["Tests/ImagingTests/Fixtures"] + corpus)
        // Encoded here too: larger images than the fixtures, in both formats.
        var g = SplitMix64(seed: seed)
        for size in [32, 97] {
            let image = GrayImage(width: size, height: size + 3, pixels: (0..<(size * (size + 3))).map { _ in Float(g.unit()) })
            files.append(("generated-\(size).png", try image.pngData()))
            files.append(("generated-\(size).jpeg", try image.jpegData(quality: 80)))
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let candidate = out + "/crash-candidate.bin"
        var outcomes: [String: Int] = [:]
        var messages: Set<String> = []
        var executions = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let (name, original) = files[Int(g.next() % UInt64(files.count))]
            let input = mutate(original, other: files[Int(g.next() % UInt64(files.count))].bytes, generator: &g)
            _ = FileManager.default.createFile(atPath: candidate, contents: Data(input))
            do {
                let decoded = try GrayImage.decode(input, source: name, maxBytes: 64 << 20)
                precondition(decoded.image.pixels.count == decoded.image.width * decoded.image.height, "inconsistent raster from \(name)")
                outcomes["decoded", default: 0] += 1
            } catch {
                let kind = switch error {
                case let .unsupported(_, message) where message.hasPrefix("too large"): "refusedAsTooLarge"
                case .unsupported: "unsupported"
                case .corrupt: "corrupt"
                default: "other"
                }
                outcomes[kind, default: 0] += 1
                messages.insert("\(error)".replacingOccurrences(of: name, with: "<file>"))
            }
            executions += 1
        }
        try? FileManager.default.removeItem(atPath: candidate)
        let elapsed = Date().timeIntervalSince(start)
        let counts = outcomes.keys.sorted().map { "\"\($0)\": \(outcomes[$0]!)" }.joined(separator: ", ")
        print("{\"executions\": \(executions), \"seconds\": \(Int(elapsed)), \"perSecond\": \(Int(Double(executions) / elapsed)), "
              + "\"corpus\": \(files.count), \"crashes\": 0, \"outcomes\": {\(counts)}, \"distinctErrors\": \(messages.count), \"seed\": \(seed)}")
    }
}

/// PNG and JPEG files under `paths` (files or folders, not recursive), sorted by path.
func corpusFiles(_ paths: [String]) -> [(name: String, bytes: [UInt8])] {
    var out: [(String, [UInt8])] = []
    for path in paths {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { continue }
        let names = isFolder.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
        for name in names where ["png", "jpeg", "jpg"].contains((name as NSString).pathExtension.lowercased()) {
            if let data = FileManager.default.contents(atPath: name) { out.append((name, [UInt8](data))) }
        }
    }
    return out
}

/// One to four mutations of `bytes`: flipped bits, special byte values, truncation, a repeated
/// slice, or a slice spliced in from `other`.
func mutate(_ bytes: [UInt8], other: [UInt8], generator g: inout SplitMix64) -> [UInt8] {
    var data = bytes
    func position() -> Int { data.isEmpty ? 0 : Int(g.next() % UInt64(data.count)) }
    for _ in 0..<(1 + Int(g.next() % 4)) where !data.isEmpty {
        switch g.next() % 6 {
        case 0: data[position()] ^= UInt8(1) << UInt8(g.next() % 8)
        case 1: data[position()] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE][Int(g.next() % 6)]
        case 2: data.removeLast(Int(g.next() % UInt64(data.count)))
        case 3:
            let a = position(), length = min(data.count - a, 1 + Int(g.next() % 64))
            data.insert(contentsOf: data[a..<(a + length)], at: position())
        case 4:
            let a = Int(g.next() % UInt64(max(1, other.count))), length = min(other.count - a, 1 + Int(g.next() % 256))
            let p = position()
            if length > 0 { data.replaceSubrange(p..<min(data.count, p + length), with: other[a..<(a + length)]) }
        default:
            // A 16- or 32-bit big-endian field set to an extreme (sizes, lengths, counts).
            let p = position()
            for i in 0..<min(4, data.count - p) { data[p + i] = g.next() % 2 == 0 ? 0xFF : 0x00 }
        }
    }
    return data
}

FuzzDecoders.main()
