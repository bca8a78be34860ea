import Foundation
import XCTest

/// `pdb scan` ranges, order, limits and JSON lines.
final class ScanCommandTests: PDBTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeDatabase()
        let keys = ["a1", "a2", "a3", "b1", "b2", "c1"]
        let input = keys.map { #"{"op":"put","table":"k","key":"\#($0)","value":"v\#($0)","owner":"alice"}"# }
        assertExit(try pdb("apply", db, "users", stdin: (input + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
    }

    /// The keys `scan --json` prints with `options`.
    func keys(_ options: String...) throws -> [String] {
        let result = try run(["scan", db, "users", "k", "--json"] + options)
        assertExit(result, 0)
        return try result.objects().map { try XCTUnwrap($0["key"] as? String) }
    }

    func testRangesOrderAndLimit() throws {
        XCTAssertEqual(try keys(), ["a1", "a2", "a3", "b1", "b2", "c1"])
        XCTAssertEqual(try keys("--prefix", "a"), ["a1", "a2", "a3"])
        XCTAssertEqual(try keys("--prefix", "b2"), ["b2"])
        XCTAssertEqual(try keys("--prefix", "z"), [])
        // --from is inclusive, --to exclusive.
        XCTAssertEqual(try keys("--from", "a2", "--to", "b2"), ["a2", "a3", "b1"])
        XCTAssertEqual(try keys("--from", "a25"), ["a3", "b1", "b2", "c1"])
        XCTAssertEqual(try keys("--to", "a3"), ["a1", "a2"])
        XCTAssertEqual(try keys("--reverse"), ["c1", "b2", "b1", "a3", "a2", "a1"])
        XCTAssertEqual(try keys("--reverse", "--from", "a2", "--to", "b2"), ["b1", "a3", "a2"])
        XCTAssertEqual(try keys("--limit", "2"), ["a1", "a2"])
        XCTAssertEqual(try keys("--reverse", "--limit", "2"), ["c1", "b2"])
        XCTAssertEqual(try keys("--limit", "0"), [])
        XCTAssertEqual(try keys("--prefix", "a", "--from", "a2"), ["a2", "a3"])
        XCTAssertEqual(try keys("--prefix", "a", "--to", "a3", "--reverse"), ["a2", "a1"])
        XCTAssertEqual(try keys("--from", "b", "--to", "a"), [])
        let base64 = Data("b".utf8).base64EncodedString()
        XCTAssertEqual(try keys("--prefix", base64, "--keys-b64"), ["b1", "b2"])
    }

    func testJSONLinesHaveTheApplyShape() throws {
        let result = try pdb("scan", db, "users", "k", "--json", "--prefix", "c", "--with-commit")
        assertExit(result, 0)
        XCTAssertEqual(
            result.lines,
            [#"{"key":"c1","op":"put","owner":"alice","table":"k","value":"vc1"}"#, #"{"op":"commit"}"#])
    }

    func testHumanOutput() throws {
        let result = try pdb("scan", db, "users", "k", "--prefix", "b")
        assertExit(result, 0)
        XCTAssertEqual(result.lines, ["b1 = vb1  (owner alice)", "b2 = vb2  (owner alice)", "2 records"])
        let missing = try pdb("scan", db, "users", "nope")
        assertExit(missing, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("error: "), missing.stderr)
    }
}
