import Foundation
import XCTest

@testable import PartitionDB

/// A flipped byte in any page of a partition is reported by `check()` and by a read of that page
/// as a typed error naming the file and the page, never returned as data.
final class CorruptionTests: XCTestCase {
    func testFlippedByteInEveryPageIsDetected() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let resolver = FixedResolver()
        resolver.set("s", eu)
        db.setResolver(resolver)
        let p = try db.createPartition("p")
        try p.write { tx in
            for i in 0..<400 {
                try tx.put(
                    "t\(i % 3)", bytes("key-\(i)"), [UInt8](repeating: UInt8(i & 0xFF), count: i % 7 == 0 ? 9000 : 120),
                    owner: try SubjectID("s"))
            }
        }
        try p.write { tx in for i in stride(from: 0, to: 400, by: 5) { try tx.delete("t\(i % 3)", bytes("key-\(i)")) } }
        try db.close()

        let file = path + "/p.pdb"
        let original = try Data(contentsOf: URL(fileURLWithPath: file))
        let pageSize = 4096
        let pages = original.count / pageSize
        XCTAssertGreaterThan(pages, 20)
        var random = SeededGenerator(seed: 7)
        for page in 0..<pages {
            var damaged = original
            let offset = page * pageSize + Int.random(in: 0..<pageSize, using: &random)
            damaged[offset] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
            try damaged.write(to: URL(fileURLWithPath: file))
            try? FileManager.default.removeItem(atPath: file + "-log")

            let reopened = try Database.open(at: path, region: eu)
            defer { try? reopened.close() }
            let partition: Partition
            do {
                partition = try reopened.partition("p")
            } catch PartitionDBError.corruptPage(let f, let n, _) {
                // Only the header page is read while opening.
                XCTAssertEqual(n, 0)
                XCTAssertEqual(f, file)
                continue
            }
            let report = try partition.check()
            XCTAssertEqual(report.damagedPages, [UInt32(page)], "page \(page): \(report.problems.prefix(3))")
            XCTAssertTrue(report.problems.contains { $0.page == UInt32(page) && $0.file == file }, "\(report.problems)")
            let snapshot = partition.pager.latestSnapshot
            XCTAssertThrowsError(try partition.pager.page(PageNumber(UInt32(page)), in: snapshot)) { error in
                guard case .corruptPage(let f, let n, _) = error as? PartitionDBError else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(f, file)
                XCTAssertEqual(n, UInt32(page))
            }
        }
        try original.write(to: URL(fileURLWithPath: file))
    }

    func testDamagedLogTailIsDroppedAtACommitBoundary() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let p = try db.globalPartition()
        for i in 0..<5 { try p.write { try $0.put("t", bytes("k\(i)"), bytes("v\(i)")) } }
        // Simulate a crash: copy the files while the log still holds the commits.
        let copy = try temporaryDirectory(self, "copy")
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["PARTITIONDB", "global.pdb", "global.pdb-log"] {
            try FileManager.default.copyItem(atPath: path + "/" + name, toPath: copy + "/" + name)
        }
        try db.close()
        // Tear the last commit: flip a byte in the log's last frame.
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        // The log is zero-filled ahead of its frames: damage the last frame, just before the zeros.
        let end = (logBytes.lastIndex { $0 != 0 } ?? 0) + 1
        logBytes[end - 100] ^= 0xFF
        try logBytes.write(to: URL(fileURLWithPath: log))
        let recovered = try Database.open(at: copy, region: eu)
        let partition = try recovered.globalPartition()
        XCTAssertEqual(partition.lastLSN, LSN(4))
        try partition.read { tx in
            XCTAssertEqual(try tx.count("t"), 4)
            XCTAssertNil(try tx.get("t", bytes("k4")))
        }
        XCTAssertTrue(try partition.check().isClean)
        try recovered.close()
    }
}
