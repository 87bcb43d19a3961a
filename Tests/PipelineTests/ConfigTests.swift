// pipeline.json: the repository's own file in every profile, and errors that name the key.

import Foundation
import TestSupport
import XCTest
@testable import Pipeline

final class ConfigTests: XCTestCase {
    /// The repository's pipeline.json.
    static let repositoryConfig = Repository.config

    func testRepositoryConfigLoadsInEveryProfile() throws {
        let paper = try PipelineConfig.load(path: Self.repositoryConfig, profile: "paper")
        XCTAssertEqual(paper.prepare.validationFraction, 0.1)  // SPEC §0
        let ci = try PipelineConfig.load(path: Self.repositoryConfig, profile: "ci")
        XCTAssertLessThan(ci.synthetic.size, paper.synthetic.size)
        XCTAssertEqual(ci.prepare, paper.prepare)  // a profile overrides only what it names
        XCTAssertNoThrow(try PipelineConfig.load(path: Self.repositoryConfig, profile: "demo"))
    }

    private func parse(_ edit: (inout [String: Any]) -> Void, profile: String = "paper") throws -> PipelineConfig {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.repositoryConfig))
        var tree = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        edit(&tree)
        return try PipelineConfig.parse(JSONSerialization.data(withJSONObject: tree), path: "p.json", profile: profile)
    }

    private func assertError(_ expected: ConfigError, profile: String = "paper",
                             _ edit: (inout [String: Any]) -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try parse(edit, profile: profile), line: line) { error in
            XCTAssertEqual(error as? ConfigError, expected, line: line)
        }
    }

    func testUnknownKeysAreNamedWithTheirPath() {
        assertError(.unknownKey(path: "p.json", key: "prepare.validatonFraction")) { tree in
            var prepare = tree["prepare"] as! [String: Any]
            prepare["validatonFraction"] = 0.2
            tree["prepare"] = prepare
        }
        assertError(.unknownKey(path: "p.json", key: "epochs")) { $0["epochs"] = 3 }
        assertError(.unknownKey(path: "p.json", key: "synthetic.sise"), profile: "ci") { tree in
            var profiles = tree["profiles"] as! [String: Any]
            profiles["ci"] = ["synthetic": ["sise": 64]]
            tree["profiles"] = profiles
        }
    }

    func testWrongTypesAndMissingKeysAreNamed() {
        assertError(.wrongType(path: "p.json", key: "synthetic.size", expected: "an integer")) { tree in
            var synthetic = tree["synthetic"] as! [String: Any]
            synthetic["size"] = "big"
            tree["synthetic"] = synthetic
        }
        assertError(.missingKey(path: "p.json", key: "threads")) { $0.removeValue(forKey: "threads") }
        assertError(.badValue(path: "p.json", key: "threads", message: "must be at least 1")) { $0["threads"] = 0 }
    }

    func testNamedChoicesAreDecodedOnceAndUnknownOnesListTheChoices() throws {
        let paper = try PipelineConfig.load(path: Self.repositoryConfig, profile: "paper")
        XCTAssertEqual(paper.classify.encoder, .unet(.focalTversky))
        XCTAssertEqual(paper.classify.interpolation, .nearestPIL)
        XCTAssertEqual(paper.segment.selectionMetric, .dice)
        for (section, key, value) in [("classify", "interpolation", "bogus"), ("segment", "selectionMetric", "f1"),
                                      ("classify", "encoder", "unet"), ("crop", "interpolation", "lanczos")] {
            XCTAssertThrowsError(try parse { tree in
                var part = tree[section] as! [String: Any]
                part[key] = value
                tree[section] = part
            }) { error in
                guard case let .badValue(path, badKey, message)? = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, "p.json")
                XCTAssertEqual(badKey, "\(section).\(key)")
                XCTAssertTrue(message.contains("'\(value)' must be one of"), message)
            }
        }
    }

    func testHolesAHostileUserFound() throws {
        // A fraction where an integer belongs names its key (Foundation's own error names none).
        assertError(.wrongType(path: "p.json", key: "classify.batchSize", expected: "an integer")) { tree in
            var classify = tree["classify"] as! [String: Any]
            classify["batchSize"] = 2.5
            tree["classify"] = classify
        }
        // The base must be valid even where the chosen profile overrides the key.
        assertError(.wrongType(path: "p.json", key: "classify.epochs (in the base configuration)", expected: "an integer"), profile: "quick") { tree in
            var classify = tree["classify"] as! [String: Any]
            classify["epochs"] = "many"
            tree["classify"] = classify
        }
        // A negative learning rate would train by gradient ascent.
        for section in ["segment", "classify"] {
            assertError(.badValue(path: "p.json", key: section + ".learningRate", message: "must be positive")) { tree in
                var part = tree[section] as! [String: Any]
                part["learningRate"] = -0.1
                tree[section] = part
            }
        }
        // A number out of range, and a folder given as the file.
        let text = try String(contentsOfFile: Self.repositoryConfig, encoding: .utf8).replacingOccurrences(of: "\"seed\": 42", with: "\"seed\": 1e999")
        XCTAssertThrowsError(try PipelineConfig.parse(Data(text.utf8), path: "p.json", profile: "paper")) { error in
            guard case let .badValue(_, key, message)? = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "seed")
            XCTAssertTrue(message.contains("out of range"), message)
        }
        XCTAssertThrowsError(try PipelineConfig.load(path: NSTemporaryDirectory(), profile: "paper")) { error in
            XCTAssertEqual(error as? ConfigError, .unreadable(path: NSTemporaryDirectory(), message: "a folder, not a configuration file"))
        }
    }

    func testUnknownProfileAndInvalidJSON() throws {
        assertError(.unknownProfile(path: "p.json", name: "fastest", known: ["ci", "demo", "epoch", "fast", "paper", "quick", "regress"]), profile: "fastest") { _ in }
        XCTAssertThrowsError(try PipelineConfig.parse(Data("{\"seed\": ".utf8), path: "p.json", profile: "paper")) { error in
            guard case .invalidJSON(path: "p.json", _) = error as? ConfigError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try PipelineConfig.load(path: "/nonexistent/pipeline.json", profile: "paper")) { error in
            XCTAssertEqual(error as? ConfigError, .unreadable(path: "/nonexistent/pipeline.json", message: "no such file"))
        }
    }
}
