import Foundation
import PartitionDB
import XCTest

/// The read-only commands (`get`, `scan`, `info`, `check`, `home get`, `home list`) open the
/// database read-only: they work on a directory nobody may write, and change nothing.
final class ReadOnlyCommandTests: PDBTestCase {
    /// Every file of the database: its bytes and its modification time.
    private func state(_ path: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
            var info = stat()
            XCTAssertEqual(stat(path + "/" + name, &info), 0)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
            result[name] = "\(bytes.base64EncodedString()) mtime \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }
        return result
    }

    /// Runs `pdb` as a user that cannot write the database: `nobody` through setpriv when the
    /// tests run as root (root ignores file permissions), else this user, once the files are
    /// read-only. The binary is copied to a directory anyone may enter, with mode 755.
    private func runUnprivileged(_ arguments: [String]) throws -> RunResult {
        let binary = root.appendingPathComponent("bin/pdb")
        if !FileManager.default.fileExists(atPath: binary.path) {
            try FileManager.default.createDirectory(
                at: binary.deletingLastPathComponent(), withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o755])
            try FileManager.default.copyItem(at: PDBTestCase.binary.resolvingSymlinksInPath(), to: binary)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: binary.path)
        }
        guard getuid() == 0 else { return try run(arguments, executable: binary) }
        return try run(
            ["--reuid=nobody", "--regid=nogroup", "--clear-groups", binary.path] + arguments,
            executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
    }

    func testReadOnlyCommandsWorkOnADirectoryNobodyMayWrite() throws {
        try makeDatabase()
        assertExit(try pdb("put", db, "users", "t", "k1", "v1", "--owner", "alice"), 0)
        assertExit(try pdb("put", db, "users", "t", "k2", "v2", "--owner", "alice"), 0)
        // Readable by everyone, writable by no one: files 0444, the directory 0555.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.path)
        for name in try FileManager.default.contentsOfDirectory(atPath: db) {
            try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: db + "/" + name)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: db)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: db) }
        let before = try state(db)

        let get = try runUnprivileged(["get", db, "users", "t", "k1"])
        assertExit(get, 0)
        XCTAssertEqual(get.stdout, "v1\n")
        let scan = try runUnprivileged(["scan", db, "users", "t", "--json"])
        assertExit(scan, 0)
        XCTAssertEqual(try scan.objects().compactMap { $0["key"] as? String }, ["k1", "k2"])
        let info = try runUnprivileged(["info", db, "--json"])
        assertExit(info, 0)
        XCTAssertEqual(try info.object()["region"] as? String, "eu")
        let check = try runUnprivileged(["check", db, "--json"])
        assertExit(check, 0)
        XCTAssertEqual(try check.object()["clean"] as? Bool, true)
        let home = try runUnprivileged(["home", "get", db, "alice"])
        assertExit(home, 0)
        XCTAssertEqual(home.stdout, "eu\n")
        let homes = try runUnprivileged(["home", "list", db, "--json"])
        assertExit(homes, 0)
        XCTAssertEqual((try homes.object()["homes"] as? [Any])?.count, 2, homes.stdout)

        let put = try runUnprivileged(["put", db, "users", "t", "k3", "v3", "--owner", "alice"])
        assertExit(put, 1)
        XCTAssertTrue(put.stderr.contains("is read-only here"), put.stderr)
        let putJSON = try runUnprivileged(["put", db, "users", "t", "k3", "v3", "--owner", "alice", "--json"])
        assertExit(putJSON, 1)
        XCTAssertEqual(try putJSON.errorCode(), "read_only")

        XCTAssertEqual(try state(db), before, "a command changed, created or removed a file")
    }

    /// While a read-only `pdb` holds the shared lock, a writer is refused with `locked`, both in
    /// this process and as another `pdb`.
    func testAWriterIsRefusedWhileAReadOnlyCommandHoldsTheLock() throws {
        try makeDatabase()
        // Enough output that the scan blocks on a pipe nobody reads, holding the lock.
        let value = String(repeating: "x", count: 200)
        let lines = (0..<2_000).map { #"{"op":"put","table":"t","key":"k\#($0)","value":"\#(value)","owner":"alice"}"# }
        assertExit(try pdb("apply", db, "users", stdin: (lines + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)

        let reader = Process()
        reader.executableURL = PDBTestCase.binary
        reader.arguments = ["scan", db, "users", "t", "--json"]
        let output = Pipe()
        reader.standardOutput = output
        try reader.run()
        defer { if reader.isRunning { reader.terminate() } }

        // Its first output comes once it holds the lock; then it blocks on the full pipe.
        var scanned = output.fileHandleForReading.availableData
        XCTAssertFalse(scanned.isEmpty)
        var refusal: PartitionDBError? = nil
        XCTAssertThrowsError(try Database.open(at: db, region: Region("eu"))) { refusal = $0 as? PartitionDBError }
        XCTAssertEqual(refusal, .lockedByReaders(path: db + "/LOCK"))
        let put = try pdb("put", db, "users", "t", "k", "v", "--owner", "alice", "--json")
        assertExit(put, 1)
        XCTAssertEqual(try put.errorCode(), "locked")

        scanned.append(output.fileHandleForReading.readDataToEndOfFile())
        reader.waitUntilExit()
        XCTAssertEqual(reader.terminationStatus, 0)
        XCTAssertEqual(String(decoding: scanned, as: UTF8.self).split(separator: "\n").count, 2_000)
        assertExit(try pdb("put", db, "users", "t", "k", "v", "--owner", "alice"), 0)
    }
}
