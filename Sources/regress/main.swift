// `regress`: the CI regression on the committed real subset — rebuild the subset, record what a
// run of the study produced (regress.json), compare it with the committed baseline.

import ArgumentParser
import Artifacts
import Engine
import Foundation
import Regression

struct RegressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regress",
        abstract: "Regression of the whole study on a small real subset against a committed baseline (see `make regress`).",
        subcommands: [Subset.self, Record.self, Compare.self])
}

struct Subset: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild data/regress/ from the development data.",
        discussion: """
            Draws, reproducibly (seeded), 30 training and 10 test chest X-rays per class from \
            SOURCE/kermany224/train (one image per patient, copied byte for byte) and 40 lung image/mask \
            pairs from SOURCE/pediatric-lungs (reduced to 256 px on the long side: images by area \
            averaging as JPEG, masks by nearest neighbour as PNG). Every patient appears once. Writes \
            OUT/kermany, OUT/lungs and OUT/subset.json (each file's source and its SHA-256); other files \
            in OUT (the baselines) are kept.
            """)

    @Option(help: "The development data folder (holding kermany224/ and pediatric-lungs/).")
    var source = "../shared/data"

    @Option(help: "Where the subset goes.")
    var out = "data/regress"

    func run() throws {
        try reportingErrors("regress subset") {
            let summary = try buildSubset(source: source, out: out)
            print("regress subset: \(summary.files.count) files, \(summary.bytes / 1024) KiB in \(out)")
        }
    }
}

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write regress.json for the study a report artifact was made from.",
        discussion: """
            Walks the manifests from the report artifact upstream and records, per stage run, its key, \
            the SHA-256 of each output (the report's own text, which holds wall times and the commit, is \
            listed but not hashed) and the headline numbers (Dice, accuracy, MCC, AUROC, ensemble \
            weights, Grad-CAM lung share, …), with the build: BLAS and the kernels it chose for this CPU, \
            convolution algorithm, threads.
            """)

    @Option(help: "The report artifact folder of the run (make regress prints it).")
    var report: String

    @Option(help: "The artifact store the run wrote.")
    var artifacts = "artifacts-regress"

    @Option(help: "Where to write the record.")
    var out = "regress.json"

    func run() throws {
        try reportingErrors("regress record") {
            let store = ArtifactStore(root: artifacts, environment: RunEnvironment(threads: 1, blasProvider: BLAS.provider, convolution: ""))
            guard let manifest = store.completeManifest(at: report) else {
                throw ArtifactError.incomplete(path: report, message: "not a complete artifact")
            }
            let build = RegressionBuild(blas: manifest.blasProvider, blasKernel: BLAS.kernel,
                                        convolution: manifest.convolution ?? "winograd", threads: manifest.threads)
            let record = try recordRegression(report: report, store: store, build: build)
            try writeFileAtomically(try canonicalJSON(record) + Array("\n".utf8), to: out)
            print("regress: \(record.runs.count) stage runs recorded in \(out) (\(build))")
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a record with the baseline; exit 1 when anything differs.",
        discussion: """
            Matches stage runs by stage and variant. Between records of a like build (same BLAS, kernels, \
            convolution, threads) keys, output bytes and headline numbers must be equal, exactly. Against \
            a baseline of another build only the datasets (in full) and the U-Nets' keys are compared — \
            training diverges from the first differently rounded bit — and a warning says so. Prints a table of \
            what differs, naming the first stage run that diverged on its own; runs downstream of it are \
            marked as its consequence. Exit status 0: no difference; 1: differences; 66: unreadable record.
            """)

    @Argument(help: "The record of this run (regress.json).")
    var current = "regress.json"

    @Option(help: "The baseline record.")
    var baseline = "data/regress/baseline.json"

    func run() throws {
        let (now, then) = try reportingErrors("regress compare") {
            (try decodeJSON(RegressionRecord.self, from: try readFile(current)),
             try decodeJSON(RegressionRecord.self, from: try readFile(baseline)))
        }
        let comparison = compare(now, baseline: then)
        print(describe(comparison, baselinePath: baseline))
        if !comparison.passed { throw ExitCode(1) }
    }
}

/// Runs `body`; an error is printed as "COMMAND: error: …" and exits 66 (unreadable input).
func reportingErrors<T>(_ command: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        FileHandle.standardError.write(Data("\(command): error: \(error)\n".utf8))
        throw ExitCode(66)
    }
}

RegressCommand.main()
