import Foundation
import XCTest

/// `pdb checksum`: two copies of a partition with the same content print the same sum.
final class ChecksumCommandTests: PDBTestCase {
    func testCopiesWithTheSameContentHaveTheSameChecksum() throws {
        try makeDatabase()
        let puts = (0..<50).map { #"{"op":"put","table":"t","key":"k\#($0)","value":"v\#($0)","owner":"alice"}"# }
        assertExit(try pdb("apply", db, "users", stdin: (puts + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
        let result = try pdb("checksum", db, "users", "--json")
        assertExit(result, 0)
        let sum = try result.object()
        XCTAssertEqual(sum["partition"] as? String, "users")
        XCTAssertEqual(sum["lsn"] as? Int, 1)
        XCTAssertEqual(sum["tables"] as? Int, 1)
        XCTAssertEqual(sum["records"] as? Int, 50)
        let sha = try XCTUnwrap(sum["sha256"] as? String)
        XCTAssertNotNil(sha.wholeMatch(of: /[0-9a-f]{64}/), sha)

        // A restored backup in another database, and the compacted original, sum the same.
        let backup = root.appendingPathComponent("users.backup").path
        assertExit(try pdb("backup", db, "users", backup), 0)
        let other = root.appendingPathComponent("other").path
        assertExit(try pdb("init", other, "--region", "eu"), 0)
        assertExit(try pdb("restore", other, backup), 0)
        XCTAssertEqual(try pdb("checksum", other, "users", "--json").stdout, result.stdout)
        assertExit(try pdb("compact", db, "users"), 0)
        XCTAssertEqual(try pdb("checksum", db, "users", "--json").stdout, result.stdout)

        let human = try pdb("checksum", db, "users")
        assertExit(human, 0)
        XCTAssertEqual(human.stdout, "users at LSN 1: sha256 \(sha) (1 table, 50 records)\n")

        // One changed value, one other sum (the other database has its own directory).
        assertExit(try pdb("home", "set", other, "alice", "eu"), 0)
        assertExit(try pdb("put", other, "users", "t", "k7", "changed", "--owner", "alice"), 0)
        let changed = try pdb("checksum", other, "users", "--json")
        XCTAssertNotEqual(try changed.object()["sha256"] as? String, sha)
        XCTAssertEqual(try changed.object()["lsn"] as? Int, 2)

        let missing = try pdb("checksum", db, "nope", "--json")
        assertExit(missing, 1)
        XCTAssertEqual(try missing.errorCode(), "no_such_partition")
    }
}
