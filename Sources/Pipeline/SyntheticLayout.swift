// Writing a synthetic data folder: the Kermany layout with exact masks beside it, and a
// Montgomery-layout lung set. `synthetic.json`, written last, records the parameters; a folder
// with the same parameters is reused, a folder with others is refused rather than overwritten.
//
//     DIR/chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg      classification images
//     DIR/chest_xray_masks/{train,test}/{NORMAL,PNEUMONIA}/*.png lung masks of those (0/255)
//     DIR/montgomery/CXR_png/MCUCXR_####_#.png                   segmentation images
//     DIR/montgomery/ManualMask/{leftMask,rightMask}/*.png       patient-left / patient-right lung

import SeededRandom
import Foundation
import Imaging

/// What `synthetic.json` holds.
struct SyntheticParameters: Codable, Equatable {
    var generatorVersion: Int
    var config: SyntheticConfig
}

/// One file the generator draws.
private struct SyntheticItem {
    enum Kind { case classification, lungs }
    var kind: Kind
    var label: CXRClass
    /// Relative path of the image (JPEG for classification, PNG for the lung set).
    var path: String
    var stream: UInt64
}

extension SyntheticCXR {
    /// Generates the synthetic folder `folder` for `config`, or reuses it when it already holds
    /// exactly that generation.
    ///
    /// - Returns: true when the folder was reused.
    /// - Throws: `IngestError` when the folder holds another generation or cannot be written.
    @discardableResult
    public static func generate(into folder: String, config: SyntheticConfig, threads: Int,
                                sink: EventSink) throws(IngestError) -> Bool
    {
        let parameters = SyntheticParameters(generatorVersion: generatorVersion, config: config)
        let record = folder + "/synthetic.json"
        if let data = FileManager.default.contents(atPath: record) {
            if let existing = try? JSONDecoder().decode(SyntheticParameters.self, from: data), existing == parameters {
                sink(.note("reusing synthetic data in \(folder)"))
                return true
            }
            throw .invalidSource(path: folder, message: "holds synthetic data generated with other parameters; "
                                 + "delete it or choose another folder")
        }
        if FileManager.default.fileExists(atPath: folder),
           let entries = try? FileManager.default.contentsOfDirectory(atPath: folder),
           entries.contains(where: { !["chest_xray", "chest_xray_masks", "montgomery"].contains($0) && !$0.hasPrefix(".") }) {
            throw .invalidSource(path: folder, message: "exists and is not a synthetic data folder; choose an empty or new folder")
        }
        let items = plan(config)
        let width = config.size
        var failures = [IngestError?](repeating: nil, count: items.count)
        let done = ProgressCounter()
        failures.withUnsafeMutableBufferPointer { slots in
            let slots = UncheckedSendable(slots)
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                for index in stride(from: worker, to: items.count, by: threads) {
                    let item = items[index]
                    var g = SplitMix64(seed: config.seed, stream: item.stream)
                    let height = Int((Double(width) * g.uniform(0.82, 1.0)).rounded())
                    let phantom = render(label: item.label, width: width, height: height, generator: &g)
                    do throws(ImagingError) {
                        switch item.kind {
                        case .classification:
                            try writeFileAtomically(try phantom.image.jpegData(quality: 92),
                                                    to: "\(folder)/chest_xray/\(item.path)")
                            let maskPath = (item.path as NSString).deletingPathExtension + ".png"
                            try writeFileAtomically(try phantom.lungs.image.pngData(),
                                                    to: "\(folder)/chest_xray_masks/\(maskPath)")
                        case .lungs:
                            try writeFileAtomically(try phantom.image.pngData(), to: "\(folder)/montgomery/CXR_png/\(item.path)")
                            try writeFileAtomically(try phantom.imageRightLung.image.pngData(),
                                                    to: "\(folder)/montgomery/ManualMask/leftMask/\(item.path)")
                            try writeFileAtomically(try phantom.imageLeftLung.image.pngData(),
                                                    to: "\(folder)/montgomery/ManualMask/rightMask/\(item.path)")
                        }
                    } catch {
                        slots.value[index] = .image(error)
                    }
                    let finished = done.increment()
                    if finished % 50 == 0 || finished == items.count {
                        sink(.progress(task: "synthesizing images", done: finished, total: items.count))
                    }
                }
            }
        }
        if let failure = failures.compactMap({ $0 }).first { throw failure }
        do {
            try writeFileAtomically(try canonicalJSON(parameters), to: record)
        } catch let error as ImagingError {
            throw .image(error)
        } catch {
            throw .invalidSource(path: record, message: "\(error)")
        }
        sink(.note("generated \(items.count) synthetic images in \(folder)"))
        return false
    }

    /// File names and classes of a generation, in a fixed order. Kermany names carry the class
    /// and patient (`person12_bacteria_57.jpeg`, `IM-0003-0001.jpeg`); about one patient in four
    /// has a second image, so patient-grouped splits have something to group.
    private static func plan(_ config: SyntheticConfig) -> [SyntheticItem] {
        var items: [SyntheticItem] = []
        var names = SplitMix64(seed: config.seed, stream: 0xA11CE)
        var person = 0, normalPatient = 0, fileNumber = 0
        var stream: UInt64 = 1
        for split in ["train", "test"] {
            let perClass = split == "train" ? config.trainPerClass : config.testPerClass
            for label in CXRClass.allCases {
                var image = 0
                for n in 0..<perClass {
                    if n == 0 || names.unit() < 0.75 {
                        person += 1; normalPatient += 1; image = 1
                    } else {
                        image += 1
                    }
                    fileNumber += 1
                    let name: String
                    switch label {
                    case .normal: name = "NORMAL/IM-\(pad(normalPatient, 4))-\(pad(image, 4)).jpeg"
                    case .bacterial: name = "PNEUMONIA/person\(person)_bacteria_\(fileNumber).jpeg"
                    case .viral: name = "PNEUMONIA/person\(person)_virus_\(fileNumber).jpeg"
                    }
                    items.append(SyntheticItem(kind: .classification, label: label, path: "\(split)/\(name)", stream: stream))
                    stream += 1
                }
            }
        }
        for n in 1...config.lungImages {
            let label = CXRClass.allCases[Int(names.next() % 3)]
            items.append(SyntheticItem(kind: .lungs, label: label,
                                       path: "MCUCXR_\(pad(n, 4))_\(label == .normal ? 0 : 1).png", stream: stream))
            stream += 1
        }
        return items
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let text = String(value)
    return String(repeating: "0", count: max(0, width - text.count)) + text
}

/// A thread-safe counter for progress reports from parallel loops.
final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// Wraps a buffer whose disjoint elements parallel workers write (each index by one worker only).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
