import Foundation

@testable import PartitionDB

/// A `FileSystem` that passes every call to another one (the simulated or the real
/// `PosixFileSystem`) and fails some of them, as a dying disk or a full one would:
///
/// - `failOnce(at: n)` / `failFrom(n)`: the operation numbered `n` (counting from 1 every call
///   that can fail: opens, removes, renames, directory syncs and lists, reads, writes, syncs,
///   sizes, truncates) fails with EIO, once, or with every later one too.
/// - `fail(kinds, ...)`: operations of some kinds, optionally only on files whose name ends with a
///   suffix, fail with EIO (or `errno`), once or persistently.
/// - `shortWrite` on a matching write: the first half of the bytes (a whole number of 512-byte
///   sectors) reach the file, then the call fails, as `pwrite` returning a short count and then
///   an error does.
/// - `syncDelay`: every sync first sleeps, as on a slow disk.
/// - `freeSpace`: bytes the files may still grow by; a write that needs more writes what fits
///   and fails with ENOSPC. Shrinking or removing files gives space back. Setting it higher is
///   freeing space.
///
/// A failed sync is not passed on: on the simulated disk the data stays unsynced, so a power
/// loss after it can lose it, which is what a real failed `fsync` allows.
final class FaultInjectingFileSystem: FileSystem, @unchecked Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case open, remove, rename, syncDirectory, makeDirectory, list
        case read, write, sync, size, truncate
    }

    /// When and how to fail.
    enum Fault: Sendable {
        /// Only the operation numbered `n` fails.
        case failOnce(at: Int)
        /// The operation numbered `n` and every later one fail.
        case failFrom(Int)
        /// Operations of `kinds` on names ending with `suffix` (any name when nil) fail with
        /// `errno`; after the first, only if `persistent`. With `shortWrite`, a failing write
        /// first writes half its bytes.
        case fail(kinds: Set<Kind>, suffix: String?, errno: Int32, persistent: Bool, shortWrite: Bool)
    }

    /// A fault that happened.
    struct Injection: CustomStringConvertible {
        var operation: Int
        var kind: Kind
        var path: String
        var errno: Int32
        var description: String { "\(kind) #\(operation) on \(DiskImage.name(of: path)): errno \(errno)" }
    }

    let base: any FileSystem
    /// Protects everything below.
    private let lock = NSLock()
    private var fault: Fault? = nil
    private var operations = 0
    private var kinds: [(kind: Kind, path: String)] = []
    private var injections: [Injection] = []
    private var space: Int? = nil
    /// Bytes the files grew by, net, and the most that ever was.
    private var used = 0
    private var peak = 0

    init(wrapping base: any FileSystem) {
        self.base = base
    }

    /// Operations counted so far.
    var operationCount: Int { lock.withLock { operations } }
    /// The faults injected so far, in order.
    var injected: [Injection] { lock.withLock { injections } }
    /// Every counted operation so far: operation `n` is `log[n - 1]`.
    var log: [(kind: Kind, path: String)] { lock.withLock { kinds } }

    /// Sets (or, with nil, clears) the fault to inject from now on.
    func inject(_ fault: Fault?) { lock.withLock { self.fault = fault } }

    /// Seconds every file sync takes before it is passed on, as a slow disk's would (nil: none).
    /// Set it before the files are used.
    var syncDelay: TimeInterval? = nil

    /// The most the files had grown by (net of what shrinking and removal gave back) at any time.
    var peakUsage: Int { lock.withLock { peak } }

    /// Bytes the files may still grow by; nil for a disk that never fills.
    var freeSpace: Int? {
        get { lock.withLock { space } }
        set { lock.withLock { space = newValue } }
    }

    /// Counts an operation and decides whether it fails: nil to go ahead, or the errno to fail
    /// with and whether a failing write first writes half its bytes.
    fileprivate func decide(_ kind: Kind, _ path: String) -> (errno: Int32, shortWrite: Bool)? {
        lock.withLock {
            operations += 1
            kinds.append((kind, path))
            let decision: (Int32, Bool)?
            switch fault {
            case nil:
                decision = nil
            case .failOnce(let n):
                decision = operations == n ? (EIO, false) : nil
            case .failFrom(let n):
                decision = operations >= n ? (EIO, false) : nil
            case .fail(let kinds, let suffix, let errno, let persistent, let shortWrite):
                guard kinds.contains(kind), suffix.map({ path.hasSuffix($0) }) ?? true else { return nil }
                if !persistent { fault = nil }
                decision = (errno, shortWrite)
            }
            if let (errno, _) = decision {
                injections.append(Injection(operation: operations, kind: kind, path: path, errno: errno))
            }
            return decision
        }
    }

    /// Throws the injected error for `kind` on `path` if this operation is to fail.
    fileprivate func check(_ kind: Kind, _ path: String, operation: String) throws {
        if let (errno, _) = decide(kind, path) {
            throw PartitionDBError.io(errno: errno, operation: operation, path: path)
        }
    }

    // MARK: FileSystem

    func open(_ path: String, create: Bool) throws -> any PartitionDB.FileHandle {
        try check(.open, path, operation: "open")
        return FaultInjectingFileHandle(fileSystem: self, base: try base.open(path, create: create))
    }

    func openReadOnly(_ path: String) throws -> any PartitionDB.FileHandle {
        try check(.open, path, operation: "open")
        return FaultInjectingFileHandle(fileSystem: self, base: try base.openReadOnly(path))
    }

    func exists(_ path: String) -> Bool { base.exists(path) }

    func remove(_ path: String) throws {
        try check(.remove, path, operation: "unlink")
        let freed =
            base.exists(path)
            ? (try? base.open(path, create: false)).map { file in
                defer { file.close() }
                return Int((try? file.size()) ?? 0)
            } ?? 0 : 0
        try base.remove(path)
        giveBack(freed)
    }

    func rename(_ from: String, to: String) throws {
        try check(.rename, from, operation: "rename")
        let replaced =
            base.exists(to)
            ? (try? base.open(to, create: false)).map { file in
                defer { file.close() }
                return Int((try? file.size()) ?? 0)
            } ?? 0 : 0
        try base.rename(from, to: to)
        giveBack(replaced)
    }

    func syncDirectory(_ directory: String) throws {
        try check(.syncDirectory, directory, operation: "fsync")
        try base.syncDirectory(directory)
    }

    func makeDirectory(_ path: String) throws {
        try check(.makeDirectory, path, operation: "mkdir")
        try base.makeDirectory(path)
    }

    func list(_ directory: String) throws -> [String] {
        try check(.list, directory, operation: "opendir")
        return try base.list(directory)
    }

    // MARK: Space

    fileprivate func giveBack(_ bytes: Int) {
        lock.withLock {
            space = space.map { $0 + bytes }
            used -= bytes
        }
    }

    /// Takes the space a write of `count` bytes at `offset` of `path` needs beyond `size`, and
    /// returns how many of its bytes fit; when not all do, the disk is full: an injected ENOSPC.
    fileprivate func reserve(_ path: String, offset: UInt64, count: Int, size: UInt64) -> Int {
        lock.withLock {
            let growth = max(0, Int(offset) + count - Int(size))
            let granted = min(growth, space ?? growth)
            used += granted
            peak = max(peak, used)
            guard let free = space else { return count }
            space = free - granted
            if granted == growth { return count }
            injections.append(Injection(operation: operations, kind: .write, path: path, errno: ENOSPC))
            return max(0, Int(size) - Int(offset)) + granted
        }
    }
}

/// A handle of a `FaultInjectingFileSystem`.
final class FaultInjectingFileHandle: PartitionDB.FileHandle, @unchecked Sendable {
    let fileSystem: FaultInjectingFileSystem
    let base: any PartitionDB.FileHandle
    var path: String { base.path }

    init(fileSystem: FaultInjectingFileSystem, base: any PartitionDB.FileHandle) {
        self.fileSystem = fileSystem
        self.base = base
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try fileSystem.check(.read, path, operation: "pread")
        return try base.read(at: offset, count: count)
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try fileSystem.check(.read, path, operation: "pread")
        try base.read(at: offset, into: buffer)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if let (errno, shortWrite) = fileSystem.decide(.write, path) {
            if shortWrite {
                let half = bytes.count / 2 / 512 * 512
                try base.write(UnsafeRawBufferPointer(rebasing: bytes[0..<half]), at: offset)
            }
            throw PartitionDBError.io(errno: errno, operation: "pwrite", path: path)
        }
        let fits = fileSystem.reserve(path, offset: offset, count: bytes.count, size: try base.size())
        try base.write(UnsafeRawBufferPointer(rebasing: bytes[0..<fits]), at: offset)
        if fits < bytes.count {
            throw PartitionDBError.io(errno: ENOSPC, operation: "pwrite", path: path)
        }
    }

    func sync() throws {
        // A failed sync is not passed on: what it should have made durable stays at risk.
        try fileSystem.check(.sync, path, operation: "fsync")
        if let delay = fileSystem.syncDelay { Thread.sleep(forTimeInterval: delay) }
        try base.sync()
    }

    func size() throws -> UInt64 {
        try fileSystem.check(.size, path, operation: "fstat")
        return try base.size()
    }

    func truncate(to size: UInt64) throws {
        try fileSystem.check(.truncate, path, operation: "ftruncate")
        // Growing a file by truncation allocates nothing (the file is sparse); shrinking frees.
        let before = try base.size()
        try base.truncate(to: size)
        if size < before { fileSystem.giveBack(Int(before - size)) }
    }

    func close() { base.close() }

    /// Never maps the file, even over `PosixFileSystem`: every read must come through `read`,
    /// where it can fail. (A read of a mapped page that fails on a real disk is a SIGBUS, not an
    /// error the engine could handle.)
    func mapReadOnly(length: Int) -> UnsafeRawPointer? { nil }

}
