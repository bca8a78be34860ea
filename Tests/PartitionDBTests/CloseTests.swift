import Foundation
import XCTest

@testable import PartitionDB

/// Closing a partition or a database while readers run: the lock stays while anything is open,
/// and no read ever goes through a closed descriptor.
final class CloseTests: XCTestCase {
    /// Found: `Database.close()` released `LOCK` although a partition with a running reader
    /// stayed open (and writable), so a second process could open the same files.
    func testDatabaseCloseKeepsTheLockWhileAPartitionIsBusy() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let global = try db.globalPartition()
        try global.write { tx in try tx.put("t", bytes("k"), bytes("v")) }

        let readerStarted = DispatchSemaphore(value: 0)
        let readerMayEnd = DispatchSemaphore(value: 0)
        let readerDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? global.read { tx in
                readerStarted.signal()
                readerMayEnd.wait()
                return try tx.get("t", bytes("k"))
            }
            readerDone.signal()
        }
        readerStarted.wait()

        XCTAssertThrowsError(try db.close()) { error in
            guard case .busy(let partition, _) = error as? PartitionDBError else {
                return XCTFail("expected busy, got \(error)")
            }
            XCTAssertEqual(partition, "global")
        }
        XCTAssertTrue(global.isOpen, "the busy partition must stay open")
        XCTAssertTrue(db.holdsLock, "the lock must stay while a partition is open")
        // A second open (flock conflicts between open file descriptions, even in one process)
        // is refused: no other handle can use the files the busy partition still has open.
        XCTAssertThrowsError(try Database.open(at: path, region: eu)) { error in
            XCTAssertEqual(error as? PartitionDBError, .locked(path: path + "/LOCK", pid: getpid()))
        }
        // The database refuses new partition handles meanwhile.
        XCTAssertThrowsError(try db.globalPartition()) { error in
            XCTAssertEqual(error as? PartitionDBError, .closed(partition: "global"))
        }

        readerMayEnd.signal()
        readerDone.wait()
        try db.close()
        XCTAssertFalse(global.isOpen)
        XCTAssertFalse(db.holdsLock)
        let reopened = try Database.open(at: path, region: eu)
        XCTAssertEqual(try reopened.globalPartition().read { try $0.get("t", bytes("k")) }, bytes("v"))
        try reopened.close()
    }

    /// Found: a reader that took the pager before a close but registered its snapshot after it
    /// read through closed (possibly reused) descriptors. Here each kind of reader stops right
    /// there (`readerRegistered`) while the partition is closed: the close must be refused with
    /// `busy`, and the reader must then read correctly (the simulated disk answers a read
    /// through a closed handle with EBADF).
    func testACloseBetweenTakingThePagerAndBeginningTheReadIsRefused() throws {
        let root = try temporaryDirectory(self)
        let path = root + "/db"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let disk = SimulatedFileSystem(image: DiskImage(roots: [root]), recording: false)
        let db = try Database.create(at: path, region: eu, options: Options(), fileSystem: disk)
        try db.globalPartition().write { tx in try tx.put("t", bytes("k"), bytes("v")) }
        let readers: [(String, @Sendable (Partition) throws -> Void)] = [
            ("read", { p in XCTAssertEqual(try p.read { try $0.get("t", bytes("k")) }, bytes("v")) }),
            ("check", { p in XCTAssertTrue(try p.check().isClean) }),
            ("info", { p in XCTAssertEqual(try p.info().tables, ["t": 1]) }),
            ("backup", { p in _ = try p.backup(to: root + "/backup") }),
        ]
        for (kind, body) in readers {
            let partition = try db.globalPartition()
            let admitted = DispatchSemaphore(value: 0)
            let proceed = DispatchSemaphore(value: 0)
            partition.readerRegistered = {
                admitted.signal()
                proceed.wait()
            }
            let done = DispatchSemaphore(value: 0)
            let failures = FailureLog()
            DispatchQueue.global().async {
                do { try body(partition) } catch { failures.add("\(kind): \(error)") }
                done.signal()
            }
            admitted.wait()
            XCTAssertThrowsError(try partition.close(), kind) { error in
                guard case .busy = error as? PartitionDBError else {
                    return XCTFail("\(kind): expected busy, got \(error)")
                }
            }
            proceed.signal()
            done.wait()
            XCTAssertEqual(failures.all, [])
            partition.readerRegistered = nil
            try partition.close()
            XCTAssertThrowsError(try partition.read { _ in }) { error in
                XCTAssertEqual(error as? PartitionDBError, .closed(partition: "global"), kind)
            }
        }
        try db.close()
    }

    /// The same race unprompted: many readers (`read`, `check()`,
    /// `info()`, `backup(to:)`) race each close: each is refused with `closed`, or the close is
    /// refused with `busy`; a read never fails otherwise (the simulated disk answers a read
    /// through a closed handle with EBADF) and never returns a wrong value.
    func testReadsRacingACloseAreRefusedOrMakeItWait() throws {
        let root = try temporaryDirectory(self)
        let path = root + "/db"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let disk = SimulatedFileSystem(image: DiskImage(roots: [root]), recording: false)
        var options = Options()
        // A small cache, so most reads go to the files.
        options.cachePages = 64
        options.durability = .noSync
        let db = try Database.create(at: path, region: eu, options: options, fileSystem: disk)
        let records = 2_000
        @Sendable func key(_ i: Int) -> [UInt8] { bytes(String(format: "key-%06d", i)) }
        @Sendable func value(_ i: Int) -> [UInt8] {
            bytes(String(format: "value-%06d-", i)) + [UInt8](repeating: 1, count: 80)
        }
        try db.globalPartition().write { tx in
            for i in 0..<records { try tx.put("t", key(i), value(i)) }
        }

        let failures = FailureLog()
        let counts = Counters()
        for round in 0..<40 {
            let partition = try db.globalPartition()
            let group = DispatchGroup()
            for reader in 0..<4 {
                DispatchQueue.global().async(group: group) {
                    var generator = SeededGenerator(seed: UInt64(round * 16 + reader))
                    while true {
                        do {
                            switch (reader, Int.random(in: 0..<20, using: &generator)) {
                            case (3, 0):
                                let report = try partition.check()
                                if !report.isClean { failures.add("check found \(report.problems)") }
                            case (3, 1):
                                let info = try partition.info()
                                if info.tables["t"] != records { failures.add("info counted \(info.tables)") }
                            case (3, 2):
                                _ = try partition.backup(to: root + "/backup-\(reader)")
                            default:
                                let i = Int.random(in: 0..<records, using: &generator)
                                let found = try partition.read { tx in try tx.get("t", key(i)) }
                                if found != value(i) { failures.add("read \(i) returned the wrong value") }
                            }
                            counts.add(read: 1)
                        } catch PartitionDBError.closed {
                            counts.add(refused: 1)
                            return
                        } catch {
                            failures.add("round \(round) reader \(reader): \(error)")
                            return
                        }
                    }
                }
            }
            usleep(UInt32(200 + round * 50))
            while true {
                do {
                    try partition.close()
                    break
                } catch PartitionDBError.busy {
                    counts.add(busy: 1)
                } catch {
                    failures.add("round \(round): close threw \(error)")
                    break
                }
            }
            group.wait()
            XCTAssertFalse(partition.isOpen)
        }
        XCTAssertEqual(failures.all, [])
        XCTAssertGreaterThan(counts.reads, 0)
        XCTAssertGreaterThan(counts.refused, 0, "no reader was refused by a close")
        try db.close()
    }
}

/// Tallies of the race, from several threads.
private final class Counters: @unchecked Sendable {
    private let lock = NSLock()
    private var values = (reads: 0, refused: 0, busy: 0)
    func add(read: Int = 0, refused: Int = 0, busy: Int = 0) {
        lock.withLock {
            values.reads += read
            values.refused += refused
            values.busy += busy
        }
    }
    var reads: Int { lock.withLock { values.reads } }
    var refused: Int { lock.withLock { values.refused } }
}
