import Foundation
import XCTest

@testable import PartitionDB

/// The `LOCK` file: a contender always names the holder, never a made-up process.
final class FileLockTests: XCTestCase {
    /// Found: "locked by process 0". The holder takes the flock and only then writes its pid, so
    /// a contender in between read an empty file. Threads race for a fresh `LOCK` each round:
    /// one wins, every other must report the winner's pid (this process's), never 0.
    func testContendersNeverReportPIDZero() throws {
        let path = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let failures = FailureLog()
        var refusals = 0
        for round in 0..<200 {
            let file = path + "/LOCK-\(round)"
            let start = DispatchSemaphore(value: 0)
            let group = DispatchGroup()
            let results = Results()
            for _ in 0..<6 {
                DispatchQueue.global().async(group: group) {
                    start.wait()
                    do {
                        let lock = try FileLock(path: file)
                        results.won(lock)
                    } catch let error as PartitionDBError {
                        results.refused(error)
                    } catch {
                        failures.add("unexpected \(error)")
                    }
                }
            }
            for _ in 0..<6 { start.signal() }
            group.wait()
            let (winners, errors) = results.all
            if winners.count != 1 { failures.add("round \(round): \(winners.count) holders") }
            for error in errors where error != .locked(path: file, pid: getpid()) {
                failures.add("round \(round): \(error)")
            }
            refusals += errors.count
            for lock in winners { lock.release() }
        }
        XCTAssertEqual(failures.all, [])
        XCTAssertEqual(refusals, 200 * 5)
    }

    /// A released lock leaves an empty file, so no contender can take the last holder's pid for
    /// the next one's; and a pid left by a holder that died is not reported.
    func testReleaseEmptiesTheFileAndADeadHoldersPIDIsIgnored() throws {
        let path = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let file = path + "/LOCK"
        let lock = try FileLock(path: file)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "\(getpid())\n")
        lock.release()
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)).count, 0)

        // A shared holder records no pid: a writer learns that readers hold it.
        let reader = try FileLock(path: file, mode: .shared)
        XCTAssertThrowsError(try FileLock(path: file)) { error in
            XCTAssertEqual(error as? PartitionDBError, .lockedByReaders(path: file))
        }
        let secondReader = try FileLock(path: file, mode: .shared)
        secondReader.release()
        reader.release()

        // A holder that records nothing readable (here: the pid of no living process) is
        // reported without a pid, after the bounded wait.
        let holder = try FileLock(path: file)
        // Written in place (the holder's flock is on this inode; a rename would replace it).
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: file))
        try handle.write(contentsOf: Data("999999999\n".utf8))
        try handle.close()
        let started = Date()
        XCTAssertThrowsError(try FileLock(path: file)) { error in
            XCTAssertEqual(error as? PartitionDBError, .lockedByUnknownProcess(path: file))
            XCTAssertEqual((error as? PartitionDBError)?.code, "locked")
            XCTAssertFalse("\(error)".contains("process 0"))
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        holder.release()
    }
}

/// What the threads of one round got.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var winners: [FileLock] = []
    private var errors: [PartitionDBError] = []
    func won(_ lock: FileLock) { self.lock.withLock { winners.append(lock) } }
    func refused(_ error: PartitionDBError) { lock.withLock { errors.append(error) } }
    var all: ([FileLock], [PartitionDBError]) { lock.withLock { (winners, errors) } }
}
