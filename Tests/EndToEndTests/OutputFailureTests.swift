import Foundation
import XCTest

/// Issue 11, output: `pdb` never writes its output into a database file, and a failed write to
/// stdout stops the command with exit 1 and a message on stderr (spec/cli.md#errors-and-exit-codes).
final class OutputFailureTests: PDBTestCase {
    let twoTransactions =
        [
            #"{"op":"put","table":"t","key":"a","value":"1","owner":"alice"}"#, #"{"op":"commit"}"#,
            #"{"op":"put","table":"t","key":"b","value":"2","owner":"alice"}"#, #"{"op":"commit"}"#,
        ].joined(separator: "\n") + "\n"

    func keys() throws -> [String] {
        let result = try pdb("scan", db, "users", "t", "--json")
        assertExit(result, 0)
        return try result.objects().map { $0["key"] as? String ?? "?" }
    }

    func applyArguments() -> [[UInt8]] { [arg("apply"), arg(db), arg("users")] }

    func testClosedStdoutAndStderrNeverReachTheLockFile() throws {
        try makeDatabase()
        // Before the fix descriptor 1 went to LOCK, and the committed lines were written there.
        let result = try raw(applyArguments(), stdin: Array(twoTransactions.utf8), stdout: .closed, stderr: .closed)
        XCTAssertEqual(result.status, 0)
        let lock = try String(contentsOfFile: db + "/LOCK", encoding: .utf8)
        // The holder empties LOCK when it releases it; while it runs LOCK holds its pid only.
        XCTAssertNotNil(
            lock.wholeMatch(of: /([0-9]+\n)?/), "LOCK holds only a pid or nothing: \(lock.debugDescription)")
        XCTAssertEqual(try keys(), ["a", "b"])
        assertExit(try pdb("check", db), 0)
    }

    func testApplyIntoAClosedPipeStopsWithAnError() throws {
        try makeDatabase()
        // Before the fix SIGPIPE killed pdb silently.
        let result = try raw(applyArguments(), stdin: Array(twoTransactions.utf8), stdout: .brokenPipe)
        XCTAssertNil(result.signal, "killed by signal \(result.signal ?? 0)")
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderrText.contains("cannot write to standard output: Broken pipe"), result.stderrText)
        // The first commit happened before its line failed; nothing after it was applied.
        XCTAssertEqual(try keys(), ["a"])
    }

    func testApplyToAFullDiskStopsAtTheFirstFailedLine() throws {
        try makeDatabase()
        let result = try raw(applyArguments(), stdin: Array(twoTransactions.utf8), stdout: .path("/dev/full"))
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(
            result.stderrText.contains("cannot write to standard output: No space left on device"), result.stderrText)
        XCTAssertEqual(try keys(), ["a"])
    }

    func testEveryCommandFailsWhenItsOutputCannotBeWritten() throws {
        try makeDatabase()
        assertExit(try pdb("put", db, "users", "t", "k", "v", "--owner", "alice"), 0)
        for arguments in [
            ["scan", db, "users", "t"], ["scan", db, "users", "t", "--json"], ["info", db],
            ["get", db, "users", "t", "k"],
            ["home", "list", db], ["put", db, "users", "t", "k2", "v", "--owner", "alice"],
        ] {
            for target in [RawRun.Target.path("/dev/full"), .brokenPipe] {
                let result = try raw(arguments.map(arg), stdout: target)
                XCTAssertEqual(result.status, 1, "\(arguments) \(target): \(result.stderrText)")
                XCTAssertTrue(
                    result.stderrText.hasPrefix("error: cannot write to standard output"),
                    "\(arguments): \(result.stderrText)")
            }
        }
        // With stdout fine and stderr gone, the commands still work.
        let quiet = try raw([arg("scan"), arg(db), arg("users"), arg("t")], stderr: .closed)
        XCTAssertEqual(quiet.status, 0)
        XCTAssertTrue(quiet.stdoutText.contains("k = v"), quiet.stdoutText)
    }
}
