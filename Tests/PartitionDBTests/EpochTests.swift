import Foundation
import XCTest

@testable import PartitionDB

/// The partition's epoch and its history in the header (spec/file-format.md#header-page):
/// `beginEpoch` raises it durably, copies take it through their change sets, a change set of an
/// older epoch is refused, and the history says where each epoch ended.
final class EpochTests: XCTestCase {
    func testBeginEpochIsDurableShippedAndHistoryTellsWhereEpochsEnded() throws {
        let root = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let db = try Database.create(at: root + "/primary", region: eu)
        let p = try db.globalPartition()
        XCTAssertEqual(p.epoch, 1)
        XCTAssertEqual(p.epochHistory, [])
        XCTAssertNil(p.lastLSN(ofEpoch: 1))
        try p.write { tx in for i in 0..<5 { try tx.put("t", bytes("k\(i)"), bytes("v")) } }
        let backup = root + "/global.backup"
        _ = try p.backup(to: backup)
        let copyDB = try Database.create(at: root + "/copy", region: eu)
        try copyDB.globalPartition().close()
        try copyDB.restore(from: backup, replace: true)
        let copy = try copyDB.globalPartition()

        let recorder = ChangeSetRecorder()
        p.setCommitObserver { changes in recorder.append(changes) }
        let endOfOne = p.lastLSN
        let start2 = try p.beginEpoch(2)
        XCTAssertEqual(start2, endOfOne.next)
        XCTAssertEqual(p.lastLSN, start2)
        try p.write { tx in try tx.put("t", bytes("k9"), bytes("v")) }
        let start5 = try p.beginEpoch(5)
        XCTAssertThrowsError(try p.beginEpoch(5)) { error in
            XCTAssertEqual((error as? PartitionDBError)?.code, "epoch_not_newer")
        }
        XCTAssertEqual(p.epoch, 5)
        XCTAssertEqual(
            p.epochHistory, [EpochStart(epoch: 2, firstLSN: start2), EpochStart(epoch: 5, firstLSN: start5)])
        XCTAssertEqual(p.lastLSN(ofEpoch: 1), endOfOne)
        XCTAssertEqual(p.lastLSN(ofEpoch: 2), LSN(start5.rawValue - 1))
        XCTAssertEqual(p.lastLSN(ofEpoch: 3), LSN(start5.rawValue - 1))
        XCTAssertNil(p.lastLSN(ofEpoch: 5))

        // The copy follows the epochs through the change sets.
        let changes = recorder.sets
        XCTAssertEqual(changes.count, 3)
        try copy.apply(changes[0])
        XCTAssertEqual(copy.epoch, 2)
        try copy.apply(batch: Array(changes[1...]), durability: .durable)
        XCTAssertEqual(copy.epoch, 5)
        XCTAssertEqual(copy.epochHistory, p.epochHistory)
        XCTAssertEqual(try copy.contentChecksum(), try p.contentChecksum())

        // Both reopen at epoch 5: the epoch is in the header, durable.
        try p.close()
        try db.close()
        let reopened = try Database.open(at: root + "/primary", region: eu)
        XCTAssertEqual(try reopened.globalPartition().epoch, 5)
        XCTAssertEqual(try reopened.globalPartition().epochHistory.count, 2)
        try reopened.globalPartition().compact()
        XCTAssertEqual(try reopened.globalPartition().epoch, 5, "compaction keeps the epoch")
        XCTAssertEqual(try reopened.globalPartition().lastLSN(ofEpoch: 1), endOfOne)
    }

    /// A change set of an older epoch than the copy's is refused, the copy unchanged.
    func testChangeSetOfOlderEpochIsRefused() throws {
        let root = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let old = try Database.create(at: root + "/old", region: eu)
        let p = try old.globalPartition()
        try p.write { tx in try tx.put("t", bytes("a"), bytes("1")) }
        _ = try p.backup(to: root + "/b")
        let newer = try Database.create(at: root + "/new", region: eu)
        try newer.globalPartition().close()
        try newer.restore(from: root + "/b", replace: true)
        let q = try newer.globalPartition()
        _ = try q.beginEpoch(2)
        // The old primary's next commit has the LSN the copy's epoch start took, then one more.
        let recorder = ChangeSetRecorder()
        p.setCommitObserver { changes in recorder.append(changes) }
        try p.write { tx in try tx.put("t", bytes("b"), bytes("2")) }
        try p.write { tx in try tx.put("t", bytes("c"), bytes("3")) }
        let stale = recorder.sets[1]
        XCTAssertEqual(stale.lsn, q.lastLSN.next)
        let before = try q.contentChecksum()
        XCTAssertThrowsError(try q.apply(stale)) { error in
            XCTAssertEqual((error as? PartitionDBError)?.code, "change_stream_mismatch")
        }
        XCTAssertEqual(try q.contentChecksum(), before)
    }

    /// The history keeps the newest 16 starts; where the dropped ones ended is unknown.
    func testFullHistoryDropsTheOldest() throws {
        let root = try temporaryDirectory(self)
        let db = try Database.create(at: root, region: eu)
        let p = try db.globalPartition()
        for epoch in 2...20 { _ = try p.beginEpoch(UInt64(epoch)) }
        XCTAssertEqual(p.epochHistory.count, 16)
        XCTAssertEqual(p.epochHistory.first?.epoch, 5)
        XCTAssertNil(p.lastLSN(ofEpoch: 1), "the start of epoch 2 was dropped")
        XCTAssertEqual(p.lastLSN(ofEpoch: 5), LSN(p.epochHistory[1].firstLSN.rawValue - 1))
        try p.close()
        try db.close()
        XCTAssertEqual(try Database.open(at: root, region: eu).globalPartition().epoch, 20)
    }
}

/// The change sets an observer saw, in order.
private final class ChangeSetRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [ChangeSet] = []
    var sets: [ChangeSet] { lock.withLock { recorded } }
    func append(_ changes: ChangeSet) { lock.withLock { recorded.append(changes) } }
}
