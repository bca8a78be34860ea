import CPartitionSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The only door between the engine and the operating system's files. Every read, write, fsync,
/// truncate, rename and directory sync goes through these two protocols, so tests can record,
/// fail or replay them (see spec/testing.md once it exists).
package protocol FileSystem: Sendable {
    /// Opens `path` for reading and writing, creating it when `create` is true.
    func open(_ path: String, create: Bool) throws -> any FileHandle
    /// Opens the existing file `path` for reading only (`O_RDONLY`): works on a file and in a
    /// directory this process may not write. Writing through the handle fails.
    func openReadOnly(_ path: String) throws -> any FileHandle
    func exists(_ path: String) -> Bool
    func remove(_ path: String) throws
    func rename(_ from: String, to: String) throws
    /// Makes creations, renames and removals in `directory` durable.
    func syncDirectory(_ directory: String) throws
    func makeDirectory(_ path: String) throws
    func list(_ directory: String) throws -> [String]
    /// What the name `path` itself is (`lstat`: a symlink is reported, not followed), or nil
    /// when nothing has that name.
    func status(_ path: String) -> FileStatus?
    /// Creates `path`, which must not exist under any kind of name (a symlink included), and
    /// opens it for reading and writing (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    func createNew(_ path: String) throws -> any FileHandle
    /// `path` with every symlink and `.`/`..` resolved (`realpath`), or nil when it does not exist.
    func resolve(_ path: String) -> String?
}

/// What a name in a directory is: the engine opens only regular files with one name, its own.
package struct FileStatus: Equatable, Sendable {
    package enum Kind: Equatable, Sendable {
        case regular, directory, symbolicLink
        /// A device, FIFO or socket.
        case special
    }
    package var kind: Kind
    /// How many names (hard links) the file has.
    package var linkCount: Int

    package init(kind: Kind, linkCount: Int) {
        self.kind = kind
        self.linkCount = linkCount
    }
}

extension FileSystem {
    /// For the test file systems, which have regular files and directories only, each with one name.
    package func status(_ path: String) -> FileStatus? {
        exists(path) ? FileStatus(kind: .regular, linkCount: 1) : nil
    }

    package func createNew(_ path: String) throws -> any FileHandle {
        guard !exists(path) else { throw PartitionDBError.io(errno: EEXIST, operation: "open", path: path) }
        return try open(path, create: true)
    }

    package func resolve(_ path: String) -> String? { exists(path) ? path : nil }
}

extension FileSystem {
    /// Writes a new file whole or not at all: as `path + temporarySuffix`, created exclusively (a
    /// leftover of that name is unlinked first, which never writes through it), synced, renamed to
    /// `path` and the directory synced. On any failure the temporary file is removed and `path` is
    /// untouched. Backups, new partition files and preserved logs are written this way.
    func writeWhole<T>(
        _ path: String, temporarySuffix: String = ".creating", _ body: (any FileHandle) throws -> T
    ) throws -> T {
        let temporary = path + temporarySuffix
        try remove(temporary)
        let file = try createNew(temporary)
        do {
            let result: T
            do {
                defer { file.close() }
                result = try body(file)
                try file.sync()
            }
            try rename(temporary, to: path)
            try syncDirectory(PartitionFile.directoryOf(path))
            return result
        } catch {
            try? remove(temporary)
            throw error
        }
    }
}

package protocol FileHandle: AnyObject, Sendable {
    var path: String { get }
    /// Reads exactly `count` bytes at `offset`, or throws `unexpectedEndOfFile`.
    func read(at offset: UInt64, count: Int) throws -> [UInt8]
    /// Reads exactly `buffer.count` bytes at `offset` into `buffer`.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// Writes `parts` one after another from `offset`, as one write of their concatenation
    /// (`pwritev`: the parts are not copied into one buffer first).
    func write(gathering parts: [UnsafeRawBufferPointer], at offset: UInt64) throws
    func sync() throws
    func size() throws -> UInt64
    func truncate(to size: UInt64) throws
    func close()
    /// Maps `length` bytes of the file read-only and shared, so writes through `write` show in
    /// it; nil when this kind of handle cannot map. Bytes beyond the end of the file must never
    /// be touched (the kernel would raise SIGBUS).
    func mapReadOnly(length: Int) -> UnsafeRawPointer?
    func unmap(_ base: UnsafeRawPointer, length: Int)
    /// Lets the disk start on the bytes written at `offset..<offset+length` before the `sync`
    /// that makes them durable (a hint: no error, no durability; `sync` reports any failure).
    func startWriteback(at offset: UInt64, length: UInt64)
}

extension FileHandle {
    package func mapReadOnly(length: Int) -> UnsafeRawPointer? { nil }
    package func unmap(_ base: UnsafeRawPointer, length: Int) {}
    package func startWriteback(at offset: UInt64, length: UInt64) {}
}

extension FileHandle {
    package func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Handles without a gathering write (the test file systems) write the concatenation.
    package func write(gathering parts: [UnsafeRawBufferPointer], at offset: UInt64) throws {
        var joined: [UInt8] = []
        joined.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts { joined.append(contentsOf: part) }
        try write(joined, at: offset)
    }
}

/// The real file system, through POSIX calls.
package struct PosixFileSystem: FileSystem {
    package init() {}

    /// Never follows a symlink in the last component (`O_NOFOLLOW`): the engine's own files are
    /// regular files, and a symlink there is refused (`ELOOP`), not written through.
    package func open(_ path: String, create: Bool) throws -> any FileHandle {
        let flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0)
        let fd = Glibc.open(path, flags, 0o644)
        guard fd >= 0 else { throw PartitionDBError.io(errno: errno, operation: "open", path: path) }
        return PosixFileHandle(fd: fd, path: path)
    }

    package func openReadOnly(_ path: String) throws -> any FileHandle {
        // O_NONBLOCK: a FIFO put where a file should be opens at once instead of waiting for a
        // writer (it is then refused by what it reads); reads of regular files are unaffected.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw PartitionDBError.io(errno: errno, operation: "open", path: path) }
        return PosixFileHandle(fd: fd, path: path)
    }

    package func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    package func status(_ path: String) -> FileStatus? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        let kind: FileStatus.Kind
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .special
        }
        return FileStatus(kind: kind, linkCount: Int(info.st_nlink))
    }

    package func createNew(_ path: String) throws -> any FileHandle {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw PartitionDBError.io(errno: errno, operation: "open", path: path) }
        return PosixFileHandle(fd: fd, path: path)
    }

    package func resolve(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    package func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw PartitionDBError.io(errno: errno, operation: "unlink", path: path)
        }
    }

    package func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw PartitionDBError.io(errno: errno, operation: "rename", path: from)
        }
    }

    package func syncDirectory(_ directory: String) throws {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw PartitionDBError.io(errno: errno, operation: "open", path: directory) }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw PartitionDBError.io(errno: errno, operation: "fsync", path: directory) }
    }

    package func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw PartitionDBError.io(errno: errno, operation: "mkdir", path: path)
        }
    }

    package func list(_ directory: String) throws -> [String] {
        guard let dir = opendir(directory) else {
            throw PartitionDBError.io(errno: errno, operation: "opendir", path: directory)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            // A directory entry is only as long as its name: copying the whole 256-byte `d_name`
            // (as `entry.pointee.d_name` would) reads past the end of the last entry in the
            // buffer (AddressSanitizer: heap-buffer-overflow). Read the name up to its NUL in place.
            let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
            let name = String(cString: UnsafeRawPointer(entry).advanced(by: offset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

/// A file descriptor. `pread`/`pwrite` carry their own offsets, so one handle serves many threads.
final class PosixFileHandle: FileHandle, @unchecked Sendable {
    let fd: Int32
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close() }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw PartitionDBError.io(errno: errno, operation: "pread", path: path)
            }
            if n == 0 { throw PartitionDBError.unexpectedEndOfFile(path: path, offset: offset + UInt64(done)) }
            done += n
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw PartitionDBError.io(errno: errno, operation: "pwrite", path: path)
            }
            done += n
        }
    }

    /// Linux's IOV_MAX: the most parts one `pwritev` takes.
    static let maxVectors = 1024

    func write(gathering parts: [UnsafeRawBufferPointer], at offset: UInt64) throws {
        var vectors = parts.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress!), iov_len: $0.count)
        }
        var first = 0
        var position = off_t(offset)
        while first < vectors.count {
            let count = Int32(min(vectors.count - first, PosixFileHandle.maxVectors))
            let n = vectors.withUnsafeMutableBufferPointer { pwritev(fd, $0.baseAddress! + first, count, position) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PartitionDBError.io(errno: errno, operation: "pwritev", path: path)
            }
            // A regular file never takes nothing; do not spin if it does.
            if n == 0 { throw PartitionDBError.io(errno: EIO, operation: "pwritev", path: path) }
            position += off_t(n)
            // Skip the parts written whole; a short write leaves the rest of one part.
            var remaining = n
            while remaining > 0 && remaining >= vectors[first].iov_len {
                remaining -= vectors[first].iov_len
                first += 1
            }
            if remaining > 0 {
                vectors[first].iov_base += remaining
                vectors[first].iov_len -= remaining
            }
        }
    }

    func startWriteback(at offset: UInt64, length: UInt64) {
        // A failed writeback marks the file's error state, which the next `sync` returns: that
        // is where a failure is reported, so this hint's own result is not needed.
        _ = pdb_start_writeback(fd, Int64(offset), Int64(length))
    }

    func sync() throws {
        // fdatasync suffices: every write that matters lies within the file's size, and a size
        // change is metadata fdatasync flushes too.
        guard fdatasync(fd) == 0 else { throw PartitionDBError.io(errno: errno, operation: "fsync", path: path) }
    }

    func size() throws -> UInt64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw PartitionDBError.io(errno: errno, operation: "fstat", path: path) }
        return UInt64(info.st_size)
    }

    func truncate(to size: UInt64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else {
            throw PartitionDBError.io(errno: errno, operation: "ftruncate", path: path)
        }
    }

    func mapReadOnly(length: Int) -> UnsafeRawPointer? {
        let base = mmap(nil, length, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0)
        guard let base, base != MAP_FAILED else { return nil }
        // Lookups jump around the file: no read-ahead.
        _ = madvise(base, length, MADV_RANDOM)
        return UnsafeRawPointer(base)
    }

    func unmap(_ base: UnsafeRawPointer, length: Int) {
        munmap(UnsafeMutableRawPointer(mutating: base), length)
    }

    private let closeLock = Lock()
    private var isClosed = false

    func close() {
        closeLock.withLock {
            if !isClosed {
                isClosed = true
                Glibc.close(fd)
            }
        }
    }
}

/// An empty file that exists only in memory: the log of a partition opened read-only that has
/// none on disk (a read-only open creates nothing). Writes are refused.
final class EmptyFile: FileHandle, @unchecked Sendable {
    let path: String

    init(path: String) { self.path = path }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard count == 0 else { throw PartitionDBError.unexpectedEndOfFile(path: path, offset: offset) }
        return []
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.isEmpty else { throw PartitionDBError.unexpectedEndOfFile(path: path, offset: offset) }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        throw PartitionDBError.readOnly(path: path, operation: "writing")
    }

    func sync() throws {}
    func size() throws -> UInt64 { 0 }

    func truncate(to size: UInt64) throws {
        throw PartitionDBError.readOnly(path: path, operation: "truncating")
    }

    func close() {}
}

/// The file system of a database opened read-only: opens every file `O_RDONLY` and refuses
/// every call that would create, change or remove a file, so no code path of a read-only
/// database can write, whatever it tries.
struct ReadOnlyFileSystem: FileSystem {
    let base: any FileSystem

    func open(_ path: String, create: Bool) throws -> any FileHandle {
        guard !create else { throw PartitionDBError.readOnly(path: path, operation: "creating a file") }
        return try base.openReadOnly(path)
    }

    func openReadOnly(_ path: String) throws -> any FileHandle { try base.openReadOnly(path) }
    func exists(_ path: String) -> Bool { base.exists(path) }
    func list(_ directory: String) throws -> [String] { try base.list(directory) }

    func remove(_ path: String) throws {
        throw PartitionDBError.readOnly(path: path, operation: "removing a file")
    }

    func rename(_ from: String, to: String) throws {
        throw PartitionDBError.readOnly(path: from, operation: "renaming a file")
    }

    func syncDirectory(_ directory: String) throws {
        throw PartitionDBError.readOnly(path: directory, operation: "syncing the directory")
    }

    func makeDirectory(_ path: String) throws {
        throw PartitionDBError.readOnly(path: path, operation: "creating a directory")
    }

    func status(_ path: String) -> FileStatus? { base.status(path) }
    func resolve(_ path: String) -> String? { base.resolve(path) }

    func createNew(_ path: String) throws -> any FileHandle {
        throw PartitionDBError.readOnly(path: path, operation: "creating a file")
    }
}
