import Foundation
import XCTest

/// `pdb compact`, `pdb backup` and `pdb restore`.
final class MaintenanceCommandTests: PDBTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeDatabase()
        let value = String(repeating: "x", count: 300)
        let puts = (0..<400).map { #"{"op":"put","table":"t","key":"key\#($0)","value":"\#(value)","owner":"alice"}"# }
        let dels = (0..<390).map { #"{"op":"del","table":"t","key":"key\#($0)"}"# }
        let input = puts + [#"{"op":"commit"}"#] + dels + [#"{"op":"commit"}"#]
        assertExit(try pdb("apply", db, "users", stdin: input.joined(separator: "\n")), 0)
    }

    func testCompactShrinksAndKeepsContent() throws {
        let before = try pdb("scan", db, "users", "t", "--json")
        let result = try pdb("compact", db, "users", "--json")
        assertExit(result, 0)
        let report = try result.object()
        let pagesBefore = try XCTUnwrap(report["pages_before"] as? Int)
        let pagesAfter = try XCTUnwrap(report["pages_after"] as? Int)
        XCTAssertLessThan(pagesAfter, pagesBefore)
        XCTAssertLessThan(try XCTUnwrap(report["bytes_after"] as? Int), try XCTUnwrap(report["bytes_before"] as? Int))
        XCTAssertEqual(report["partition"] as? String, "users")
        XCTAssertEqual(try pdb("scan", db, "users", "t", "--json").stdout, before.stdout)
        assertExit(try pdb("check", db), 0)
        let human = try pdb("compact", db, "users")
        assertExit(human, 0)
        XCTAssertTrue(human.stdout.hasPrefix("compacted users: "), human.stdout)
    }

    func testBackupAndRestoreUnderAnotherName() throws {
        let file = root.appendingPathComponent("users.backup").path
        let backup = try pdb("backup", db, "users", file, "--json")
        assertExit(backup, 0)
        let summary = try backup.object()
        XCTAssertEqual(summary["lsn"] as? Int, 2)
        XCTAssertGreaterThan(try XCTUnwrap(summary["pages"] as? Int), 0)
        XCTAssertGreaterThan(try XCTUnwrap(summary["bytes"] as? Int), 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: file))

        // Changes after the backup are not in it.
        assertExit(try pdb("put", db, "users", "t", "later", "v", "--owner", "alice"), 0)

        let restore = try pdb("restore", db, file, "--as", "restored", "--json")
        assertExit(restore, 0)
        XCTAssertEqual(try restore.object()["partition"] as? String, "restored")
        XCTAssertEqual(try restore.object()["lsn"] as? Int, 2)
        let restored = try pdb("scan", db, "restored", "t", "--json")
        assertExit(restored, 0)
        XCTAssertEqual(restored.lines.count, 10)
        XCTAssertFalse(restored.stdout.contains("later"))

        let again = try pdb("restore", db, file, "--as", "restored", "--json")
        assertExit(again, 1)
        XCTAssertEqual(try again.errorCode(), "partition_exists")
        assertExit(try pdb("restore", db, file, "--as", "users", "--replace"), 0)
        XCTAssertEqual(try pdb("scan", db, "users", "t", "--json").lines.count, 10)
        assertExit(try pdb("check", db), 0)

        // A backup of another region's partition is refused.
        let us = root.appendingPathComponent("us").path
        assertExit(try pdb("init", us, "--region", "us"), 0)
        let refused = try pdb("restore", us, file, "--json")
        assertExit(refused, 1)
        XCTAssertEqual(try refused.errorCode(), "region_mismatch")
        XCTAssertFalse(FileManager.default.fileExists(atPath: us + "/users.pdb"))

        let garbage = root.appendingPathComponent("garbage").path
        try Data("not a backup".utf8).write(to: URL(fileURLWithPath: garbage))
        let bad = try pdb("restore", db, garbage, "--json")
        assertExit(bad, 1)
        XCTAssertEqual(try bad.errorCode(), "bad_backup")
    }
}
