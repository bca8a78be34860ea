import Foundation
import Synchronization

/// Processes the benchmark starts: `pdb` commands and `pdb serve` replicas, PostgreSQL's servers
/// and clients. Every wait has a timeout; every server is registered so that a failure, an
/// interrupt or the end of the run stops it.
struct ProcessOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A long-running child: a `pdb serve` replica or a `postgres` server.
final class Child: Sendable {
    let name: String
    let pid: Int32
    /// The signal that asks it to stop cleanly (SIGTERM for `pdb serve`, SIGINT, PostgreSQL's fast
    /// shutdown, for `postgres`); SIGKILL follows if it has not exited in time.
    let stopSignal: Int32
    /// Its standard error (and, for `postgres`, its server log).
    let log: String
    /// Kept so the Process object (and its termination handler) lives as long as the child.
    private let process: Process
    private let exited = DispatchSemaphore(value: 0)
    private let exitStatus = Atomic<Int32>(Int32.min)

    fileprivate init(name: String, process: Process, stopSignal: Int32, log: String) {
        self.name = name
        self.pid = process.processIdentifier
        self.stopSignal = stopSignal
        self.log = log
        self.process = process
    }

    fileprivate func markExited(_ status: Int32) {
        exitStatus.store(status, ordering: .releasing)
        exited.signal()
        // Keep the semaphore signalled for every later waiter.
        exited.signal()
    }

    var isRunning: Bool { exitStatus.load(ordering: .acquiring) == Int32.min }

    /// Waits up to `seconds` for the process to exit; returns whether it did.
    @discardableResult
    func waitForExit(seconds: Double) -> Bool {
        guard isRunning else { return true }
        let done = exited.wait(timeout: .now() + seconds) == .success
        if done { exited.signal() }
        return done
    }

    /// Asks it to stop, then kills it after `seconds`. Idempotent.
    func stop(seconds: Double = 30) {
        defer { Children.shared.remove(self) }
        guard isRunning else { return }
        kill(pid, stopSignal)
        if waitForExit(seconds: seconds) { return }
        printError("[\(name)] did not stop within \(Int(seconds)) s of signal \(stopSignal); killing it\n")
        kill(pid, SIGKILL)
        waitForExit(seconds: 10)
    }

    /// The tail of its log, for an error message.
    func logTail(lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

/// Every child still running, so that `stopAll` can end them (on failure, on SIGINT or SIGTERM).
final class Children: Sendable {
    static let shared = Children()
    /// The children started and not yet stopped, by pid.
    private let running = Mutex<[Int32: Child]>([:])

    func add(_ child: Child) { running.withLock { $0[child.pid] = child } }
    func remove(_ child: Child) { _ = running.withLock { $0.removeValue(forKey: child.pid) } }

    /// Stops every child still running, newest first (standbys before their primary).
    func stopAll() {
        let children = running.withLock { $0.values.sorted { $0.pid > $1.pid } }
        for child in children { child.stop(seconds: 20) }
    }
}

/// Runs as another user when the benchmark is root (PostgreSQL's servers refuse to run as root):
/// `setpriv` execs the program itself, so the child's pid is the server's.
struct RunAs: Sendable {
    var user: String
    var uid: uid_t
    var gid: gid_t
    /// The account's home: its processes' HOME (libpq reads `~/.postgresql/` for client
    /// certificates, and root's home is not theirs to read).
    var home: String

    /// The account PostgreSQL runs as: `postgres` when this process is root, none otherwise.
    static func postgresIfRoot() throws -> RunAs? {
        guard getuid() == 0 else { return nil }
        guard let entry = getpwnam("postgres") else {
            throw ReplicationBenchError.setup(
                "running as root, but there is no postgres account to run PostgreSQL as (Debian's postgresql-15 "
                    + "creates it: Benchmarks/install-deps.sh)")
        }
        return RunAs(
            user: "postgres", uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
            home: String(cString: entry.pointee.pw_dir))
    }

    /// Gives `path` to this user (the servers' directories and key files).
    func own(_ path: String) throws {
        guard chown(path, uid, gid) == 0 else {
            throw ReplicationBenchError.system(operation: "chown", path: path, errno: errno)
        }
    }
}

enum Processes {
    /// The environment of every child: this one's, with the C locale (PostgreSQL's initdb and
    /// clients then neither look for nor complain about locales).
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C"
        environment["LANG"] = "C"
        environment.removeValue(forKey: "PGPASSWORD")
        return environment
    }

    private static func makeProcess(
        _ executable: String, _ arguments: [String], as user: RunAs?, stdout: String, stderr: String
    ) throws -> Process {
        let process = Process()
        if let user {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments =
                ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        var environment = self.environment
        if let user { environment["HOME"] = user.home }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        for path in [stdout, stderr] where path != "/dev/null" {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ReplicationBenchError.system(operation: "create", path: path, errno: errno)
            }
            if let user { try user.own(path) }
        }
        process.standardOutput = FileHandle(forWritingAtPath: stdout)
        process.standardError = stdout == stderr ? process.standardOutput : FileHandle(forWritingAtPath: stderr)
        return process
    }

    /// Runs a command to its end; fails if it runs longer than `timeout` seconds (it is killed).
    /// Its output goes to `LOGS/LABEL.stdout` and `.stderr`, and is returned.
    static func run(
        _ executable: String, _ arguments: [String], as user: RunAs? = nil, timeout: Double, logs: String,
        label: String
    ) throws -> ProcessOutput {
        let stdoutPath = "\(logs)/\(label).stdout"
        let stderrPath = "\(logs)/\(label).stderr"
        let process = try makeProcess(executable, arguments, as: user, stdout: stdoutPath, stderr: stderrPath)
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            throw ReplicationBenchError.setup("cannot start \(executable): \(error)")
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            _ = done.wait(timeout: .now() + 10)
            throw ReplicationBenchError.timeout("\(label) (\(executable)) did not finish within \(Int(timeout)) s")
        }
        let status =
            process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return ProcessOutput(
            status: status, stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    /// `run`, failing unless the command exits 0.
    @discardableResult
    static func check(
        _ executable: String, _ arguments: [String], as user: RunAs? = nil, timeout: Double, logs: String,
        label: String
    ) throws -> ProcessOutput {
        let output = try run(executable, arguments, as: user, timeout: timeout, logs: logs, label: label)
        guard output.status == 0 else {
            throw ReplicationBenchError.command(
                label: label, status: output.status,
                output: (output.stderr + output.stdout).split(separator: "\n").suffix(15).joined(separator: "\n"))
        }
        return output
    }

    /// Starts a server in the background, its stdout and stderr into `log`; registered in
    /// `Children` until stopped.
    static func start(
        _ executable: String, _ arguments: [String], as user: RunAs? = nil, name: String, log: String,
        stopSignal: Int32
    ) throws -> Child {
        let process = try makeProcess(executable, arguments, as: user, stdout: log, stderr: log)
        let holder = ChildHolder()
        process.terminationHandler = { process in
            holder.child.withLock { $0 }?.markExited(process.terminationStatus)
        }
        do {
            try process.run()
        } catch {
            throw ReplicationBenchError.setup("cannot start \(executable): \(error)")
        }
        let child = Child(name: name, process: process, stopSignal: stopSignal, log: log)
        holder.child.withLock { $0 = child }
        // It may have exited before the holder was filled.
        if !process.isRunning { child.markExited(process.terminationStatus) }
        Children.shared.add(child)
        return child
    }
}

/// Lets the termination handler, set before the child exists, reach it.
private final class ChildHolder: Sendable {
    let child = Mutex<Child?>(nil)
}

/// A free TCP port on 127.0.0.1 whose next `count - 1` ports are free too (bound and released:
/// another process could take one in between, which the servers would then report).
func freeLoopbackPorts(_ count: Int) throws -> Int {
    func bindable(_ port: Int) -> Int? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }
    for _ in 0..<200 {
        // Port 0: the kernel picks a free one; below 61,000 leaves room for the following ones.
        guard let first = bindable(0), first + count < 61_000 else { continue }
        if (1..<count).allSatisfy({ bindable(first + $0) != nil }) { return first }
    }
    throw ReplicationBenchError.setup("found no \(count) free consecutive ports on 127.0.0.1")
}

/// Writes `text` to standard error at once (progress lines).
func printError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// A value shared between threads, behind a lock (copyable, unlike `Mutex`, so closures can
/// capture it).
final class Shared<Value>: @unchecked Sendable {
    /// Protects `stored`.
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
