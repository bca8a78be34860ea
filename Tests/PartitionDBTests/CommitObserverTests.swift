import Foundation
import XCTest

@testable import PartitionDB

/// `Partition.setCommitObserver`: every commit's complete change set, in order, enough to keep a
/// copy equal to the primary through small, direct, relocated, non-durable and reserved-table
/// commits (spec/file-format.md#change-sets).
final class CommitObserverTests: XCTestCase {
    /// What an observer saw: each change set with the primary's content checksum at its commit
    /// (read inside the observer, where the commit is the newest and the next cannot start) and
    /// whether the commit wrote pages straight into the partition file.
    final class Recorder: @unchecked Sendable {
        struct Entry {
            var changes: ChangeSet
            var checksum: ContentChecksum?
            var wasDirect: Bool
        }

        private let lock = NSLock()
        private var recorded: [Entry] = []
        var entries: [Entry] { lock.withLock { recorded } }
        func append(_ entry: Entry) { lock.withLock { recorded.append(entry) } }

        /// An observer that records into `recorder`, with `partition`'s checksum when `checksums`.
        static func observer(_ recorder: Recorder, _ partition: Partition, checksums: Bool = true)
            -> @Sendable (ChangeSet) -> Void
        {
            { [unowned partition] changes in
                let checksum = checksums ? try? partition.contentChecksum() : nil
                let wasDirect = partition.pager.stateLockedDirectCommits().last?.lsn == changes.lsn
                recorder.append(Entry(changes: changes, checksum: checksum, wasDirect: wasDirect))
            }
        }
    }

    /// Options under which small workloads take every commit path: 16 new pages make a direct
    /// commit, 8 changed existing pages a relocated one, and 64 frames a checkpoint.
    static var options: Options {
        var options = Options()
        options.directWritePages = 16
        options.relocationPages = 8
        options.autoCheckpointFrames = 64
        return options
    }

    /// A directory for the primary's and the copy's databases and the backup between them.
    func makeRoot(_ name: String = #function) throws -> String {
        let root = try temporaryDirectory(self, name)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    func key(_ i: Int) -> [UInt8] { bytes(String(format: "k%06d", i)) }
    func value(_ i: Int) -> [UInt8] { [UInt8](repeating: UInt8(i & 0xFF), count: i % 50 == 0 ? 9_000 : 120) }

    /// A copy of the global partition of `db` in a second database: restored from a backup under
    /// its own name, so it keeps the file id.
    func makeCopy(of primary: Partition, in root: String) throws -> (Database, Partition) {
        let backup = root + "/global.backup"
        _ = try primary.backup(to: backup)
        let copyDB = try Database.create(at: root + "/copy", region: eu, options: CommitObserverTests.options)
        try copyDB.globalPartition().close()
        try copyDB.restore(from: backup, replace: true)
        let copy = try copyDB.globalPartition()
        XCTAssertEqual(copy.fileID, primary.fileID)
        XCTAssertEqual(copy.lastLSN, primary.lastLSN)
        return (copyDB, copy)
    }

    /// A mixed workload on an observed primary: small puts and deletes, a bulk load and a large
    /// removal (both written directly), non-durable commits, reserved-table writes and commits
    /// that roll back. Applying every observed change set in order to a copy gives, after each,
    /// the primary's content at that commit; the copy reopens and checks clean.
    func testObservedChangeSetsKeepACopyEqualAfterEveryCommit() throws {
        let root = try makeRoot()
        let db = try Database.create(at: root + "/primary", region: eu, options: CommitObserverTests.options)
        let p = try db.globalPartition()
        try p.write { tx in for i in 0..<20 { try tx.put("t", key(i), value(i)) } }
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        let start = p.lastLSN
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p))

        struct Rollback: Error {}
        for round in 0..<5 {
            try p.write { tx in
                for i in (20 + round * 10)..<(30 + round * 10) { try tx.put("t", key(i), value(i)) }
            }
            try p.write(durability: .noSync) { tx in _ = try tx.delete("t", key(round * 3)) }
            XCTAssertThrowsError(
                try p.write { tx in
                    try tx.put("t", key(999_999), value(1))
                    throw Rollback()
                })
        }
        // A bulk load: thousands of new pages beyond the committed end, written directly.
        try p.write { tx in for i in 1_000..<6_000 { try tx.put("t", key(i), value(i)) } }
        let bulk = p.lastLSN
        try p.writeReserved { tx in try tx.put(Partition.directoryTable, bytes("subject"), bytes("eu")) }
        // A large removal changes hundreds of existing leaves: they move to new pages.
        let freeBefore = try p.info().freePages
        try p.write { tx in for i in stride(from: 1_000, to: 6_000, by: 2) { _ = try tx.delete("t", key(i)) } }
        let removal = p.lastLSN
        XCTAssertGreaterThan(try p.info().freePages, freeBefore + 100, "the removal did not relocate")
        try p.write(durability: .noSync) { tx in for i in 6_000..<6_100 { try tx.put("t", key(i), value(i)) } }
        try p.write { tx in
            _ = try tx.createTable("u")
            try tx.put("u", bytes("a"), bytes("b"))
        }
        try p.writeReserved { tx in _ = try tx.delete(Partition.directoryTable, bytes("subject")) }
        try p.write { tx in _ = try tx.dropTable("u") }

        let entries = recorder.entries
        XCTAssertEqual(entries.map { $0.changes.lsn.rawValue }, Array((start.rawValue + 1)...p.lastLSN.rawValue))
        let direct = Set(entries.filter { $0.wasDirect }.map { $0.changes.lsn })
        XCTAssertTrue(direct.isSuperset(of: [bulk, removal]), "direct commits: \(direct)")
        // The direct commits' change sets hold their new pages, which the log does not.
        let bulkSet = try XCTUnwrap(entries.first { $0.changes.lsn == bulk }).changes
        XCTAssertGreaterThan(bulkSet.pages.count, 100)
        for entry in entries {
            let numbers = entry.changes.pages.map { $0.number }
            XCTAssertEqual(numbers, numbers.sorted(), "pages of LSN \(entry.changes.lsn) out of order")
            XCTAssertEqual(Set(numbers).count, numbers.count)
            XCTAssertEqual(entry.changes.fileID, p.fileID)
        }

        for entry in entries {
            try copy.apply(entry.changes)
            let expected = try XCTUnwrap(entry.checksum)
            XCTAssertEqual(expected.lsn, entry.changes.lsn)
            XCTAssertEqual(try copy.contentChecksum(), expected, "the copy differs after LSN \(entry.changes.lsn)")
        }
        let final = try p.contentChecksum()
        XCTAssertEqual(final.records, 20 + 50 - 5 + 2_500 + 100)
        try copyDB.close()
        let reopened = try Database.open(at: root + "/copy", region: eu)
        let reopenedCopy = try reopened.globalPartition()
        XCTAssertEqual(try reopenedCopy.contentChecksum(), final)
        XCTAssertTrue(try reopenedCopy.check().isClean)
        try reopened.close()
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }

    /// The images are the bytes on disk: a change set observed on a copy while it applies the
    /// primary's is the primary's, page for page, so a copy can be shipped from in turn.
    func testACopyObservesTheChangeSetsItApplies() throws {
        let root = try makeRoot()
        let db = try Database.create(at: root + "/primary", region: eu, options: CommitObserverTests.options)
        let p = try db.globalPartition()
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        let primarySeen = Recorder()
        let copySeen = Recorder()
        p.setCommitObserver(Recorder.observer(primarySeen, p, checksums: false))
        copy.setCommitObserver(Recorder.observer(copySeen, copy, checksums: false))
        try p.write { tx in for i in 0..<3_000 { try tx.put("t", key(i), value(i)) } }
        try p.write { tx in for i in 0..<10 { try tx.put("t", key(i), value(i + 1)) } }
        for entry in primarySeen.entries { try copy.apply(entry.changes) }
        XCTAssertEqual(primarySeen.entries.count, 2)
        XCTAssertTrue(primarySeen.entries[0].wasDirect)
        XCTAssertEqual(copySeen.entries.map { $0.changes }, primarySeen.entries.map { $0.changes })
        XCTAssertEqual(try copy.contentChecksum(), try p.contentChecksum())
        // Removing the observer stops the calls.
        p.setCommitObserver(nil)
        try p.write { tx in try tx.put("t", key(1), value(1)) }
        XCTAssertEqual(primarySeen.entries.count, 2)
        try copyDB.close()
        try db.close()
    }

    /// Non-durable commits (never direct) are observed too, and a copy follows them.
    func testNonDurableCommitsAreObserved() throws {
        var options = CommitObserverTests.options
        options.durability = .noSync
        let root = try makeRoot()
        let db = try Database.create(at: root + "/primary", region: eu, options: options)
        let p = try db.globalPartition()
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p))
        let start = p.lastLSN
        try p.write { tx in for i in 0..<2_000 { try tx.put("t", key(i), value(i)) } }
        for i in 0..<5 { try p.write { tx in _ = try tx.delete("t", key(i * 7)) } }
        let entries = recorder.entries
        XCTAssertEqual(entries.map { $0.changes.lsn.rawValue }, Array((start.rawValue + 1)...(start.rawValue + 6)))
        XCTAssertFalse(entries.contains { $0.wasDirect })
        for entry in entries { try copy.apply(entry.changes) }
        XCTAssertEqual(try copy.contentChecksum(), try p.contentChecksum())
        XCTAssertEqual(try copy.contentChecksum().records, 1_995)
        try copyDB.close()
        try db.close()
    }

    /// A commit that fails calls nothing: a body that throws, and a commit whose log sync fails
    /// (after which the partition needs reopening). The LSNs observed stay without a gap.
    func testFailedCommitsAreNotObserved() throws {
        let root = try temporaryDirectory(self)
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let db = try Database.create(at: root, region: eu, options: CommitObserverTests.options, fileSystem: faults)
        let p = try db.globalPartition()
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p, checksums: false))
        struct Rollback: Error {}
        try p.write { tx in try tx.put("t", key(1), value(1)) }
        XCTAssertThrowsError(
            try p.write { tx in
                try tx.put("t", key(2), value(2))
                throw Rollback()
            })
        try p.write { tx in try tx.put("t", key(3), value(3)) }
        faults.inject(.fail(kinds: [.sync], suffix: "/global.pdb-log", errno: EIO, persistent: true, shortWrite: false))
        XCTAssertThrowsError(try p.write { tx in try tx.put("t", key(4), value(4)) }) {
            guard case .io = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        let lsns = recorder.entries.map { $0.changes.lsn.rawValue }
        XCTAssertEqual(lsns.count, 2)
        XCTAssertEqual(lsns.last, lsns.first.map { $0 + 1 })
        faults.inject(nil)
        try? db.close()
    }

    /// `apply(batch:)` checks every change set of a batch before it writes anything: a later
    /// commit with a damaged page, or commits out of order, are refused and nothing is applied
    /// (a replica refuses such a batch whole); a whole batch is one commit with its last LSN,
    /// which leaves the copy equal to the primary.
    func testABatchWithALaterBadCommitIsRefusedWholeAndAGoodOneIsOneCommit() throws {
        let root = try makeRoot()
        let db = try Database.create(at: root + "/primary", region: eu, options: CommitObserverTests.options)
        let p = try db.globalPartition()
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p, checksums: false))
        for i in 0..<3 { try p.write { tx in try tx.put("t", key(i), value(i)) } }
        let batch = recorder.entries.map { $0.changes }
        let before = try copy.contentChecksum()
        let lsnBefore = copy.lastLSN
        var damaged = batch
        let last = damaged[2].pages.count - 1
        damaged[2].pages[last].bytes[damaged[2].pages[last].bytes.count / 2] ^= 0xFF
        for refused in [damaged, [batch[1], batch[2]], [batch[0], batch[2]]] {
            XCTAssertThrowsError(try copy.apply(batch: refused)) {
                guard case .changeStreamMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
            }
            XCTAssertEqual(try copy.contentChecksum(), before)
            XCTAssertEqual(copy.lastLSN, lsnBefore)
        }
        let framesBefore = copy.pager.retainedCommits().count
        try copy.apply(batch: batch)
        XCTAssertEqual(copy.lastLSN, p.lastLSN)
        XCTAssertEqual(try copy.contentChecksum(), try p.contentChecksum())
        XCTAssertEqual(copy.pager.retainedCommits().count, framesBefore + 1, "the batch is one commit")
        try copyDB.close()
        try db.close()
    }

    /// A copy's log whose commits skip LSNs (batches applied as one commit each) recovers: a
    /// copy of its files taken while it is open, as a crash leaves them, with nothing
    /// checkpointed, opens at the last batch's LSN with the primary's content, and takes further
    /// batches and single change sets.
    func testACopysLogOfBatchesRecoversAfterACrash() throws {
        let root = try makeRoot()
        var options = CommitObserverTests.options
        options.autoCheckpointFrames = 100_000
        let db = try Database.create(at: root + "/primary", region: eu, options: options)
        let p = try db.globalPartition()
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        copy.setAutoCheckpointFrames(100_000)
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p, checksums: false))
        for i in 0..<12 { try p.write { tx in try tx.put("t", key(i), value(i)) } }
        let sets = recorder.entries.map { $0.changes }
        try copy.apply(batch: Array(sets[0..<5]), durability: .durable)
        try copy.apply(batch: Array(sets[5..<11]), durability: .durable)
        let crashed = root + "/crashed"
        try FileManager.default.createDirectory(atPath: crashed, withIntermediateDirectories: true)
        for name in ["PARTITIONDB", "global.pdb", "global.pdb-log"] {
            try FileManager.default.copyItem(atPath: root + "/copy/" + name, toPath: crashed + "/" + name)
        }
        let expected = try copy.contentChecksum()
        try copyDB.close()

        let reopened = try Database.open(at: crashed, region: eu, options: options)
        let recovered = try reopened.globalPartition()
        XCTAssertEqual(recovered.lastLSN, sets[10].lsn)
        XCTAssertEqual(try recovered.contentChecksum(), expected)
        try recovered.apply(sets[11])
        XCTAssertEqual(try recovered.contentChecksum(), try p.contentChecksum())
        XCTAssertTrue(try recovered.check().isClean)
        try reopened.close()
        try db.close()
    }

    /// Compaction is not a commit: nothing is observed, the partition's file id changes, the next
    /// change set carries the new one, and a copy made before refuses it.
    func testCompactionChangesTheFileIDTheChangeSetsCarry() throws {
        let root = try makeRoot()
        let db = try Database.create(at: root + "/primary", region: eu, options: CommitObserverTests.options)
        let p = try db.globalPartition()
        try p.write { tx in for i in 0..<2_000 { try tx.put("t", key(i), value(i)) } }
        let (copyDB, copy) = try makeCopy(of: p, in: root)
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p, checksums: false))
        let before = p.fileID
        try p.write { tx in for i in stride(from: 0, to: 2_000, by: 2) { _ = try tx.delete("t", key(i)) } }
        _ = try p.compact()
        XCTAssertEqual(recorder.entries.count, 1)
        XCTAssertNotEqual(p.fileID, before)
        try p.write { tx in try tx.put("t", key(1), value(2)) }
        let entries = recorder.entries
        XCTAssertEqual(entries.map { $0.changes.fileID }, [before, p.fileID])
        XCTAssertEqual(entries[1].changes.lsn, entries[0].changes.lsn.next)
        try copy.apply(entries[0].changes)
        XCTAssertThrowsError(try copy.apply(entries[1].changes)) {
            guard case .changeStreamMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        try copyDB.close()
        try db.close()
    }

    /// `changes(after:)` returns a direct commit's complete change set, read back from the
    /// partition file, equal to the observed one; once a checkpoint has copied a later frame of
    /// one of its pages over it, the stream restarts after it.
    func testChangesAfterIncludeDirectCommitsUntilTheirPagesAreOverwritten() throws {
        var options = CommitObserverTests.options
        options.autoCheckpointFrames = 100_000
        let root = try temporaryDirectory(self)
        let db = try Database.create(at: root, region: eu, options: options)
        let p = try db.globalPartition()
        let recorder = Recorder()
        p.setCommitObserver(Recorder.observer(recorder, p, checksums: false))
        try p.write { tx in try tx.put("t", key(0), value(0)) }
        let start = p.lastLSN
        try p.write { tx in for i in 1..<3_000 { try tx.put("t", key(i), value(i)) } }
        let bulk = p.lastLSN
        // Changes the last leaf, a page the bulk load wrote directly.
        try p.write { tx in try tx.put("t", key(3_000), value(3_000)) }
        XCTAssertTrue(recorder.entries[1].wasDirect)
        XCTAssertEqual(try p.changes(after: LSN(start.rawValue - 1)), recorder.entries.map { $0.changes })
        try p.read { _ in
            // This reader keeps the log from restarting; the checkpoint still copies every frame.
            try p.write { tx in try tx.put("t", key(3_001), value(3_001)) }
            try p.checkpoint()
            XCTAssertThrowsError(try p.changes(after: start)) {
                guard case .changesNotRetained(_, _, let oldest) = $0 as? PartitionDBError else {
                    return XCTFail("\($0)")
                }
                XCTAssertEqual(oldest, bulk.next.rawValue)
            }
            XCTAssertEqual(try p.changes(after: bulk).count, 2)
        }
        try db.close()
    }
}
