#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The lock that lets one process at a time use a database directory. It is an `flock` on the
/// file `LOCK`, which the kernel releases when the holder exits or dies, so a crash never leaves
/// a stale lock. The file holds the holder's process id, for the error message.
final class FileLock: @unchecked Sendable {
    let path: String
    /// Guarded by `lock`; -1 once released.
    private var fd: Int32
    private let lock = Lock()

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PartitionDBError.io(errno: errno, operation: "open", path: path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard error == EWOULDBLOCK else { throw PartitionDBError.io(errno: error, operation: "flock", path: path) }
            let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
            let pid = Int32(text.trimmingCharacters(in: " \n")) ?? 0
            throw PartitionDBError.locked(path: path, pid: pid)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { release() }

    /// Releases the lock; idempotent.
    func release() {
        lock.withLock {
            if fd >= 0 {
                close(fd)
                fd = -1
            }
        }
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
