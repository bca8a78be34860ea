import Foundation
import XCTest

@testable import PartitionDB

/// Group commit (`GroupCommit`): concurrent durable writers share syncs of the log, each write
/// returns only once its commit is durable, and the commit observer still sees every commit
/// once, in LSN order (spec/file-format.md#group-commit).
final class GroupCommitTests: XCTestCase {
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var lsns: [UInt64] = []
        private var problems: [String] = []
        var seen: [UInt64] { lock.withLock { lsns } }
        var found: [String] { lock.withLock { problems } }
        func append(_ lsn: UInt64) { lock.withLock { lsns.append(lsn) } }
        func problem(_ text: String) { lock.withLock { problems.append(text) } }
    }

    /// Eight writers commit durably at once on a disk whose every sync takes 5 ms: while one
    /// sync runs the others append, so the log is synced fewer times than there are commits.
    /// Each write returns with its commit durable; the observer sees each commit once it is
    /// durable, in LSN order with no gap; the reopened partition holds every record.
    func testConcurrentDurableWritersShareSyncs() throws {
        let (path, created, partition, recorder) = try observedPartition(syncDelay: 0.005, allDurable: true)
        var db = created
        let first = partition.lastLSN.rawValue
        let syncsBefore = partition.group.syncCount
        let writers = 8
        let commitsEach = 25
        let owner = try SubjectID("s0")
        onThreads(writers) { writer in
            for commit in 0..<commitsEach {
                do {
                    let lsn = try partition.write(durability: .durable) { tx in
                        try tx.put("t", bytes("w\(writer)-\(commit)"), bytes("value \(commit)"), owner: owner)
                        return tx.lsn
                    }
                    if partition.group.durableThrough < lsn {
                        recorder.problem("write of LSN \(lsn.rawValue) returned before it was durable")
                    }
                } catch {
                    recorder.problem("writer \(writer), commit \(commit): \(error)")
                }
            }
        }
        let commits = writers * commitsEach
        let syncs = partition.group.syncCount - syncsBefore
        XCTAssertEqual(recorder.found, [])
        XCTAssertEqual(recorder.seen, Array(first + 1...first + UInt64(commits)), "observed in LSN order, no gap")
        // How many commits a sync covers depends on how the threads get scheduled on a shared
        // machine (CI saw 103 syncs for 200 commits once, usually far fewer): the test demands
        // that syncs are shared, not a ratio.
        print("group commit: \(syncs) syncs for \(commits) commits")
        XCTAssertLessThan(syncs, commits, "\(syncs) group syncs for \(commits) commits: none shared")
        XCTAssertGreaterThan(syncs, 0)
        try db.close()

        db = try Database.open(at: path, region: eu)
        db.setResolver(RandomWorkload.resolver())
        let reopened = try db.partition("p")
        let count = try reopened.read { tx in try tx.count("t") }
        XCTAssertEqual(count, commits)
        try db.close()
    }

    /// Non-durable commits between durable ones that wait for their sync are observed after
    /// them, never before: the observer's order is the LSN order whatever the durability.
    func testNoSyncCommitsAreObservedAfterTheDurableOnesBeforeThem() throws {
        let (_, db, partition, recorder) = try observedPartition(syncDelay: 0.002, allDurable: false)
        let first = partition.lastLSN.rawValue
        let owner = try SubjectID("s0")
        onThreads(4) { writer in
            for commit in 0..<30 {
                do {
                    try partition.write(durability: (writer + commit) % 2 == 0 ? .durable : .noSync) { tx in
                        try tx.put("t", bytes("w\(writer)-\(commit)"), bytes("v"), owner: owner)
                    }
                } catch {
                    recorder.problem("writer \(writer), commit \(commit): \(error)")
                }
            }
        }
        // The last commits may be non-durable ones still behind a durable one's sync: closing
        // settles them.
        try db.close()
        XCTAssertEqual(recorder.found, [])
        XCTAssertEqual(recorder.seen, Array(first + 1...first + 120))
    }

    /// A new partition on a disk whose every sync first sleeps `syncDelay` seconds, with an
    /// observer that records each LSN and, when every commit is durable (`allDurable`), as a
    /// problem any commit observed before it was.
    func observedPartition(syncDelay: TimeInterval, allDurable: Bool) throws -> (String, Database, Partition, Recorder)
    {
        let path = try temporaryDirectory(self)
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        faults.syncDelay = syncDelay
        let db = try Database.create(at: path, region: eu, options: Options(), fileSystem: faults)
        db.setResolver(RandomWorkload.resolver())
        let partition = try db.createPartition("p")
        let recorder = Recorder()
        partition.setCommitObserver { [unowned partition] changes in
            if allDurable, partition.group.durableThrough < changes.lsn {
                recorder.problem("LSN \(changes.lsn.rawValue) observed before it was durable")
            }
            recorder.append(changes.lsn.rawValue)
        }
        return (path, db, partition, recorder)
    }

    /// Runs `body` on `count` threads of its own at once (not `concurrentPerform`, which runs
    /// as many at a time as there are cores) and returns when all have finished.
    func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let finished = DispatchGroup()
        for index in 0..<count {
            finished.enter()
            Thread {
                body(index)
                finished.leave()
            }.start()
        }
        finished.wait()
    }
}
