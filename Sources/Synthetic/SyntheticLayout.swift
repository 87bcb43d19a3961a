// Writing a synthetic data folder: the Kermany layout with exact masks beside it, and a
// Montgomery-layout lung set. `synthetic.json`, written last, records the parameters; a folder
// with the same parameters is reused, a folder with others is refused rather than overwritten.
//
//     DIR/chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg      classification images
//     DIR/chest_xray_masks/{train,test}/{NORMAL,PNEUMONIA}/*.png lung masks of those (0/255)
//     DIR/montgomery/CXR_png/MCUCXR_####_#.png                   segmentation images
//     DIR/montgomery/ManualMask/{leftMask,rightMask}/*.png       patient-left / patient-right lung

import Artifacts
import Datasets
import Foundation
import Imaging
import SeededRandom

/// The built-in synthetic chest X-ray generator (DESIGN §6).
public struct SyntheticConfig: Codable, Sendable, Equatable {
    /// Image width in pixels; heights vary between 85 % and 100 % of it.
    public var size: Int
    /// Classification images per class in the Kermany `train` folder.
    public var trainPerClass: Int
    /// Classification images per class in the Kermany `test` folder.
    public var testPerClass: Int
    /// Images in the Montgomery-layout lung segmentation set.
    public var lungImages: Int
    public var seed: UInt64

    public init(size: Int, trainPerClass: Int, testPerClass: Int, lungImages: Int, seed: UInt64) {
        self.size = size
        self.trainPerClass = trainPerClass
        self.testPerClass = testPerClass
        self.lungImages = lungImages
        self.seed = seed
    }
}


/// Why a synthetic folder could not be written.
public enum SyntheticError: Error, CustomStringConvertible {
    /// The folder holds something else (another generation, or not synthetic data at all).
    case folder(path: String, message: String)
    case image(ImagingError)
    case file(FileError)

    public var description: String {
        switch self {
        case let .folder(path, message): "\(path): \(message)"
        case let .image(error): error.description
        case let .file(error): error.description
        }
    }
}

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
    /// - Throws: `SyntheticError` when the folder holds another generation or cannot be written.
    @discardableResult
    public static func generate(into folder: String, config: SyntheticConfig, threads: Int,
                                sink: EventSink) throws(SyntheticError) -> Bool
    {
        let parameters = SyntheticParameters(generatorVersion: generatorVersion, config: config)
        let record = folder + "/synthetic.json"
        if let data = FileManager.default.contents(atPath: record) {
            if let existing = try? JSONDecoder().decode(SyntheticParameters.self, from: data), existing == parameters {
                sink(.note("reusing synthetic data in \(folder)"))
                return true
            }
            throw .folder(path: folder, message: "holds synthetic data generated with other parameters; "
                                 + "delete it or choose another folder")
        }
        if FileManager.default.fileExists(atPath: folder),
           let entries = try? FileManager.default.contentsOfDirectory(atPath: folder),
           entries.contains(where: { !["chest_xray", "chest_xray_masks", "montgomery"].contains($0) && !$0.hasPrefix(".") }) {
            throw .folder(path: folder, message: "exists and is not a synthetic data folder; choose an empty or new folder")
        }
        let items = plan(config)
        let width = config.size
        _ = try parallelMap(items, threads: threads, sink: sink, task: "synthesizing images") {
            (item: SyntheticItem) throws(SyntheticError) in
            var g = SplitMix64(seed: config.seed, stream: item.stream)
            let height = Int((Double(width) * g.uniform(0.82, 1.0)).rounded())
            let phantom = render(label: item.label, width: width, height: height, generator: &g)
            func write(_ encode: () throws(ImagingError) -> [UInt8], to path: String) throws(SyntheticError) {
                let bytes: [UInt8]
                do { bytes = try encode() } catch { throw .image(error) }
                do { try writeFileAtomically(bytes, to: path) } catch { throw .file(error) }
            }
            switch item.kind {
            case .classification:
                try write({ () throws(ImagingError) in try phantom.image.jpegData(quality: 92) }, to: "\(folder)/chest_xray/\(item.path)")
                let maskPath = (item.path as NSString).deletingPathExtension + ".png"
                try write({ () throws(ImagingError) in try phantom.lungs.image.pngData() }, to: "\(folder)/chest_xray_masks/\(maskPath)")
            case .lungs:
                try write({ () throws(ImagingError) in try phantom.image.pngData() }, to: "\(folder)/montgomery/CXR_png/\(item.path)")
                try write({ () throws(ImagingError) in try phantom.imageRightLung.image.pngData() },
                          to: "\(folder)/montgomery/ManualMask/leftMask/\(item.path)")
                try write({ () throws(ImagingError) in try phantom.imageLeftLung.image.pngData() },
                          to: "\(folder)/montgomery/ManualMask/rightMask/\(item.path)")
            }
        }
        do {
            try writeFileAtomically(try canonicalJSON(parameters), to: record)
        } catch let error as FileError {
            throw .file(error)
        } catch {
            throw .folder(path: record, message: "\(error)")
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
