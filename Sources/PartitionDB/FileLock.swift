#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The lock that lets one writing process at a time use a database directory. It is an `flock`
/// on the file `LOCK`, which the kernel releases when the holder exits or dies, so a crash never
/// leaves a stale lock. A writer holds it exclusively and writes its process id into the file, for
/// the error message of the next contender; read-only openers share it, so no writer can start
/// while they read. Protocol and what a contender sees: spec/file-format.md#lock
///
/// `flock` rather than POSIX `fcntl` locks: those are dropped when *any* descriptor of the file
/// in the process closes, and the engine closes and reopens files freely.
final class FileLock: @unchecked Sendable {
    enum Mode: Sendable {
        /// One holder, which writes its pid into the file.
        case exclusive
        /// Any number of holders (read-only opens); excludes an exclusive holder.
        case shared
    }

    let path: String
    let mode: Mode
    /// Guarded by `lock`; -1 once released (or when a read-only open went without the file).
    private var fd: Int32
    private let lock = Lock()

    /// How long a contender that finds the lock held but no live holder's pid in the file waits
    /// for the holder to write it (taking the lock itself if the holder leaves meanwhile).
    static let pidWait: Double = 0.5

    /// Takes the lock on `path`, or throws `locked`, `lockedByReaders` or
    /// `lockedByUnknownProcess` when another open file description holds it.
    init(path: String, mode: Mode = .exclusive) throws {
        self.path = path
        self.mode = mode
        let fd = try FileLock.openFile(path, mode: mode)
        self.fd = fd
        guard fd >= 0 else { return }
        do {
            try acquire()
        } catch {
            close(fd)
            self.fd = -1
            throw error
        }
    }

    /// Opens `LOCK`: a writer creates it if missing. A read-only opener opens it read-only, creates it
    /// (empty) if missing, and goes without it (-1) only when it cannot open or create it because
    /// the directory is not writable: then no process of this user can write the database either.
    private static func openFile(_ path: String, mode: Mode) throws -> Int32 {
        let flags = mode == .exclusive ? O_RDWR | O_CREAT : O_RDONLY
        var fd = open(path, flags | O_CLOEXEC, 0o644)
        if fd < 0 && errno == ENOENT && mode == .shared { fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644) }
        guard fd < 0 else { return fd }
        let error = errno
        if mode == .shared && (error == EACCES || error == EROFS || error == EPERM)
            && access(PartitionFile.directoryOf(path), W_OK) != 0
        {
            return -1
        }
        if mode == .exclusive && (error == EACCES || error == EROFS) {
            throw PartitionDBError.readOnly(path: path, operation: "opening the database for writing")
        }
        throw PartitionDBError.io(errno: error, operation: "open", path: path)
    }

    /// Takes the lock; on contention waits up to `pidWait` for the holder's pid to appear.
    private func acquire() throws {
        let operation = mode == .exclusive ? LOCK_EX : LOCK_SH
        let start = FileLock.now()
        while true {
            if flock(fd, operation | LOCK_NB) == 0 {
                if mode == .exclusive { writePID() }
                return
            }
            let error = errno
            guard error == EWOULDBLOCK || error == EINTR else {
                throw PartitionDBError.io(errno: error, operation: "flock", path: path)
            }
            if error == EINTR { continue }
            // Readers share the lock and record nothing. A shared lock is granted when readers
            // or no one hold it; then a conversion to exclusive tells the two apart.
            if mode == .exclusive && flock(fd, LOCK_SH | LOCK_NB) == 0 {
                if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                    writePID()
                    return
                }
                _ = flock(fd, LOCK_UN)
                throw PartitionDBError.lockedByReaders(path: path)
            }
            // The holder writes its pid right after its flock; in between the file is empty
            // (or holds a dead holder's pid). Never report a pid that is not the holder's.
            if let pid = liveHolderPID() { throw PartitionDBError.locked(path: path, pid: pid) }
            guard FileLock.now() - start < FileLock.pidWait else {
                throw PartitionDBError.lockedByUnknownProcess(path: path)
            }
            usleep(1000)
        }
    }

    /// The pid recorded in the file, if it is exactly digits and a newline and names a live process.
    private func liveHolderPID() -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n >= 2, n < buffer.count, buffer[n - 1] == 0x0A else { return nil }
        let digits = buffer[0..<(n - 1)]
        guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let pid = Int32(String(decoding: digits, as: UTF8.self)),
            pid > 0
        else { return nil }
        // A holder that died without a successor leaves its pid behind: not the holder.
        guard kill(pid, 0) == 0 || errno == EPERM else { return nil }
        return pid
    }

    /// Records this process as the holder: the pid is written over the old content, then the
    /// file is cut to its length, so a reader sees the old content, then a mix (refused by
    /// `liveHolderPID` as not one number and a newline), then the pid; never an empty file after
    /// a crash, and after a clean release (which empties the file) only nothing or the pid.
    private func writePID() {
        // Best effort: a full disk must not stop the open; contenders then say "unknown process".
        let text = Array("\(getpid())\n".utf8)
        let written = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        if written == text.count { _ = ftruncate(fd, off_t(text.count)) }
    }

    /// Whether the lock file is held (false when a read-only open found no usable `LOCK`).
    var isHeld: Bool { lock.withLock { fd >= 0 } }

    deinit { release() }

    /// Releases the lock; idempotent. A writer empties the file first, while still holding the
    /// lock, so that no later contender can take its pid for the next holder's.
    func release() {
        lock.withLock {
            if fd >= 0 {
                if mode == .exclusive { _ = ftruncate(fd, 0) }
                close(fd)
                fd = -1
            }
        }
    }

    private static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
