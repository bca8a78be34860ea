import Foundation
import XCTest

/// One process at a time: a second `pdb` is refused while the first holds the database.
final class LockCommandTests: PDBTestCase {
    func testSecondProcessIsRefusedWhileTheFirstHoldsTheDatabase() throws {
        try makeDatabase()
        let first = Process()
        first.executableURL = PDBTestCase.binary
        first.arguments = ["apply", db, "users"]
        let input = Pipe()
        let output = Pipe()
        first.standardInput = input
        first.standardOutput = output
        try first.run()
        defer { if first.isRunning { first.terminate() } }

        // Once the first commit is reported, the first process certainly holds the lock.
        let line =
            #"{"op":"put","table":"t","key":"k","value":"v","owner":"alice"}"# + "\n" + #"{"op":"commit"}"# + "\n"
        input.fileHandleForWriting.write(Data(line.utf8))
        var received = Data()
        while !received.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            received.append(chunk)
        }
        XCTAssertEqual(String(decoding: received, as: UTF8.self), #"{"committed":1}"# + "\n")

        let second = try pdb("put", db, "users", "t", "k2", "v2", "--owner", "alice")
        assertExit(second, 1)
        XCTAssertTrue(second.stderr.contains("locked by process \(first.processIdentifier)"), second.stderr)
        let secondJSON = try pdb("put", db, "users", "t", "k2", "v2", "--owner", "alice", "--json")
        XCTAssertEqual(try secondJSON.errorCode(), "locked")

        try input.fileHandleForWriting.close()
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0)

        // Released at exit: now the second process gets in.
        assertExit(try pdb("put", db, "users", "t", "k2", "v2", "--owner", "alice"), 0)
        XCTAssertEqual(try pdb("get", db, "users", "t", "k").stdout, "v\n")
    }
}
