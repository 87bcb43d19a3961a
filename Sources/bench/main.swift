// `bench`: the engine's speed and memory on this machine as one JSON object (DESIGN §5), with the
// shapes of ../shared/peers: classifier train and inference at 256² batch 16, U-Net train at 256²
// batch 8 and 512² batch 4; and `evaluate` end to end on a million-row prediction file with the
// paper profile's 2000 bootstrap resamples; and one real epoch of `segment train` (lungs, 256²) and of
// `classify-train` (kermany224, 224²) through the stage executables, with where the epoch's time went;
// and `segment predict` over every chest X-ray of kermany224 (5216 here) at 256².
// Each workload runs in its own process so its peak RSS is its own.

import ArgumentParser
import Engine
import Foundation
import Models
import Pipeline
import SeededRandom
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training and inference speed and peak memory; prints one JSON object.",
        discussion: "Images per second are the median over --steps timed steps after --warmup untimed ones, on random data; "
            + "each workload also reports its fastest and slowest step, every step's seconds and their coefficient of variation "
            + "(stepCV). scripts/bench-peers.sh (make bench-peers) alternates these with the PyTorch peers. "
            + "--only machine_probe times two fixed kernels (multiply-adds in registers; a stream through 128 MiB per thread): "
            + "run between measurements, its spread shows how much the machine itself moved.")

    @Option(help: "Timed steps per workload (the median is reported).")
    var steps = 5

    @Option(help: "Untimed warm-up steps per workload.")
    var warmup = 1

    @Option(help: "BLAS threads.")
    var threads = 2

    @Option(help: "Run only this workload and print its JSON line (used internally; also handy alone).")
    var only: String?

    @Option(parsing: .upToNextOption, help: "Workloads to run (default: all): \((workloads.map(\.name) + Self.stageWorkloadNames).joined(separator: ", ")).")
    var workloads: [String] = []

    @Option(help: "The development data folder (kermany224/, pediatric-lungs/) the epoch workloads read; they are skipped without it.")
    var data = "../shared/data"

    func run() throws {
        Parallel.configure(threads: threads)
        if let only, let epoch = Self.epochWorkloads.first(where: { $0.name == only }) {
            print(try measureEpoch(epoch))
            return
        }
        if only == Self.probeWorkload {
            let probe = MachineProbe.measure(threads: threads)
            print("{\"computeSeconds\": \(round3(probe.computeSeconds)), \"memorySeconds\": \(round3(probe.memorySeconds)), \"threads\": \(threads)}")
            return
        }
        if only == Self.predictWorkload {
            print(try measureSegmentPredict())
            return
        }
        if let only {
            guard let workload = Self.workloadTable.first(where: { $0.name == only }) else {
                throw ValidationError("unknown workload \(only)")
            }
            print(measure(workload))
            return
        }
        let names = workloads.isEmpty ? Self.workloadTable.map(\.name) + Self.stageWorkloadNames : workloads
        // The machine probe before the first workload and after each one: its spread says how
        // much of the workloads' spread was the machine's.
        var results: [String] = [], probes: [String] = [try runOnly(Self.probeWorkload)]
        for name in names {
            FileHandle.standardError.write(Data("bench: \(name)…\n".utf8))
            results.append("    \"\(name)\": " + (try runOnly(name)))
            probes.append(try runOnly(Self.probeWorkload))
        }
        print("{\n  \"blas\": \"\(BLAS.provider)\",\n  \"blasVersion\": \"\(BLAS.version)\",\n  \"threads\": \(threads),\n"
              + "  \"workloads\": {\n" + results.joined(separator: ",\n") + "\n  },\n"
              + "  \"machineProbe\": {\"runs\": [\n    " + probes.joined(separator: ",\n    ") + "\n  ], "
              + probeSpread(probes) + "}\n}")
    }

    /// The JSON line of `bench --only name` run as a child process with this run's options.
    private func runOnly(_ name: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        process.arguments = ["--only", name, "--steps", "\(steps)", "--warmup", "\(warmup)", "--threads", "\(threads)", "--data", data]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The probe runs' spreads (slowest over fastest, minus one) as JSON fields.
    private func probeSpread(_ probes: [String]) -> String {
        let runs = probes.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Double] }
        func spread(_ key: String) -> Double {
            let values = runs.compactMap { $0[key] }
            guard let low = values.min(), let high = values.max(), low > 0 else { return 0 }
            return round3(high / low - 1)
        }
        return "\"computeSpread\": \(spread("computeSeconds")), \"memorySpread\": \(spread("memorySeconds"))"
    }

    struct Workload: Sendable {
        let name: String
        let images: Int
        /// Timed steps when fixed by the workload (nil: `--steps`), with no warm-up.
        var fixedSteps: Int? = nil
        /// Runs one step; returns forward FLOPs and whether it trains (3× forward FLOPs).
        let prepare: @Sendable () -> () -> (flops: Double, training: Bool)
    }

    static var workloads: [Workload] { workloadTable }

    static let workloadTable: [Workload] = [
        Workload(name: "classifier_train_256_b16", images: 16) {
            let (store, images, labels, _) = setup(size: 256, batch: 16, unet: false)
            var sgd = SGD(learningRate: 1e-3, momentum: 0.9, nesterov: true, decay: 1e-6)
            var g = SplitMix64(seed: 1)
            return { (classifierTrainStep(store: store, optimizer: &sgd, images: images, labels: labels, generator: &g).forwardFlops, true) }
        },
        // The shape of the real epoch (classify_epoch_224): kermany224 at its native size.
        Workload(name: "classifier_train_224_b16", images: 16) {
            let (store, images, labels, _) = setup(size: 224, batch: 16, unet: false)
            var sgd = SGD(learningRate: 1e-3, momentum: 0.9, nesterov: true, decay: 1e-6)
            var g = SplitMix64(seed: 1)
            return { (classifierTrainStep(store: store, optimizer: &sgd, images: images, labels: labels, generator: &g).forwardFlops, true) }
        },
        Workload(name: "classifier_infer_256_b16", images: 16) {
            let (store, images, _, _) = setup(size: 256, batch: 16, unet: false)
            return { (classifierPredict(store: store, images: images).forwardFlops, false) }
        },
        Workload(name: "unet_train_256_b8", images: 8) {
            let (store, images, _, masks) = setup(size: 256, batch: 8, unet: true)
            var adam = Adam(learningRate: 1e-3)
            var g = SplitMix64(seed: 1)
            return { (unetTrainStep(store: store, optimizer: &adam, images: images, masks: masks, generator: &g).forwardFlops, true) }
        },
        // The shape of the real epoch (segment_epoch_256): the lungs at 256², batch 4.
        Workload(name: "unet_train_256_b4", images: 4) {
            let (store, images, _, masks) = setup(size: 256, batch: 4, unet: true)
            var adam = Adam(learningRate: 1e-3)
            var g = SplitMix64(seed: 1)
            return { (unetTrainStep(store: store, optimizer: &adam, images: images, masks: masks, generator: &g).forwardFlops, true) }
        },
        Workload(name: "unet_train_512_b4", images: 4) {
            let (store, images, _, masks) = setup(size: 512, batch: 4, unet: true)
            var adam = Adam(learningRate: 1e-3)
            var g = SplitMix64(seed: 1)
            return { (unetTrainStep(store: store, optimizer: &adam, images: images, masks: masks, generator: &g).forwardFlops, true) }
        },
        // "Images" are prediction rows; one step reads the file, computes every metric, interval and
        // figure, and writes the artifact.
        Workload(name: "evaluate_1m_rows", images: 1_000_000, fixedSteps: 1) {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cxr-bench-\(getpid())").path
            let path = folder + "/predictions.csv"
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: path, contents: Data(predictionRows(1_000_000).utf8))
            return {
                do {
                    var config = try PipelineConfig.load(path: "pipeline.json", profile: "paper")
                    config.threads = Parallel.threads
                    let context = StageContext(config: config, artifacts: folder + "/artifacts", force: true)
                    _ = try runEvaluate(context, paths: [path], validationPaths: [], variant: "bench", settings: EvaluateSettings(
                        names: ["bench"], resamples: config.evaluate.bootstrapResamples, level: config.evaluate.confidenceLevel,
                        bins: config.evaluate.calibrationBins, renormalize: false, seed: 1))
                    try? FileManager.default.removeItem(atPath: folder)
                } catch {
                    try? FileManager.default.removeItem(atPath: folder)
                    fatalError("bench: evaluate_1m_rows (run from the repository root, beside pipeline.json): \(error)")
                }
                return (0, false)
            }
        },
    ]

    /// A prediction file of `n` rows: a random class per row and softmax probabilities of Gaussian
    /// logits with the true class's raised by 1.5 (MCC ≈ 0.65).
    static func predictionRows(_ n: Int) -> String {
        var g = SplitMix64(seed: 3)
        let names = ["bacterial", "normal", "viral"]
        var text = "image,label,p_bacterial,p_normal,p_viral\n"
        for i in 0..<n {
            let label = Int(g.next() % 3)
            let logits = (0..<3).map { k in g.normal() + (k == label ? 1.5 : 0) }
            let top = logits.max()!
            let e = logits.map { exp($0 - top) }
            let sum = e.reduce(0, +)
            text += "img\(i).png,\(names[label]),\(e[0] / sum),\(e[1] / sum),\(e[2] / sum)\n"
        }
        return text
    }

    static func setup(size: Int, batch: Int, unet: Bool) -> (ParameterStore, Tensor, Tensor, Tensor) {
        var g = SplitMix64(seed: 7)
        let images = Tensor(shape: [batch, size, size, 3], data: (0..<(batch * size * size * 3)).map { _ in Float(g.unit()) })
        let labels = Tensor(shape: [batch, 3], data: (0..<batch).flatMap { i in (0..<3).map { $0 == i % 3 ? Float(1) : 0 } })
        let masks = Tensor(shape: [batch, size, size, 1], data: (0..<(batch * size * size)).map { _ in g.unit() < 0.4 ? 1 : 0 })
        let store = unet ? UNet.parameters(seed: 1) : Classifier.parameters(seed: 1)
        return (store, images, labels, masks)
    }

    func measure(_ workload: Workload) -> String {
        let step = workload.prepare()
        for _ in 0..<(workload.fixedSteps == nil ? warmup : 0) { _ = step() }
        var times: [Double] = []
        var flops = 0.0, training = false
        for _ in 0..<max(1, workload.fixedSteps ?? steps) {
            let start = DispatchTime.now().uptimeNanoseconds
            (flops, training) = step()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let order = times.sorted()
        let median = order[order.count / 2]
        // Spread of the timed steps: the coefficient of variation (sample standard deviation over
        // the mean; 0 for one step), and the steps' own seconds in the order they ran.
        let mean = times.reduce(0, +) / Double(times.count)
        let variance = times.count > 1 ? times.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(times.count - 1) : 0
        let stepFlops = flops * (training ? 3 : 1)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let rssGiB = Double(usage.ru_maxrss) / 1024 / 1024
        return "{\"imagesPerSecond\": \(round3(Double(workload.images) / median)), \"medianStepSeconds\": \(round3(median)), "
            + "\"minStepSeconds\": \(round3(order[0])), \"maxStepSeconds\": \(round3(order[order.count - 1])), "
            + "\"stepCV\": \(round3(mean > 0 ? variance.squareRoot() / mean : 0)), \"stepSeconds\": [\(times.map { "\(round3($0))" }.joined(separator: ", "))], "
            + "\"gflopPerStep\": \(round3(stepFlops / 1e9)), \"gflopPerSecond\": \(round3(stepFlops / 1e9 / median)), "
            + "\"peakRSSGiB\": \(round3(rssGiB)), \"steps\": \(times.count), \"threads\": \(threads)}"
    }
}

/// One real training epoch through the stage executables beside `bench`.
struct EpochWorkload: Sendable {
    let name: String
    /// The prepare arguments (source relative to the data folder) and the training command.
    let source: String
    let layout: String
    let stage: [String]
}

extension Bench {
    static let epochWorkloads = [
        EpochWorkload(name: "segment_epoch_256", source: "pediatric-lungs", layout: "pairs",
                      stage: ["segment", "train", "--loss", "focal-tversky"]),
        EpochWorkload(name: "classify_epoch_224", source: "kermany224", layout: "kermany",
                      stage: ["classify-train", "--loss", "cce", "--encoder", "random"]),
    ]

    /// Prepares the workload's data set into a scratch store (untimed), trains one epoch at the
    /// `epoch` profile (timed, as the user waits for it: loading, steps, validation, writes) and
    /// reads where the time went from the artifact's manifest.
    func measureEpoch(_ workload: EpochWorkload) throws -> String {
        let source = data + "/" + workload.source
        guard FileManager.default.fileExists(atPath: source) else {
            return "{\"skipped\": \"no \(source)\"}"
        }
        let runner = try StageRunner(threads: threads)
        defer { runner.removeStore() }
        _ = try runner.run(["prepare", "--layout", workload.layout, "--source", source, "--name", "data"])
        let trained = try runner.run(workload.stage + ["--data", "data"])
        let folder = trained.folder, wall = trained.seconds
        guard let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json"))) as? [String: Any],
              let summary = manifest["summary"] as? [String: Any],
              let epoch = (summary["epochSeconds"] as? [Double])?.first, let steps = (summary["epochStepSeconds"] as? [Double])?.first,
              let validation = (summary["epochValidationSeconds"] as? [Double])?.first, let load = summary["loadSeconds"] as? Double
        else { throw ValidationError("bench: \(folder)/manifest.json has no epoch timing") }
        return "{\"wallSeconds\": \(round3(wall)), \"loadSeconds\": \(round3(load)), \"epochSeconds\": \(round3(epoch)), "
            + "\"stepSeconds\": \(round3(steps)), \"validationSeconds\": \(round3(validation)), "
            + "\"outsideStepsShare\": \(round3((wall - steps) / wall)), \"outsideStepsShareAfterLoading\": \(round3((epoch - steps) / epoch)), "
            + "\"peakRSSGiB\": \(round3(trained.peakRSSGiB)), \"threads\": \(threads)}"
    }

    static let predictWorkload = "segment_predict_cxr"
    static let probeWorkload = "machine_probe"
    static var stageWorkloadNames: [String] { epochWorkloads.map(\.name) + [predictWorkload] }

    /// `segment predict` of one U-Net over every image of kermany224 (its 5216 training images here;
    /// the collection's 5856 include the withheld test split), timed as the user waits for it:
    /// decode, resize to 256², forward, resample each probability map to its image's size,
    /// threshold, PNG-encode and write. Set-up (untimed): the data set prepared, and a
    /// U-Net trained one epoch on the committed lung subset (data/regress/lungs) at the `epoch`
    /// profile — the weights change only the masks' content, not the work.
    func measureSegmentPredict() throws -> String {
        let source = data + "/kermany224"
        guard FileManager.default.fileExists(atPath: source), FileManager.default.fileExists(atPath: "data/regress/lungs") else {
            return "{\"skipped\": \"no \(source) or data/regress/lungs (run from the repository root)\"}"
        }
        let runner = try StageRunner(threads: threads)
        defer { runner.removeStore() }
        _ = try runner.run(["prepare", "--layout", "pairs", "--source", "data/regress/lungs", "--name", "lungs"])
        let unet = try runner.run(["segment", "train", "--loss", "bce", "--data", "lungs"]).folder
        _ = try runner.run(["prepare", "--layout", "kermany", "--source", source, "--name", "cxr"])
        let predicted = try runner.run(["segment", "predict", "--model", unet, "--data", "cxr"])
        guard let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: predicted.folder + "/manifest.json"))) as? [String: Any],
              let summary = manifest["summary"] as? [String: Any], let images = summary["images"] as? Double
        else { throw ValidationError("bench: \(predicted.folder)/manifest.json has no image count") }
        return "{\"wallSeconds\": \(round3(predicted.seconds)), \"images\": \(Int(images)), "
            + "\"imagesPerSecond\": \(round3(images / predicted.seconds)), \"peakRSSGiB\": \(round3(predicted.peakRSSGiB)), \"threads\": \(threads)}"
    }
}

/// Runs the stage executables beside `bench` into a scratch store at the `epoch` profile, each as
/// its own process whose wall time and peak RSS are its own (`wait4`, not the sum over children).
struct StageRunner {
    let threads: Int
    let bin: String
    let store: String

    init(threads: Int) throws {
        self.threads = threads
        bin = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.deletingLastPathComponent().path
        store = FileManager.default.temporaryDirectory.appendingPathComponent("cxr-bench-stage-\(getpid())").path
    }

    func removeStore() { try? FileManager.default.removeItem(atPath: store) }

    /// Runs `bin/arguments[0]` with the rest and the common flags; returns the folder it printed
    /// last, its wall seconds and its peak RSS.
    func run(_ arguments: [String]) throws -> (folder: String, seconds: Double, peakRSSGiB: Double) {
        let common = ["--config", "pipeline.json", "--profile", "epoch", "--artifacts", store, "--threads", "\(threads)", "--progress", "none"]
        let argv = [bin + "/" + arguments[0]] + Array(arguments.dropFirst()) + common
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw ValidationError("bench: pipe failed (errno \(errno))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for p in cArguments { free(p) } }
        let started = DispatchTime.now().uptimeNanoseconds
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            throw ValidationError("bench: cannot start \(argv[0]) (errno \(spawned))")
        }
        var output: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(pipe[0], &buffer, buffer.count)
            if n > 0 { output += buffer[0..<n] } else if n == 0 || errno != EINTR { break }
        }
        close(pipe[0])
        var status: Int32 = 0, usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let text = String(decoding: output, as: UTF8.self)
        // Exited normally (low 7 bits 0) with code 0.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0, let last = text.split(separator: "\n").last else {
            throw ValidationError("bench: \(arguments.joined(separator: " ")) failed (wait status \(status))")
        }
        return (String(last), seconds, Double(usage.ru_maxrss) / 1024 / 1024)
    }
}

private func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }

Bench.main()
