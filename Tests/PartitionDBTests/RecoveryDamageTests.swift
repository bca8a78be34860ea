import Foundation
import XCTest

@testable import PartitionDB

/// Damage in the log is reported, never hidden: when recovery stops at a damaged frame that
/// frames of later commits follow, the log is preserved next to the partition and `check()`
/// reports it; a torn tail (frames of the first dropped commit only) is dropped quietly.
/// Rules: spec/file-format.md#damage-in-the-log
final class RecoveryDamageTests: XCTestCase {
    static let pageSize = 4096
    static let frameSize = WriteAheadLog.frameHeaderSize + pageSize

    /// A database directory copied while its global partition's log held `commits` commits of one
    /// record each (as a crash would leave it), and the LSN before the first of them.
    func crashedCopy(commits: Int) throws -> (path: String, base: UInt64) {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let p = try db.globalPartition()
        let base = p.lastLSN.rawValue
        for i in 0..<commits { try p.write { try $0.put("t", bytes("k\(i)"), bytes("v\(i)")) } }
        let copy = try temporaryDirectory(self, "copy")
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["PARTITIONDB", "global.pdb", "global.pdb-log"] {
            try FileManager.default.copyItem(atPath: path + "/" + name, toPath: copy + "/" + name)
        }
        try db.close()
        return (copy, base)
    }

    /// Known gap 8, closed: a checkpoint had copied all twelve commits into the partition file
    /// (the log on disk still held them: it restarts in memory, and the next commit overwrites
    /// it), then a frame of the fourth is damaged. Opening at the kept prefix would mix the file's
    /// pages of the dropped commits into it; opening is refused instead, with the log kept.
    func testDamageBelowACheckpointIsRefusedNotMixed() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let p = try db.globalPartition()
        let base = p.lastLSN.rawValue
        for i in 0..<12 { try p.write { try $0.put("t", bytes("k\(i)"), bytes("v\(i)")) } }
        try p.checkpoint()
        let copy = try temporaryDirectory(self, "copy")
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["PARTITIONDB", "global.pdb", "global.pdb-log"] {
            try FileManager.default.copyItem(atPath: path + "/" + name, toPath: copy + "/" + name)
        }
        try db.close()
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let lsns = RecoveryDamageTests.frameLSNs(logBytes)
        XCTAssertEqual(Set(lsns).count, 12, "the log on disk still holds every commit")
        RecoveryDamageTests.damage(frame: try XCTUnwrap(lsns.firstIndex(of: base + 4)), of: &logBytes)
        try logBytes.write(to: URL(fileURLWithPath: log))

        let reopened = try Database.open(at: copy, region: eu)
        defer { try? reopened.close() }
        XCTAssertThrowsError(try reopened.globalPartition()) { error in
            guard case .corruptPage(_, 0, let reason) = error as? PartitionDBError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("up to LSN \(base + 12)"), reason)
            XCTAssertTrue(reason.contains("global.pdb-log.damaged-\(base + 4)"), reason)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: copy + "/global.pdb-log.damaged-\(base + 4)"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: log)), logBytes, "the log is left as found")
    }

    /// The LSN in each frame header of the log, in order, up to the first all-zero frame header.
    static func frameLSNs(_ log: Data) -> [UInt64] {
        var result: [UInt64] = []
        var offset = WriteAheadLog.headerSize
        while offset + frameSize <= log.count {
            let lsn = log[(offset + 8)..<(offset + 16)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if lsn == 0 { break }
            result.append(lsn)
            offset += frameSize
        }
        return result
    }

    /// Flips a byte in the page image of frame `frame`.
    static func damage(frame: Int, of log: inout Data) {
        log[WriteAheadLog.headerSize + frame * frameSize + WriteAheadLog.frameHeaderSize + 100] ^= 0x5A
    }

    func testDamagedEarlyFrameIsPreservedAndReported() throws {
        let (copy, base) = try crashedCopy(commits: 12)
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let lsns = RecoveryDamageTests.frameLSNs(logBytes)
        XCTAssertEqual(Set(lsns).count, 12)
        // The first frame of the third commit: two commits stay, ten durable ones are dropped.
        let damagedLSN = base + 3
        let frame = try XCTUnwrap(lsns.firstIndex(of: damagedLSN))
        RecoveryDamageTests.damage(frame: frame, of: &logBytes)
        try logBytes.write(to: URL(fileURLWithPath: log))

        let db = try Database.open(at: copy, region: eu)
        let p = try db.globalPartition()
        XCTAssertEqual(p.lastLSN, LSN(base + 2))
        try p.read { tx in XCTAssertEqual(try tx.count("t"), 2) }

        let preserved = copy + "/global.pdb-log.damaged-\(damagedLSN)"
        XCTAssertTrue(FileManager.default.fileExists(atPath: preserved))
        // The copy is the log as found: its header and every frame up to the last one of the log.
        let kept = try Data(contentsOf: URL(fileURLWithPath: preserved))
        XCTAssertEqual(kept.count, WriteAheadLog.headerSize + lsns.count * RecoveryDamageTests.frameSize)
        XCTAssertEqual(kept, logBytes.prefix(kept.count))

        XCTAssertEqual(p.recoveryWarnings.count, 1)
        let warning = try XCTUnwrap(p.recoveryWarnings.first)
        XCTAssertEqual(warning.preservedLog, preserved)
        XCTAssertEqual(warning.firstDroppedLSN, LSN(damagedLSN))
        XCTAssertEqual(warning.droppedCommits, 10)
        XCTAssertEqual(warning.droppedFrames, lsns.count - frame)

        let report = try p.check()
        XCTAssertFalse(report.isClean)
        XCTAssertEqual(report.problems.count, 1, "\(report.problems)")
        let problem = try XCTUnwrap(report.problems.first)
        XCTAssertEqual(problem.file, preserved)
        XCTAssertNil(problem.page)
        XCTAssertTrue(problem.message.contains("dropped 10 commits"), problem.message)
        XCTAssertTrue(problem.message.contains("LSN \(damagedLSN)"), problem.message)

        // The partition goes on from the kept prefix; a later process still sees the copy.
        try p.write { try $0.put("t", bytes("after"), bytes("v")) }
        try db.close()
        let again = try Database.open(at: copy, region: eu)
        let q = try again.globalPartition()
        XCTAssertEqual(q.recoveryWarnings, [])
        XCTAssertEqual(try q.check().problems.map(\.file), [preserved])
        try FileManager.default.removeItem(atPath: preserved)
        XCTAssertTrue(try q.check().isClean)
        try q.read { tx in XCTAssertEqual(try tx.count("t"), 3) }
        try again.close()
    }

    func testDamageInTheFirstCommitWithNoCommitKept() throws {
        let (copy, base) = try crashedCopy(commits: 4)
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        RecoveryDamageTests.damage(frame: 0, of: &logBytes)
        try logBytes.write(to: URL(fileURLWithPath: log))

        let db = try Database.open(at: copy, region: eu)
        defer { try? db.close() }
        let p = try db.globalPartition()
        XCTAssertEqual(p.lastLSN, LSN(base))
        XCTAssertEqual(p.recoveryWarnings.map(\.firstDroppedLSN), [LSN(base + 1)])
        XCTAssertEqual(p.recoveryWarnings.map(\.droppedCommits), [4])
        XCTAssertTrue(FileManager.default.fileExists(atPath: copy + "/global.pdb-log.damaged-\(base + 1)"))
        XCTAssertFalse(try p.check().isClean)
    }

    func testAnExistingPreservedCopyIsNeverOverwritten() throws {
        let (copy, base) = try crashedCopy(commits: 5)
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let frame = try XCTUnwrap(RecoveryDamageTests.frameLSNs(logBytes).firstIndex(of: base + 2))
        RecoveryDamageTests.damage(frame: frame, of: &logBytes)
        try logBytes.write(to: URL(fileURLWithPath: log))
        let first = copy + "/global.pdb-log.damaged-\(base + 2)"
        let earlier = Data("an earlier copy".utf8)
        try earlier.write(to: URL(fileURLWithPath: first))

        let db = try Database.open(at: copy, region: eu)
        defer { try? db.close() }
        let p = try db.globalPartition()
        XCTAssertEqual(p.recoveryWarnings.map(\.preservedLog), [first + ".2"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first)), earlier)
        XCTAssertTrue(FileManager.default.fileExists(atPath: first + ".2"))
        // Both are reported: the one check cannot read as a log, too.
        let files = Set(try p.check().problems.map(\.file))
        XCTAssertEqual(files, [first, first + ".2"])
    }

    func testTornLastCommitStaysATornTail() throws {
        let (copy, base) = try crashedCopy(commits: 6)
        let log = copy + "/global.pdb-log"
        var logBytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let lsns = RecoveryDamageTests.frameLSNs(logBytes)
        // The first frame of the last commit: the frames after it are of the same commit only,
        // which may be a torn write that was never acknowledged.
        let frame = try XCTUnwrap(lsns.firstIndex(of: base + 6))
        XCTAssertLessThan(frame, lsns.count - 1)
        RecoveryDamageTests.damage(frame: frame, of: &logBytes)
        try logBytes.write(to: URL(fileURLWithPath: log))

        let db = try Database.open(at: copy, region: eu)
        defer { try? db.close() }
        let p = try db.globalPartition()
        XCTAssertEqual(p.lastLSN, LSN(base + 5))
        XCTAssertEqual(p.recoveryWarnings, [])
        XCTAssertTrue(try p.check().isClean)
        let names = try FileManager.default.contentsOfDirectory(atPath: copy)
        XCTAssertFalse(names.contains { $0.contains("damaged") }, "\(names)")
    }

    func testFrameWholeOnItsOwnFollowsTheFrameRules() throws {
        // Frames with LSN 0, LSN at or above 2^63 or page number 0xFFFFFFFF are not valid frames,
        // whole on their own or in the chain.
        let salt: UInt64 = 0x1234_5678
        func frame(page: UInt32, lsn: UInt64) -> [UInt8] {
            var image = Page(size: RecoveryDamageTests.pageSize)
            image.setU8(4, PageKind.leaf.rawValue)
            image.seal(number: PageNumber(page))
            var header = Page(size: WriteAheadLog.frameHeaderSize)
            header.setU32(0, page)
            header.setU64(8, lsn)
            header.setU64(16, salt)
            return header.bytes + image.bytes
        }
        let size = RecoveryDamageTests.pageSize
        XCTAssertNotNil(WriteAheadLog.parseWholeFrame(frame(page: 3, lsn: 7), at: 0, pageSize: size, salt: salt))
        XCTAssertNil(WriteAheadLog.parseWholeFrame(frame(page: 3, lsn: 7), at: 0, pageSize: size, salt: salt + 1))
        XCTAssertNil(WriteAheadLog.parseWholeFrame(frame(page: 3, lsn: 0), at: 0, pageSize: size, salt: salt))
        XCTAssertNil(WriteAheadLog.parseWholeFrame(frame(page: 3, lsn: 1 << 63), at: 0, pageSize: size, salt: salt))
        XCTAssertNil(WriteAheadLog.parseWholeFrame(frame(page: .max, lsn: 7), at: 0, pageSize: size, salt: salt))
        var damaged = frame(page: 3, lsn: 7)
        damaged[WriteAheadLog.frameHeaderSize + 200] ^= 1
        XCTAssertNil(WriteAheadLog.parseWholeFrame(damaged, at: 0, pageSize: size, salt: salt))
    }
}
