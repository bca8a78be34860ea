import Foundation
import XCTest

/// What one run of `pdb` did.
struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
    /// A signal ended the child (then `status` is the signal's number).
    var signaled = false
    /// The child outlived the run's timeout and was killed with SIGKILL.
    var timedOut = false

    /// The non-empty lines of stdout.
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// Stdout parsed as one JSON object.
    func object(file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any],
            "stdout is not one JSON object: \(stdout)", file: file, line: line)
    }

    /// Each stdout line parsed as a JSON object.
    func objects(file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        try lines.map { text in
            try XCTUnwrap(
                try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                "line is not a JSON object: \(text)", file: file, line: line)
        }
    }

    /// The `code` of a `{"error":{"code":C,"message":M}}` object on stdout.
    func errorCode() throws -> String? {
        (try object()["error"] as? [String: Any])?["code"] as? String
    }
}

/// Base class of the end-to-end tests: runs the built `pdb` binary as a child process, each
/// test in a fresh temporary directory that is removed afterwards.
class PDBTestCase: XCTestCase {
    /// The per-test temporary directory.
    var root: URL!
    /// `root/db`, the database most tests use.
    var db: String { root.appendingPathComponent("db").path }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("pdb-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let root { try? FileManager.default.removeItem(at: root) }
    }

    /// Starts `pdb serve --config CONFIG` with its output discarded; the caller stops it.
    static func startServe(config: String) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--config", config]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// The `pdb` binary: `PDB_BINARY` if set, else the one built next to this test bundle,
    /// else the one in the package's build folders.
    static let binary: URL = {
        let fileManager = FileManager.default
        if let path = ProcessInfo.processInfo.environment["PDB_BINARY"] { return URL(fileURLWithPath: path) }
        var candidates: [URL] = []
        let bundle = Bundle(for: PDBTestCase.self).bundleURL
        candidates.append(bundle.deletingLastPathComponent().appendingPathComponent("pdb"))
        candidates.append(bundle.appendingPathComponent("pdb"))
        if let executable = Bundle.main.executableURL {
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent("pdb"))
        }
        // Tests/EndToEndTests/PDBTestCase.swift -> the package root.
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for folder in [".build-cli", ".build"] {
            candidates.append(package.appendingPathComponent("\(folder)/debug/pdb"))
        }
        return candidates.first { fileManager.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }()

    /// Runs `pdb` with `arguments` and `stdin` as its input, and waits for it to exit.
    @discardableResult
    func pdb(_ arguments: String..., stdin: String = "") throws -> RunResult {
        try run(arguments, stdin: stdin)
    }

    /// Runs `executable` (the `pdb` binary unless named) with `arguments`; with a `timeout`, kills
    /// it with SIGKILL once that many seconds have passed (a hang is a finding too).
    func run(
        _ arguments: [String], stdin: String = "", executable: URL = PDBTestCase.binary, timeout: TimeInterval? = nil
    ) throws -> RunResult {
        // Files rather than pipes, so a large output can never block the child.
        let id = UUID().uuidString
        let input = root.appendingPathComponent("stdin-\(id)")
        let output = root.appendingPathComponent("stdout-\(id)")
        let errors = root.appendingPathComponent("stderr-\(id)")
        try Data(stdin.utf8).write(to: input)
        try Data().write(to: output)
        try Data().write(to: errors)
        defer {
            for url in [input, output, errors] { try? FileManager.default.removeItem(at: url) }
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let inputHandle = try FileHandle(forReadingFrom: input)
        let outputHandle = try FileHandle(forWritingTo: output)
        let errorHandle = try FileHandle(forWritingTo: errors)
        defer {
            try? inputHandle.close()
            try? outputHandle.close()
            try? errorHandle.close()
        }
        process.standardInput = inputHandle
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        try process.run()
        var timedOut = false
        if let timeout {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && !timedOut {
                if Date() > deadline {
                    timedOut = true
                    kill(process.processIdentifier, SIGKILL)
                } else {
                    usleep(1000)
                }
            }
        }
        process.waitUntilExit()
        return RunResult(
            status: process.terminationStatus,
            stdout: String(decoding: try Data(contentsOf: output), as: UTF8.self),
            stderr: String(decoding: try Data(contentsOf: errors), as: UTF8.self),
            signaled: process.terminationReason == .uncaughtSignal, timedOut: timedOut)
    }

    /// Runs `script` with /bin/sh, where `$PDB` is the binary; for real pipelines.
    func shell(_ script: String) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        var environment = ProcessInfo.processInfo.environment
        environment["PDB"] = PDBTestCase.binary.path
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Small outputs only: read stderr after stdout has ended.
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return RunResult(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Asserts that `result` exited with `status`, showing its output when it did not.
    func assertExit(
        _ result: RunResult, _ status: Int32, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(
            result.status, status, "stdout: \(result.stdout)\nstderr: \(result.stderr)", file: file, line: line)
    }

    /// A database in region eu with partition `users`, alice living in eu and bob in us.
    /// Whether any file under `folder` holds `marker`'s bytes (the border tests' byte search).
    static func filesContain(_ folder: String, _ marker: String) throws -> Bool {
        !files(under: folder, containing: marker).isEmpty
    }

    /// The files under `folder` (recursively, relative to it) whose bytes contain `text`.
    static func files(under folder: String, containing text: String) -> [String] {
        let needle = Data(text.utf8)
        var found: [String] = []
        let enumerator = FileManager.default.enumerator(atPath: folder)
        while let name = enumerator?.nextObject() as? String {
            let path = "\(folder)/\(name)"
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = FileManager.default.contents(atPath: path)
            else { continue }
            if data.range(of: needle) != nil { found.append(name) }
        }
        return found
    }

    func makeDatabase() throws {
        assertExit(try pdb("init", db, "--region", "eu"), 0)
        assertExit(try pdb("create-partition", db, "users"), 0)
        assertExit(try pdb("home", "set", db, "alice", "eu"), 0)
        assertExit(try pdb("home", "set", db, "bob", "us"), 0)
    }
}
