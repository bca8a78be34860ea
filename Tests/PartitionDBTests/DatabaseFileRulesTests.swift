import Foundation
import XCTest

@testable import PartitionDB

/// The library's half of issue 11's file rules: one file id per open partition, reserved
/// tables, and failed maintenance leaving no temporary file (the `pdb` half is in
/// Tests/EndToEndTests/FileSafetyTests.swift).
final class DatabaseFileRulesTests: XCTestCase {
    /// A file renamed inside (its header says `b`) but copied from `a` carries `a`'s file id:
    /// the second of the two to open is refused.
    func testTwoOpenPartitionsWithOneFileIDAreRefused() throws {
        let path = try temporaryDirectory(self)
        var db = try Database.create(at: path, region: eu)
        try db.createPartition("a")
        try db.close()
        let copy = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path + "/a.pdb")))
        var header = try PartitionHeader.decode(Page(bytes: Array(copy[0..<4096])), file: "a.pdb")
        header.name = "b"
        var page = header.encode()
        page.seal(number: .header)
        try Data(page.bytes + copy[4096...]).write(to: URL(fileURLWithPath: path + "/b.pdb"))

        db = try Database.open(at: path, region: eu)
        defer { try? db.close() }
        _ = try db.partition("a")
        XCTAssertThrowsError(try db.partition("b")) {
            XCTAssertEqual($0 as? PartitionDBError, .duplicateFileID(partition: "b", other: "a"))
        }
        // Closing the first lets the second open: the rule is about two open at once.
        try db.partition("a").close()
        XCTAssertEqual(try db.partition("b").name, "b")
    }

    func testReservedTablesOfTheGlobalPartitionRefuseTheGenericWritePath() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        defer { try? db.close() }
        let global = try db.globalPartition()
        for table in ["homes", "pdb.users"] {
            XCTAssertTrue(global.isReserved(table))
            for change in [
                { (tx: WriteTransaction) in try tx.put(table, bytes("alice"), bytes("us")) },
                { (tx: WriteTransaction) in _ = try tx.delete(table, bytes("alice")) },
                { (tx: WriteTransaction) in _ = try tx.createTable(table) },
                { (tx: WriteTransaction) in _ = try tx.dropTable(table) },
            ] {
                XCTAssertThrowsError(try global.write(change)) {
                    XCTAssertEqual($0 as? PartitionDBError, .reservedTable(partition: "global", table: table))
                }
            }
        }
        XCTAssertEqual(try global.read { tx in try tx.tables() }, [])
        // The project's own API may, and other tables of global are plain tables.
        try global.writeReserved { tx in try tx.put("homes", bytes("alice"), bytes("eu")) }
        try global.write { tx in try tx.put("settings", bytes("k"), bytes("v")) }
        XCTAssertEqual(try global.read { tx in try tx.get("homes", bytes("alice")) }, bytes("eu"))
        // A regional partition reserves nothing.
        XCTAssertFalse(try db.createPartition("users").isReserved("homes"))
    }

    /// A backup that fails half way removes its temporary file and leaves the target alone.
    func testAFailedBackupLeavesNothingBehind() throws {
        let path = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let db = try Database.create(at: path + "/db", region: eu, options: Options(), fileSystem: faults)
        defer { try? db.close() }
        db.setResolver(RandomWorkload.resolver())
        let partition = try db.createPartition("p")
        try partition.write { tx in
            for i in 0..<200 {
                try tx.put("t", bytes("k\(i)"), [UInt8](repeating: 7, count: 900), owner: SubjectID("s0"))
            }
        }
        let target = path + "/p.backup"
        faults.inject(.fail(kinds: [.write], suffix: ".creating", errno: ENOSPC, persistent: true, shortWrite: true))
        XCTAssertThrowsError(try partition.backup(to: target)) {
            guard case .io(ENOSPC, _, _) = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        faults.inject(nil)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".creating"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target))
        XCTAssertEqual(try partition.backup(to: target).pages, try partition.info().pageCount)
    }
}
