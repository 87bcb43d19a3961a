// SHA-256 against the FIPS 180-2 vectors, CSV quoting, seeded streams, patient ids.

import SeededRandom
import XCTest
@testable import Artifacts
@testable import Datasets

final class SupportTests: XCTestCase {
    /// Through the SHA extensions (where this CPU has them) and the portable code, and the two agree
    /// on every length around the block and padding boundaries, fed whole or in pieces.
    func testSHA256MatchesTheFIPSVectors() {
        let hardware = SHA256.hardware
        defer { SHA256.hardware = hardware }
        var digests: [[String]] = []
        for useHardware in hardware ? [true, false] : [false] {
            SHA256.hardware = useHardware
            checkFIPSVectors()
            var g = SplitMix64(seed: 9)
            let bytes = (0..<300).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            digests.append((0...bytes.count).map { n in
                var pieces = SHA256()
                pieces.update(bytes[0..<n / 3])
                pieces.update(bytes[(n / 3)..<n])
                XCTAssertEqual(pieces.hexDigest(), SHA256.hex(bytes[0..<n]), "\(n) bytes in two pieces")
                return SHA256.hex(bytes[0..<n])
            })
        }
        if digests.count == 2 { XCTAssertEqual(digests[0], digests[1], "SHA extensions against the portable code") }
    }

    func checkFIPSVectors() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var hasher = SHA256()  // one million 'a', fed in uneven pieces
        var fed = 0
        var piece = 1
        while fed < 1_000_000 {
            let n = min(piece, 1_000_000 - fed)
            hasher.update([UInt8](repeating: 0x61, count: n))
            fed += n
            piece = piece * 3 % 997 + 1
        }
        XCTAssertEqual(hasher.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testCSVRoundTripsAwkwardFields() throws {
        let rows = [["a,b", "say \"hi\"", ""], ["line\nbreak", "plain", "x"]]
        let text = csvText(header: ["one", "two", "three"], rows: rows)
        XCTAssertEqual(try parseCSV(text), [["one", "two", "three"]] + rows)
        XCTAssertEqual(try parseCSV("a,b\r\n1,2"), [["a", "b"], ["1", "2"]])
        XCTAssertThrowsError(try parseCSV("a\n\"open")) { XCTAssertEqual(($0 as? CSVError)?.line, 2) }
    }

    func testStreamsAreIndependentAndRepeatable() {
        var a = SplitMix64(seed: 9, stream: 1), b = SplitMix64(seed: 9, stream: 1), c = SplitMix64(seed: 9, stream: 2)
        let first = (0..<4).map { _ in a.next() }
        XCTAssertEqual(first, (0..<4).map { _ in b.next() })
        XCTAssertNotEqual(first, (0..<4).map { _ in c.next() })
        // SplitMix64 reference output for seed 0 (Vigna's splitmix64.c).
        var zero = SplitMix64(seed: 0)
        XCTAssertEqual(zero.next(), 0xE220_A839_7B1D_CDAF)
        var items = Array(0..<10), again = Array(0..<10)
        var g1 = SplitMix64(seed: 3), g2 = SplitMix64(seed: 3)
        seededShuffle(&items, &g1)
        seededShuffle(&again, &g2)
        XCTAssertEqual(items, again)
        XCTAssertEqual(items.sorted(), Array(0..<10))
        XCTAssertNotEqual(items, Array(0..<10))
    }

    func testPatientIDsFollowThePublicNamingConventions() {
        XCTAssertEqual(patientID("person1000_bacteria_2931.jpeg"), "person1000")
        XCTAssertEqual(patientID("person12_virus_44.jpeg"), "person12")
        XCTAssertEqual(patientID("IM-0115-0001.jpeg"), "IM-0115")
        XCTAssertEqual(patientID("NORMAL2-IM-1427-0001.jpeg"), "NORMAL2-IM-1427")
        XCTAssertEqual(patientID("MCUCXR_0001_0.png"), "MCUCXR_0001")
        XCTAssertEqual(patientID("CHNCXR_0327_1.png"), "CHNCXR_0327")
        XCTAssertEqual(patientID("scan7.png"), "scan7")
    }

    func testArtifactKeysChangeWithEveryIngredient() throws {
        struct Slice: Encodable { var epochs: Int }
        let base = try ArtifactStore.key(stage: "s", config: Slice(epochs: 1), inputKeys: ["a"], formatVersion: 1)
        XCTAssertEqual(base.count, 16)
        XCTAssertEqual(base, try ArtifactStore.key(stage: "s", config: Slice(epochs: 1), inputKeys: ["a"], formatVersion: 1))
        XCTAssertNotEqual(base, try ArtifactStore.key(stage: "t", config: Slice(epochs: 1), inputKeys: ["a"], formatVersion: 1))
        XCTAssertNotEqual(base, try ArtifactStore.key(stage: "s", config: Slice(epochs: 2), inputKeys: ["a"], formatVersion: 1))
        XCTAssertNotEqual(base, try ArtifactStore.key(stage: "s", config: Slice(epochs: 1), inputKeys: ["b"], formatVersion: 1))
        XCTAssertNotEqual(base, try ArtifactStore.key(stage: "s", config: Slice(epochs: 1), inputKeys: ["a"], formatVersion: 2))
    }
}
