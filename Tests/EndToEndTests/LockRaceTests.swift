import Foundation
import PartitionDB
import XCTest

/// Found: "locked by process 0". A contender that met a `pdb` holder between its flock and its
/// pid write read an empty `LOCK`. Here a real holder (`pdb apply`, which keeps the database
/// while it reads stdin) starts while this process tries to open the database as fast as it can:
/// every refusal must name the holder's pid.
final class LockRaceTests: PDBTestCase {
    func testContendersOfAJustStartedHolderSeeItsPID() throws {
        try makeDatabase()
        let eu = try Region("eu")
        var refusals = 0
        // A holder that meets this process's lock first gives up: that attempt proves nothing, so
        // try again (a slow build, such as the sanitizer's, loses the race more often).
        for _ in 0..<60 where refusals < 3 {
            let holder = Process()
            holder.executableURL = PDBTestCase.binary
            holder.arguments = ["apply", db, "users"]
            let input = Pipe()
            holder.standardInput = input
            holder.standardOutput = FileHandle.nullDevice
            holder.standardError = FileHandle.nullDevice
            try holder.run()
            defer { if holder.isRunning { holder.terminate() } }
            // Until the holder is seen holding the lock (or it gave up, having met ours).
            var seen = false
            while !seen && holder.isRunning {
                do {
                    try Database.open(at: db, region: eu).close()
                } catch let error as PartitionDBError {
                    XCTAssertEqual(error, .locked(path: db + "/LOCK", pid: holder.processIdentifier))
                    XCTAssertFalse(error.description.contains("process 0"), error.description)
                    seen = true
                }
            }
            if seen { refusals += 1 }
            try input.fileHandleForWriting.close()
            holder.waitUntilExit()
        }
        XCTAssertGreaterThan(refusals, 0, "no attempt met the holder")
    }
}
