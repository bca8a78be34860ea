import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One run of `pdb` spawned with `posix_spawn`, for what Foundation's `Process` cannot do: raw
/// argument bytes that are not UTF-8, stdin bytes fed through a pipe, descriptors closed or
/// pointed at a chosen file, and the child's own peak memory.
struct RawRun {
    /// What the child gets as descriptor 1 or 2.
    enum Target {
        /// A fresh file, read back into `stdout`/`stderr` afterwards.
        case capture
        /// Closed in the child.
        case closed
        /// This file, opened for writing (`/dev/full`).
        case path(String)
        /// The write end of a pipe whose read end is closed before the child starts.
        case brokenPipe
    }

    /// Exit status, or nil when a signal ended the child.
    var status: Int32?
    var signal: Int32?
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    /// The child's peak resident memory, in KiB, as `/proc/PID/status` (`VmHWM`) showed it while
    /// its input was being fed and at the end of the input. Not `wait4`'s `ru_maxrss`: after
    /// `posix_spawn`'s vfork the child's maximum starts from the test process's own, which is
    /// hundreds of MiB after a long test run.
    var maxResidentKiB: Int = 0

    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    var lines: [String] { stdoutText.split(separator: "\n").map(String.init) }

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Runs `binary` with `arguments` (raw bytes each), writing `stdin` chunks into its stdin from
    /// a thread (a chunk is produced only when the pipe takes it, so input can be huge), and waits.
    static func run(
        _ binary: URL, _ arguments: [[UInt8]], stdin: @escaping @Sendable () -> [UInt8]? = { nil },
        stdout: Target = .capture, stderr: Target = .capture, closeStdin: Bool = false
    ) throws -> RawRun {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pdb-raw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var parentCloses: [Int32] = []
        defer { for fd in parentCloses { close(fd) } }

        var input: [Int32] = [-1, -1]
        guard pipe(&input) == 0 else { throw Failure(description: "pipe: errno \(errno)") }
        for end in input { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        if closeStdin {
            posix_spawn_file_actions_addclose(&actions, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        }
        var captures: [Int32: String] = [:]
        for (fd, target) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch target {
            case .capture:
                let path = directory.appendingPathComponent("fd\(fd)").path
                captures[fd] = path
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            case .closed:
                posix_spawn_file_actions_addclose(&actions, fd)
            case .path(let path):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY, 0)
            case .brokenPipe:
                var ends: [Int32] = [-1, -1]
                guard pipe(&ends) == 0 else { throw Failure(description: "pipe: errno \(errno)") }
                for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
                close(ends[0])  // Nobody will ever read: every write gets EPIPE.
                parentCloses.append(ends[1])
                posix_spawn_file_actions_adddup2(&actions, ends[1], fd)
            }
        }
        let argv: [UnsafeMutablePointer<CChar>?] =
            ([Array(binary.path.utf8)] + arguments).map { bytes in
                let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count + 1)
                pointer.initialize(from: bytes, count: bytes.count)
                pointer[bytes.count] = 0
                return UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: CChar.self)
            } + [nil]
        defer { for pointer in argv { pointer?.deallocate() } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, binary.path, &actions, nil, argv, environ)
        close(input[0])
        let writer = input[1]
        guard spawned == 0 else {
            close(writer)
            throw Failure(description: "posix_spawn: error \(spawned)")
        }
        // The parent's own SIGPIPE would kill the test if pdb stopped reading early.
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        let done = DispatchSemaphore(value: 0)
        let peak = PeakMemory(pid: pid)
        Thread {
            feeding: while let chunk = stdin() {
                peak.sample()
                var offset = 0
                while offset < chunk.count {
                    let n = chunk.withUnsafeBytes { write(writer, $0.baseAddress! + offset, $0.count - offset) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break feeding }
                    offset += n
                }
            }
            peak.sample()
            close(writer)
            done.signal()
        }.start()
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        done.wait()
        var result = RawRun()
        if status & 0x7F == 0 { result.status = (status >> 8) & 0xFF } else { result.signal = status & 0x7F }
        result.maxResidentKiB = peak.kib
        if let path = captures[1] {
            result.stdout = Array((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data())
        }
        if let path = captures[2] {
            result.stderr = Array((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data())
        }
        return result
    }

    /// Input that is `bytes`, in one chunk.
    static func input(_ bytes: [UInt8]) -> @Sendable () -> [UInt8]? {
        let box = Chunks([bytes])
        return { box.next() }
    }

    /// Hands out chunks one at a time, from the feeding thread only.
    final class Chunks: @unchecked Sendable {
        private var chunks: [[UInt8]]
        init(_ chunks: [[UInt8]]) { self.chunks = chunks.reversed() }
        func next() -> [UInt8]? { chunks.popLast() }
    }
}

extension PDBTestCase {
    /// `pdb` spawned raw; see `RawRun`.
    func raw(
        _ arguments: [[UInt8]], stdin: [UInt8] = [], stdout: RawRun.Target = .capture,
        stderr: RawRun.Target = .capture
    ) throws -> RawRun {
        try RawRun.run(PDBTestCase.binary, arguments, stdin: RawRun.input(stdin), stdout: stdout, stderr: stderr)
    }

    /// `text` as an argument's bytes.
    func arg(_ text: String) -> [UInt8] { Array(text.utf8) }
}

/// The highest `VmHWM` (peak resident set, KiB) seen in `/proc/PID/status` of a running child.
final class PeakMemory: @unchecked Sendable {
    let pid: pid_t
    /// Written by the feeding thread only, read after it has ended.
    private(set) var kib = 0

    init(pid: pid_t) { self.pid = pid }

    func sample() {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let digits = line.dropFirst("VmHWM:".count).filter(\.isNumber)
            kib = max(kib, Int(digits) ?? 0)
        }
    }
}
