import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running `pdb apply` (or any program): its stdin is a pipe we write to, its stdout a pipe a
/// thread reads lines from, its stderr a file.
///
/// Spawned with `posix_spawn` over file descriptors this object alone owns (opened close-on-exec,
/// each closed exactly once, in `kill()`), so the test depends on nothing but the system calls
/// it makes, and the 200 kills take about a fifth less time than through Foundation's `Process`.
final class ApplyChild: @unchecked Sendable {
    let pid: pid_t
    /// The write end of the child's stdin; -1 once closed.
    private var inputFD: Int32
    /// The read end of the child's stdout, read by the reader thread until it ends.
    private let outputFD: Int32
    private let errorPath: String
    /// Protects `readLines`, `partial` and `ended`; signalled when a line arrives or stdout ends.
    private let condition = NSCondition()
    private var readLines: [String] = []
    private var partial: [UInt8] = []
    private var ended = false
    /// Whether `kill()` has reaped the child and closed the descriptors.
    private var finished = false
    /// What the child wrote to stderr, read when it has ended.
    private(set) var errorText = ""

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    init(binary: URL, arguments: [String]) throws {
        errorPath = FileManager.default.temporaryDirectory.appendingPathComponent("pdb-kill-\(UUID().uuidString)").path
        let stdinPipe = try ApplyChild.pipe()
        let stdoutPipe: [Int32]
        do {
            stdoutPipe = try ApplyChild.pipe()
        } catch {
            Glibc.close(stdinPipe[0])
            Glibc.close(stdinPipe[1])
            throw error
        }
        let errorFD = Glibc.open(errorPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        // The child's ends: dup2 gives it copies without close-on-exec as 0, 1 and 2; every other
        // descriptor of ours closes at its exec.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        if errorFD >= 0 { posix_spawn_file_actions_adddup2(&actions, errorFD, 2) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary.path] + arguments).map { strdup($0) } + [nil]
        var pid: pid_t = 0
        let status = posix_spawn(&pid, binary.path, &actions, nil, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        for pointer in argv { free(pointer) }
        // The parent keeps only its own ends.
        Glibc.close(stdinPipe[0])
        Glibc.close(stdoutPipe[1])
        if errorFD >= 0 { Glibc.close(errorFD) }
        guard status == 0 else {
            Glibc.close(stdinPipe[1])
            Glibc.close(stdoutPipe[0])
            throw SpawnError(description: "posix_spawn \(binary.path): error \(status)")
        }
        self.pid = pid
        inputFD = stdinPipe[1]
        outputFD = stdoutPipe[0]
        Thread { [self] in readLoop() }.start()
    }

    /// A pipe whose two ends close on exec (Glibc does not export `pipe2`; the test's main
    /// thread is the only one that starts processes, so no child can inherit them in between).
    private static func pipe() throws -> [Int32] {
        var ends: [Int32] = [-1, -1]
        guard Glibc.pipe(&ends) == 0 else { throw SpawnError(description: "pipe: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return ends
    }

    deinit {
        if !finished { _ = kill() }
    }

    /// The reader thread: collects stdout lines until the child's stdout ends.
    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            condition.lock()
            defer {
                condition.broadcast()
                condition.unlock()
            }
            if n <= 0 {
                ended = true
                return
            }
            append(buffer[0..<n])
        }
    }

    /// Called by the reader with the condition locked.
    private func append(_ bytes: ArraySlice<UInt8>) {
        for byte in bytes {
            if byte == 0x0A {
                readLines.append(String(decoding: partial, as: UTF8.self))
                partial.removeAll()
            } else {
                partial.append(byte)
            }
        }
    }

    var lines: [String] { condition.withLock { readLines } }
    var lineCount: Int { condition.withLock { readLines.count } }

    /// What `waitForLines` saw.
    enum Wait: Equatable {
        case lines(Int)
        /// Stdout ended: the child is gone.
        case ended
        /// The child hangs; what /proc, the debugger and its stderr say about it.
        case timedOut(String)
    }

    /// Waits until more than `count` lines were read or stdout ended. A child silent for a
    /// `patience` is looked at: one that waits on the disk or made system calls in that time is on a
    /// slow machine and gets another `patience`, up to `limit` in all; one that did nothing hangs.
    func waitForLines(moreThan count: Int, patience: TimeInterval = 60, limit: TimeInterval = 300) -> Wait {
        let started = Date()
        var earlier = ProcessSnapshot(pid: pid)
        while true {
            if let result = waitForLines(moreThan: count, until: Date().addingTimeInterval(patience)) { return result }
            let now = ProcessSnapshot(pid: pid)
            let waited = Int(Date().timeIntervalSince(started))
            if let now, let before = earlier, now.showsProgress(since: before),
                Date().timeIntervalSince(started) < limit
            {
                print(
                    "kill test: no acknowledgement for \(waited) s, but the child is busy; waiting on\n\(now.description)"
                )
                earlier = now
                continue
            }
            return .timedOut(
                "no acknowledgement for \(waited) s\n\(now?.description ?? "process gone")\n"
                    + ProcessSnapshot.userStacks(pid: pid)
                    + "\nstderr so far: \((try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")")
        }
    }

    /// Waits until more than `count` lines were read (or stdout ended) or `deadline`; nil at the
    /// deadline.
    private func waitForLines(moreThan count: Int, until deadline: Date) -> Wait? {
        condition.lock()
        defer { condition.unlock() }
        while readLines.count <= count {
            if ended { return .ended }
            if !condition.wait(until: deadline) { return nil }
        }
        return .lines(readLines.count)
    }

    /// Writes `text` to the child's stdin; false once the child is gone.
    func write(_ text: String) -> Bool {
        guard inputFD >= 0 else { return false }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(inputFD, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            bytes = bytes.dropFirst(n)
        }
        return true
    }

    /// Sends SIGKILL (if the child still runs), waits for it and for the end of its stdout, closes
    /// the descriptors, and returns the signal that ended the child, or minus its exit status when
    /// it exited by itself.
    func kill() -> Int32 {
        guard !finished else { return 0 }
        finished = true
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        Glibc.close(inputFD)
        inputFD = -1
        condition.lock()
        while !ended { condition.wait() }
        condition.unlock()
        // The reader has returned: nothing reads this descriptor any more.
        Glibc.close(outputFD)
        errorText = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        unlink(errorPath)
        let signal = status & 0x7F
        return signal != 0 ? signal : -((status >> 8) & 0xFF)
    }
}
