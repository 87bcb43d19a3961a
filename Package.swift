// swift-tools-version:6.0
//
// The package layout tells the architecture (DESIGN §3): C shims over the system libraries,
// libraries holding all logic, and one thin executable per pipeline stage.

import PackageDescription
import Foundation

/// The BLAS provider is chosen at build time: `CXR_BLAS=blis` (the default of a plain `swift build`)
/// or `CXR_BLAS=openblas`. The Makefile sets it to the provider measured faster on the CPU at hand
/// (README, "Choosing the BLAS") and builds each in its own scratch folder, so switching never
/// reuses stale objects.
let environment = ProcessInfo.processInfo.environment
let blasProvider = environment["CXR_BLAS"] ?? "blis"
let blasLibrary: String
let blasDefine: String
switch blasProvider {
case "openblas":
    blasLibrary = "openblas"
    blasDefine = "CXR_BLAS_OPENBLAS"
default:
    blasLibrary = "blis"
    blasDefine = "CXR_BLAS_BLIS"
}

/// The instruction set the numeric code is compiled for: `CXR_TARGET_CPU` (an LLVM CPU name such as
/// `haswell`, AVX2 with FMA, or `skylake-avx512`). The Makefile sets it from this machine's CPU; unset,
/// the compiler's baseline (x86-64 with SSE2) is used. `CXR_VECTOR_BITS=512` lets loops vectorise
/// 16 floats wide on AVX-512 CPUs, for which LLVM otherwise stays at 256 bits (its `prefer-256-bit`
/// tuning, removed through Clang's target features, which Swift's code generation shares). Swift
/// never contracts a·b + c into an FMA nor reorders sums on its own, so the wider vectors change
/// speed only, not one bit of a result.
let targetCPU = environment["CXR_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let wideVectors = environment["CXR_VECTOR_BITS"] == "512"

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
] + (targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? [])
  + (wideVectors ? [.unsafeFlags(["-Xcc", "-Xclang", "-Xcc", "-target-feature", "-Xcc", "-Xclang", "-Xcc", "-prefer-256-bit"])] : [])

let package = Package(
    name: "MultiLossCXR",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "prepare", targets: ["prepare"]),
        .executable(name: "evaluate", targets: ["evaluate"]),
        .executable(name: "bench", targets: ["bench"]),
        .executable(name: "classify-train", targets: ["classify-train"]),
        .executable(name: "segment", targets: ["segment"]),
        .executable(name: "mask-crop", targets: ["mask-crop"]),
        .executable(name: "ensemble", targets: ["ensemble"]),
        .executable(name: "gradcam", targets: ["gradcam"]),
        .executable(name: "report", targets: ["report"]),
        .executable(name: "fuzz-decoders", targets: ["fuzz-decoders"]),
        .executable(name: "regress", targets: ["regress"]),
        .executable(name: "import-weights", targets: ["import-weights"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries, reached through module maps (CBLAS has no `link`: the provider is linked below).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        // Header only: compiler intrinsics (prefetch for the bootstrap's curve pass, vector square roots for Adam).
        .systemLibrary(name: "CIntrinsics", path: "Sources/CIntrinsics"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg-dev"])]),
        // C shims: setjmp/longjmp error handling for the codecs, provider-specific BLAS controls.
        .target(name: "CCodecs", dependencies: ["CPNG", "CJPEG"]),
        .target(name: "CBLASRuntime", dependencies: ["CBLAS"],
                cSettings: [.define(blasDefine)],
                linkerSettings: [.linkedLibrary(blasLibrary)]),

        // Libraries, bottom to top (docs/ARCHITECTURE.md): each imports only those above it.
        .target(name: "SeededRandom", swiftSettings: swiftSettings),
        .target(name: "CSHA"),
        .target(name: "Artifacts", dependencies: ["CSHA"], swiftSettings: swiftSettings),
        .target(name: "Imaging", dependencies: ["CCodecs", "Artifacts"], swiftSettings: swiftSettings),
        .target(name: "Engine", dependencies: ["CBLAS", "CBLASRuntime", "CIntrinsics", "SeededRandom", "Artifacts"], swiftSettings: swiftSettings),
        .target(name: "Losses", dependencies: ["Engine"], swiftSettings: swiftSettings),
        .target(name: "Models", dependencies: ["Engine", "SeededRandom"], swiftSettings: swiftSettings),
        .target(name: "Metrics", dependencies: ["Artifacts", "CIntrinsics", "SeededRandom"], swiftSettings: swiftSettings),
        .target(name: "Report", dependencies: ["Metrics"], swiftSettings: swiftSettings),
        .target(name: "Ensembles", dependencies: ["Metrics", "SeededRandom"], swiftSettings: swiftSettings),
        .target(name: "GradCAM", dependencies: ["Engine", "Models", "Imaging"], swiftSettings: swiftSettings),
        .target(name: "Datasets", dependencies: ["Artifacts", "Imaging", "Metrics", "SeededRandom"], swiftSettings: swiftSettings),
        .target(name: "Synthetic", dependencies: ["Artifacts", "Datasets", "Imaging", "SeededRandom"], swiftSettings: swiftSettings),
        .target(name: "Training", dependencies: ["Artifacts", "Datasets", "Engine", "Imaging", "Losses", "Metrics", "Models",
                                                 "Report", "SeededRandom"],
                swiftSettings: swiftSettings),
        .target(name: "Pipeline", dependencies: ["Artifacts", "Datasets", "Engine", "Ensembles", "GradCAM", "Imaging", "Losses", "Metrics", "Models",
                                                 "Report", "SeededRandom", "Synthetic", "Training"],
                swiftSettings: swiftSettings),
        .target(name: "Regression", dependencies: ["Pipeline", "Artifacts", "Datasets", "Imaging", "Metrics", "SeededRandom"],
                swiftSettings: swiftSettings),
        .target(name: "StageCLI",
                dependencies: ["Pipeline", "Artifacts", "Datasets", "Engine", "Training",
                               .product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: swiftSettings),

        // Stages: thin executables.
        .executableTarget(name: "prepare", dependencies: ["StageCLI", "Pipeline"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "evaluate", dependencies: ["StageCLI", "Pipeline"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "classify-train", dependencies: ["StageCLI", "Pipeline", "Losses"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "segment", dependencies: ["StageCLI", "Pipeline", "Losses"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "mask-crop", dependencies: ["StageCLI", "Pipeline"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "ensemble", dependencies: ["StageCLI", "Pipeline", "Ensembles", "Losses", "Artifacts"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "gradcam", dependencies: ["StageCLI", "Pipeline", "GradCAM", "Models", "Artifacts"],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "report", dependencies: ["StageCLI", "Pipeline"], swiftSettings: swiftSettings),
        .executableTarget(name: "import-weights", dependencies: ["StageCLI", "Pipeline", "Models",
                                                                  .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "fuzz-decoders", dependencies: ["Imaging", "SeededRandom",
                                                                 .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "regress", dependencies: ["Regression", "Artifacts", "Engine",
                                                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "bench", dependencies: ["Engine", "Models", "Pipeline", "SeededRandom", "Training",
                                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),

        // Shared test set-up: scratch folders, global-switch scopes, running stage executables.
        .target(name: "TestSupport", dependencies: ["Engine"], path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "Artifacts"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Artifacts", "Datasets", "GradCAM", "Imaging", "Losses", "Metrics", "Models",
                                                          "Engine", "Report", "SeededRandom", "Synthetic", "Training", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Models", "Losses", "SeededRandom", "Synthetic", "Training", "GradCAM", "Artifacts",
                                                        "Imaging", "TestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "EnsembleTests", dependencies: ["Ensembles", "Metrics", "SeededRandom"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "MetricsTests", dependencies: ["Metrics", "Datasets", "Report", "SeededRandom"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "RegressionTests", dependencies: ["Regression", "Artifacts", "Metrics", "TestSupport"],
                    swiftSettings: swiftSettings),
        // End-to-end: runs the stage executables as a user would, checking exit codes and output.
        .testTarget(name: "CLITests", dependencies: ["prepare", "evaluate", "classify-train", "segment", "mask-crop", "ensemble", "gradcam", "Imaging",
                                                     "Artifacts", "TestSupport"],
                    swiftSettings: swiftSettings),
    ]
)
