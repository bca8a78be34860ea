import Foundation
import XCTest

/// `pdb check` on clean and damaged databases.
final class CheckCommandTests: PDBTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeDatabase()
        let input = (0..<200).map {
            #"{"op":"put","table":"t","key":"key\#($0)","value":"value \#($0)","owner":"alice"}"#
        }
        assertExit(try pdb("apply", db, "users", stdin: (input + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
    }

    func testCleanDatabaseExitsZero() throws {
        let result = try pdb("check", db, "--json")
        assertExit(result, 0)
        let report = try result.object()
        XCTAssertEqual(report["clean"] as? Bool, true)
        let partitions = try XCTUnwrap(report["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.compactMap { $0["name"] as? String }, ["global", "users"])
        for partition in partitions {
            XCTAssertEqual(partition["clean"] as? Bool, true)
            XCTAssertEqual(partition["damaged_pages"] as? [Int], [])
            XCTAssertEqual((partition["problems"] as? [Any])?.count, 0)
            XCTAssertEqual(partition["page_count"] as? Int, partition["reachable_pages"] as? Int)
        }
        XCTAssertEqual(partitions[1]["tables"] as? [String: Int], ["t": 200])

        let human = try pdb("check", db, "users")
        assertExit(human, 0)
        XCTAssertTrue(human.stdout.hasPrefix("users: clean"), human.stdout)
    }

    func testFlippedByteIsReportedWithItsPage() throws {
        // The database is closed (every pdb command closes it); damage page 1 of users.pdb.
        let path = db + "/users.pdb"
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        let offset: UInt64 = 4096 * 1 + 100
        try handle.seek(toOffset: offset)
        let byte = try XCTUnwrap(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([byte ^ 0xFF]))
        try handle.close()

        let human = try pdb("check", db)
        assertExit(human, 1)
        XCTAssertTrue(human.stdout.contains("users: DAMAGED"), human.stdout)
        XCTAssertTrue(human.stdout.contains("users.pdb page 1:"), human.stdout)
        XCTAssertTrue(human.stdout.contains("global: clean"), human.stdout)

        let json = try pdb("check", db, "users", "--json")
        assertExit(json, 1)
        let report = try json.object()
        XCTAssertEqual(report["clean"] as? Bool, false)
        let users = try XCTUnwrap((report["partitions"] as? [[String: Any]])?.first)
        XCTAssertEqual(users["clean"] as? Bool, false)
        XCTAssertTrue((users["damaged_pages"] as? [Int] ?? []).contains(1), "\(users)")
        let problems = try XCTUnwrap(users["problems"] as? [[String: Any]])
        XCTAssertTrue(
            problems.contains { $0["page"] as? Int == 1 && ($0["file"] as? String)?.hasSuffix("users.pdb") == true })

        // Damage is reported, never returned as data.
        let scan = try pdb("scan", db, "users", "t", "--json")
        assertExit(scan, 1)
        XCTAssertEqual(scan.lines.count, 1, scan.stdout)
        XCTAssertEqual(try scan.errorCode(), "corrupt_page")
    }

    func testDamagedHeaderStillReportsEveryPartition() throws {
        // Page 0 is the header: damage there stops the partition from opening at all.
        let path = db + "/users.pdb"
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 200)
        try handle.write(contentsOf: Data([0xAB, 0xCD, 0xEF]))
        try handle.close()
        let result = try pdb("check", db, "--json")
        assertExit(result, 1)
        let partitions = try XCTUnwrap(try result.object()["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.compactMap { $0["name"] as? String }, ["global", "users"])
        XCTAssertEqual(partitions[0]["clean"] as? Bool, true)
        XCTAssertEqual(partitions[1]["clean"] as? Bool, false)
        XCTAssertFalse((partitions[1]["problems"] as? [Any] ?? []).isEmpty)
    }
}
