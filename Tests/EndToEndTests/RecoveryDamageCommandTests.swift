import Foundation
import PartitionDB
import XCTest

/// `pdb` on a database whose log was damaged while it held durable commits, and on a file cut
/// short: the damage is reported (exit 1, `"clean": false`, the `truncated` code), never hidden.
final class RecoveryDamageCommandTests: PDBTestCase {
    static let frameSize = 32 + 4096

    /// A database in `db` whose global partition's log holds `commits` commits, as a crash would
    /// leave it; returns the LSN before the first of them.
    func makeCrashedDatabase(commits: Int) throws -> UInt64 {
        let database = try Database.create(at: db, region: Region("eu"))
        let global = try database.globalPartition()
        let base = global.lastLSN.rawValue
        for i in 0..<commits { try global.write { try $0.put("t", Array("k\(i)".utf8), Array("v\(i)".utf8)) } }
        let saved = root.appendingPathComponent("saved").path
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        for name in ["global.pdb", "global.pdb-log"] {
            try FileManager.default.copyItem(atPath: db + "/" + name, toPath: saved + "/" + name)
        }
        try database.close()
        for name in ["global.pdb", "global.pdb-log"] {
            try FileManager.default.removeItem(atPath: db + "/" + name)
            try FileManager.default.moveItem(atPath: saved + "/" + name, toPath: db + "/" + name)
        }
        return base
    }

    func testCheckReportsCommitsDroppedAfterDamageInTheLog() throws {
        let base = try makeCrashedDatabase(commits: 12)
        // Flip a byte in the page image of the first frame of the fourth commit.
        let log = db + "/global.pdb-log"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: log))
        var frame = 0
        while true {
            let offset = 64 + frame * RecoveryDamageCommandTests.frameSize
            let lsn = bytes[(offset + 8)..<(offset + 16)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            XCTAssertNotEqual(lsn, 0, "no frame of the fourth commit")
            if lsn == base + 4 || lsn == 0 { break }
            frame += 1
        }
        bytes[64 + frame * RecoveryDamageCommandTests.frameSize + 32 + 100] ^= 0x5A
        try bytes.write(to: URL(fileURLWithPath: log))

        // `check` opens read-only: it copies nothing, and reports the damaged log itself.
        let preserved = "global.pdb-log.damaged-\(base + 4)"
        let readOnly = try pdb("check", db, "global", "--json")
        assertExit(readOnly, 1)
        XCTAssertEqual(try readOnly.object()["clean"] as? Bool, false)
        XCTAssertTrue(readOnly.stdout.contains("dropped 9 commits"), readOnly.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: db + "/" + preserved))

        // The first read-write open keeps a copy of the log before its checkpoint replaces it.
        assertExit(try pdb("put", db, "global", "other", "k", "v"), 0)
        let json = try pdb("check", db, "global", "--json")
        assertExit(json, 1)
        let report = try json.object()
        XCTAssertEqual(report["clean"] as? Bool, false)
        let global = try XCTUnwrap((report["partitions"] as? [[String: Any]])?.first)
        XCTAssertEqual(global["clean"] as? Bool, false)
        let problems = try XCTUnwrap(global["problems"] as? [[String: Any]])
        XCTAssertTrue(FileManager.default.fileExists(atPath: db + "/" + preserved))
        let problem = try XCTUnwrap(
            problems.first { ($0["file"] as? String)?.hasSuffix(preserved) == true }, "\(problems)")
        XCTAssertTrue((problem["message"] as? String ?? "").contains("dropped 9 commits"), "\(problem)")
        // The partition opened at the kept prefix: three commits.
        let scan = try pdb("scan", db, "global", "t", "--json")
        assertExit(scan, 0)
        XCTAssertEqual(scan.lines.count, 3, scan.stdout)

        // A later process still sees the copy, until an operator removes it.
        let human = try pdb("check", db)
        assertExit(human, 1)
        XCTAssertTrue(human.stdout.contains(preserved), human.stdout)
        try FileManager.default.removeItem(atPath: db + "/" + preserved)
        assertExit(try pdb("check", db), 0)
    }

    func testFileShorterThanItsHeaderSaysIsTruncated() throws {
        _ = try makeCrashedDatabase(commits: 0)
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: db + "/global.pdb"))
        try handle.truncate(atOffset: 4096 + 100)
        try handle.close()
        try FileManager.default.removeItem(atPath: db + "/global.pdb-log")
        let scan = try pdb("scan", db, "global", "t", "--json")
        assertExit(scan, 1)
        XCTAssertEqual(try scan.errorCode(), "truncated", scan.stdout)
        assertExit(try pdb("check", db), 1)
    }
}
