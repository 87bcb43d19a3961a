// What every stage executable shares: the common options, loading the configuration, printing
// events, and turning errors into exit codes. Stages stay thin: parse, call a library, report.

import ArgumentParser
import Artifacts
import Datasets
import Engine
import Foundation
import Pipeline
import Training

/// Options every stage takes.
public struct CommonOptions: ParsableArguments, Sendable {
    @Option(help: "Folder of the artifact store.")
    public var artifacts: String = "artifacts"

    @Option(help: "The pipeline configuration file.")
    public var config: String = "pipeline.json"

    @Option(help: "Configuration profile: paper, fast, quick, demo or ci (the profiles of the configuration file).")
    public var profile: String = "paper"

    @Option(help: "Worker threads (default: SLURM_CPUS_PER_TASK inside a Slurm job, else the configuration's 'threads').")
    public var threads: Int?

    @Flag(help: "Rerun even when a complete artifact with the same key exists.")
    public var force = false

    @Option(help: "Progress output on standard error: auto (a live line on a terminal, plain lines otherwise), text, json or none.")
    public var progress: ProgressStyle = .auto

    public init() {}

    public func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The configuration with the profile applied and the thread count laid over it: `--threads`, else
    /// the CPUs Slurm gave the job (`SLURM_CPUS_PER_TASK`), else the configuration's.
    public func loadConfig(environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> PipelineConfig {
        var config = try PipelineConfig.load(path: self.config, profile: profile)
        if let threads {
            guard threads >= 1 else { throw .badValue(path: "--threads", key: "threads", message: "must be at least 1") }
            config.threads = threads
        } else if let slurm = environment["SLURM_CPUS_PER_TASK"] {
            guard let cpus = Int(slurm), cpus >= 1 else {
                throw .badValue(path: "SLURM_CPUS_PER_TASK", key: "threads", message: "'\(slurm)' is not a positive CPU count")
            }
            config.threads = cpus
        }
        return config
    }

    /// The stage's context: the configuration (after `adjust`, a stage's own command-line overlays),
    /// the artifact store, `--force` and the event printer chosen by `--progress`. Sets the engine's
    /// thread count for this process from the configuration.
    public func context(stage: String, adjust: (inout PipelineConfig) -> Void = { _ in }) throws(ConfigError) -> StageContext {
        var config = try loadConfig()
        adjust(&config)
        Parallel.configure(threads: config.threads)
        installInterruptionHandlers(stage: stage)
        let printer = EventPrinter(stage: stage, style: progress)
        return StageContext(config: config, artifacts: artifacts, force: force, sink: { printer.handle($0) })
    }
}

/// How progress is shown.
public enum ProgressStyle: String, ExpressibleByArgument, CaseIterable, Sendable {
    case auto, text, json, none
}

/// Prints events to standard error: one live line with ETA on a terminal, plain lines otherwise.
final class EventPrinter: @unchecked Sendable {
    private let stage: String
    private let style: ProgressStyle
    private let live: Bool
    private let lock = NSLock()
    private var started: [String: Date] = [:]
    private var lastLine: [String: Date] = [:]
    private var lineOpen = false

    init(stage: String, style: ProgressStyle) {
        self.stage = stage
        self.style = style
        live = style == .auto && isatty(STDERR_FILENO) == 1
    }

    func handle(_ event: StageEvent) {
        lock.lock()
        defer { lock.unlock() }
        switch style {
        case .none: return
        case .json: emit(json(event))
        case .auto, .text: text(event)
        }
    }

    private func text(_ event: StageEvent) {
        switch event {
        case let .progress(task, done, total):
            let start = started[task] ?? Date()
            started[task] = start
            let elapsed = Date().timeIntervalSince(start)
            let eta = done > 0 && done < total ? " ETA \(clock(elapsed / Double(done) * Double(total - done)))" : ""
            let line = "\(stage): \(task) \(done)/\(total) (\(100 * done / max(total, 1))%)\(eta)"
            if live {
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (done == total ? "\n" : "")).utf8))
                lineOpen = done != total
            } else if done == total || Date().timeIntervalSince(lastLine[task] ?? start) >= 5 {
                lastLine[task] = Date()
                emit(line)
            }
        case let .note(text): emit("\(stage): \(text)")
        case let .warning(text): emit("\(stage): warning: \(text)")
        }
    }

    private func emit(_ line: String) {
        if lineOpen {
            FileHandle.standardError.write(Data("\n".utf8))
            lineOpen = false
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private func json(_ event: StageEvent) -> String {
        let object: [String: JSONValue] = switch event {
        case let .progress(task, done, total):
            ["event": .string("progress"), "task": .string(task), "done": .number(Double(done)), "total": .number(Double(total))]
        case let .note(text): ["event": .string("note"), "text": .string(text)]
        case let .warning(text): ["event": .string("warning"), "text": .string(text)]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var withStage = object
        withStage["stage"] = .string(stage)
        return (try? encoder.encode(JSONValue.object(withStage))).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    private func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}

/// SIGINT and SIGTERM: training stops at its next step (the stage then exits 70, "rerun to
/// resume"); any other stage, or a second signal, exits 70 at once with that message.
func installInterruptionHandlers(stage: String) {
    Interruption.install(immediate: { number in
        FileHandle.standardError.write(Data("\n\(stage): interrupted (signal \(number)); nothing incomplete is marked complete — rerun to resume\n".utf8))
        exit(StageExit.software)
    }, deferred: { number in
        FileHandle.standardError.write(Data("\n\(stage): interrupted (signal \(number)); stopping after this step to write a checkpoint there\n".utf8))
    })
}

/// Exit codes shared by every stage (sysexits.h values).
public enum StageExit {
    /// Bad input data: a corrupt image, a missing mask, a malformed file.
    public static let dataError: Int32 = 65
    /// A named input (folder, artifact) does not exist.
    public static let noInput: Int32 = 66
    /// Training diverged (NaN loss), or the stage was interrupted (rerun to resume).
    public static let software: Int32 = 70
    /// Reading or writing failed.
    public static let ioError: Int32 = 74
    /// `pipeline.json` or a profile is wrong.
    public static let configError: Int32 = 78
}

/// Runs a stage body: prints its errors as `stage: error: …` on standard error and exits with the
/// code of the error's kind; on success prints the artifact folder as the last line of stdout.
public func runStage(_ stage: String, _ body: () throws -> String) throws {
    do {
        let folder = try body()
        print(folder)
    } catch let error as ConfigError {
        fail(stage, error.description, StageExit.configError)
    } catch let error as IngestError {
        switch error {
        case .missingFolder, .emptyFolder: fail(stage, error.description, StageExit.noInput)
        case .artifact: fail(stage, error.description, StageExit.ioError)
        default: fail(stage, error.description, StageExit.dataError)
        }
    } catch let error as ArtifactError {
        fail(stage, error.description, StageExit.noInput)
    } catch let error as TrainingError {
        switch error {
        case .data, .emptySplit: fail(stage, error.description, StageExit.dataError)
        case .notFinite, .interrupted: fail(stage, error.description, StageExit.software)
        case .checkpoint, .artifact: fail(stage, error.description, StageExit.ioError)
        }
    } catch let error as StageError {
        switch error {
        case .data, .emptySplit: fail(stage, error.description, StageExit.dataError)
        case .checkpoint: fail(stage, error.description, StageExit.ioError)
        case .training: fail(stage, error.description, StageExit.software)
        case let .artifact(inner):
            switch inner {
            case .io: fail(stage, error.description, StageExit.ioError)
            default: fail(stage, error.description, StageExit.noInput)
            }
        }
    } catch let error as EvaluateError {
        switch error {
        case .predictions(.unreadable): fail(stage, error.description, StageExit.noInput)
        case .artifact: fail(stage, error.description, StageExit.ioError)
        default: fail(stage, error.description, StageExit.dataError)
        }
    }
}

private func fail(_ stage: String, _ message: String, _ code: Int32) -> Never {
    FileHandle.standardError.write(Data("\(stage): error: \(message)\n".utf8))
    exit(code)
}
