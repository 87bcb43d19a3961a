// The error of a stage that reads artifacts and data but trains nothing (prediction, evaluation,
// cropping): what it could not read or write, named.

import Artifacts
import Datasets
import Engine
import Imaging
import Training

/// Why a non-training stage failed. Every case names the file, folder or key.
public enum StageError: Error, CustomStringConvertible {
    /// An image or data row could not be used.
    case data(IngestError)
    /// An input artifact is missing, incomplete or of the wrong kind, or the output could not be written.
    case artifact(ArtifactError)
    /// A weights file lacks a tensor or has one of another shape.
    case checkpoint(CheckpointError)
    /// The dataset has no images where the stage needs some.
    case emptySplit(dataset: String, split: String)
    /// A training part of the stage (stacking's meta-learner) diverged or was interrupted.
    case training(TrainingError)

    public var description: String {
        switch self {
        case let .data(error): error.description
        case let .artifact(error): error.description
        case let .checkpoint(error): error.description
        case let .emptySplit(dataset, split): "\(dataset): no \(split) images"
        case let .training(error): error.description
        }
    }

    /// The typed error for anything thrown while writing the artifact in `folder`.
    static func wrapping(_ error: any Error, folder: String) -> StageError {
        switch error {
        case let error as StageError: error
        case let error as ArtifactError: .artifact(error)
        case let error as IngestError: .data(error)
        case let error as CheckpointError: .checkpoint(error)
        case let error as ImagingError: .data(.image(error))
        case let error as FileError: .artifact(.io(path: error.path, message: error.message))
        case let error as TrainingError:
            switch error {
            case let .data(inner): .data(inner)
            case let .artifact(inner): .artifact(inner)
            case let .checkpoint(inner): .checkpoint(inner)
            case let .emptySplit(dataset, split): .emptySplit(dataset: dataset, split: split)
            case .notFinite, .interrupted: .training(error)
            }
        default: .artifact(.io(path: folder, message: "\(error)"))
        }
    }
}

/// Reads a weights file into `parameters`.
///
/// - Throws: `StageError` naming the file and any missing, unused or misshaped tensor.
func loadWeights(_ parameters: ParameterStore, from path: String) throws(StageError) {
    do {
        try parameters.load(try Safetensors.decode(try readFile(path), source: path).tensors, source: path)
    } catch {
        throw .wrapping(error, folder: path)
    }
}
