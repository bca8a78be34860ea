import CPartitionSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One open segment file of a retained shipped log (spec/replication.md#retained-segments). The
/// only file of Residency that calls the system's file functions. `pread` and `pwrite` at given
/// offsets need no shared position, so readers and the one appender may use it at once; the owner
/// (`ShippedLog`) serializes appends and knows the valid length. The descriptor closes when the
/// last reference goes, so a reader can finish a segment that retention has just removed.
final class SegmentFile: Sendable {
    let path: String
    let firstLSN: UInt64
    private let descriptor: Int32

    private init(path: String, firstLSN: UInt64, descriptor: Int32) {
        self.path = path
        self.firstLSN = firstLSN
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Creates a new segment holding only its header (`O_EXCL`: an existing file is an error).
    static func create(directory: String, fileID: [UInt8], firstLSN: UInt64) throws -> SegmentFile {
        let path = "\(directory)/\(SegmentFormat.fileName(firstLSN: firstLSN))"
        let descriptor = openFile(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ResidencyError.retainedLog(path: path, operation: "create", errno: errno) }
        let file = SegmentFile(path: path, firstLSN: firstLSN, descriptor: descriptor)
        try file.write(SegmentFormat.header(fileID: fileID, firstLSN: firstLSN), at: 0)
        return file
    }

    /// Opens an existing segment for reading and, unless `readOnly` (`pdb check`), appending; its
    /// contents are checked by the caller.
    static func open(path: String, firstLSN: UInt64, readOnly: Bool = false) throws -> SegmentFile {
        let descriptor = openFile(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { throw ResidencyError.retainedLog(path: path, operation: "open", errno: errno) }
        return SegmentFile(path: path, firstLSN: firstLSN, descriptor: descriptor)
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes {
                pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset + done))
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw ResidencyError.retainedLog(path: path, operation: "write", errno: errno) }
            done += count
        }
        // The kernel is asked to start writing each whole MiB as it fills, so the segments'
        // dirty pages leave in small steps instead of a burst of writeback that stalls the
        // fsyncs of commits and replicas behind it.
        let mebibyte = 1 << 20
        let end = offset + bytes.count
        if end / mebibyte > offset / mebibyte {
            let start = (end / mebibyte - 1) * mebibyte
            _ = pdb_start_writeback(descriptor, Int64(start), Int64(mebibyte))
        }
    }

    /// `count` bytes from `offset`; fewer only when the file ends first.
    func read(at offset: Int, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw ResidencyError.retainedLog(path: path, operation: "read", errno: errno) }
            if got == 0 { break }
            done += got
        }
        bytes.removeSubrange(done...)
        return bytes
    }

    func size() throws -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw ResidencyError.retainedLog(path: path, operation: "stat", errno: errno)
        }
        return Int(info.st_size)
    }

    func truncate(to length: Int) throws {
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            throw ResidencyError.retainedLog(path: path, operation: "truncate", errno: errno)
        }
    }

    func sync() throws {
        guard fsync(descriptor) == 0 else {
            throw ResidencyError.retainedLog(path: path, operation: "fsync", errno: errno)
        }
    }

    func remove() { unlink(path) }

    /// The segment files in `directory`, oldest first, with the first LSN their names give;
    /// other names are left alone. A missing directory holds none.
    static func list(directory: String) -> [(path: String, firstLSN: UInt64)] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var found: [(String, UInt64)] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasSuffix(SegmentFormat.suffix), name.count == 20 + SegmentFormat.suffix.count,
                let lsn = UInt64(name.prefix(20))
            else { continue }
            found.append(("\(directory)/\(name)", lsn))
        }
        return found.sorted { $0.1 < $1.1 }
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `directory` if it does not exist (mode 0755 less the umask).
    static func makeDirectory(_ directory: String) throws {
        if mkdir(directory, 0o755) != 0, errno != EEXIST {
            throw ResidencyError.retainedLog(path: directory, operation: "create the directory", errno: errno)
        }
    }

    /// Makes the directory's entries (created and removed segments) durable.
    static func syncDirectory(_ directory: String) {
        let descriptor = openFile(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }
}

/// The system's `open`, under a name the static `SegmentFile.open` does not hide.
private func openFile(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { open(path, flags, mode) }
