import Foundation

@testable import PartitionDB

/// An in-memory `FileSystem` that records every change in a trace and can show the disk as it
/// would look after a power loss at any point of that trace.
///
/// The power-loss model is the one of ALICE and CrashMonkey (and spec/file-format.md#disk-assumptions):
///
/// - A file's content is durable as of its last `sync()`. Each write since then may, independently,
///   be lost, kept, or torn at 512- or 4096-byte boundaries (each block of a torn write holds the
///   new bytes, the old bytes, zeros or garbage). Each truncate since then may be lost or kept.
/// - A created, removed or renamed name is durable once its directory was synced
///   (`syncDirectory`); otherwise the entry reverts. In some crash states a prefix of a
///   directory's unsynced changes survives instead, in order, as a journaling file system may
///   commit them on its own. A rename is atomic. The directories given as roots always exist.
///
/// While a workload runs, the file system behaves like a normal one (what was written is read
/// back). `PowerLossReplay` walks the trace afterwards and produces crashed disks, each a fresh
/// `SimulatedFileSystem` whose content is entirely durable. The same seed gives the same disks.
final class SimulatedFileSystem: FileSystem, @unchecked Sendable {
    /// One recorded change. Reads, `exists`, `size` and `list` change nothing and are not recorded.
    enum Operation {
        case makeDirectory(path: String)
        case create(path: String, file: FileID)
        case write(file: FileID, offset: Int, bytes: [UInt8])
        case truncate(file: FileID, size: Int)
        case sync(file: FileID)
        case remove(path: String)
        case rename(from: String, to: String)
        case syncDirectory(path: String)
    }

    typealias FileID = Int

    /// Protects `state`, `trace` and `syncsIgnored`. Handles take it too.
    private let lock = NSLock()
    private var state: DiskState
    private var trace: [Operation] = []
    /// The disk before the first recorded operation; replays start from it.
    let initialImage: DiskImage

    /// Whether changes are recorded for later power losses; a file system that only serves one
    /// recovery check need not pay for it.
    let isRecording: Bool
    /// A lying disk, for testing the tests: file syncs succeed but make nothing durable.
    var ignoresFileSyncs: Bool {
        get { lock.withLock { syncsIgnored } }
        set { lock.withLock { syncsIgnored = newValue } }
    }
    private var syncsIgnored = false

    /// A file system holding `image`, all of it durable.
    init(image: DiskImage, recording: Bool = true) {
        self.initialImage = image
        self.isRecording = recording
        self.state = DiskState(image: image, tracksPowerLoss: recording)
    }

    /// An empty disk with the directories `roots`, which always exist and can never be lost.
    convenience init(roots: [String]) {
        self.init(image: DiskImage(roots: roots))
    }

    /// How many changes have been recorded: a crash point is a number from 0 through this.
    var operationCount: Int { lock.withLock { trace.count } }

    /// A copy of the recorded changes.
    var operations: [Operation] { lock.withLock { trace } }

    /// The disk as it is now, with nothing lost (what a process crash leaves).
    var currentImage: DiskImage { lock.withLock { state.image(choosing: .keepEverything) } }

    /// The disk as a power loss now would leave it when every unsynced change is lost.
    var durableImage: DiskImage { lock.withLock { state.image(choosing: .loseEverything) } }

    private func record(_ operation: Operation) {
        state.apply(operation)
        if isRecording { trace.append(operation) }
    }

    // MARK: FileSystem

    func open(_ path: String, create: Bool) throws -> any PartitionDB.FileHandle {
        try lock.withLock {
            if let file = state.file(at: path) { return SimulatedFileHandle(fileSystem: self, file: file, path: path) }
            guard create else { throw PartitionDBError.io(errno: ENOENT, operation: "open", path: path) }
            guard state.isDirectory(DiskImage.parent(of: path)) else {
                throw PartitionDBError.io(errno: ENOENT, operation: "open", path: path)
            }
            let file = state.nextFileID()
            record(.create(path: path, file: file))
            return SimulatedFileHandle(fileSystem: self, file: file, path: path)
        }
    }

    func openReadOnly(_ path: String) throws -> any PartitionDB.FileHandle {
        try lock.withLock {
            guard let file = state.file(at: path) else {
                throw PartitionDBError.io(errno: ENOENT, operation: "open", path: path)
            }
            return SimulatedFileHandle(fileSystem: self, file: file, path: path, readOnly: true)
        }
    }

    func exists(_ path: String) -> Bool {
        lock.withLock { state.file(at: path) != nil || state.isDirectory(path) }
    }

    func remove(_ path: String) throws {
        lock.withLock {
            // Like `unlink`: a missing file is not an error for the engine (PosixFileSystem ignores ENOENT).
            guard state.file(at: path) != nil else { return }
            record(.remove(path: path))
        }
    }

    func rename(_ from: String, to: String) throws {
        try lock.withLock {
            guard state.file(at: from) != nil else {
                throw PartitionDBError.io(errno: ENOENT, operation: "rename", path: from)
            }
            precondition(
                DiskImage.parent(of: from) == DiskImage.parent(of: to), "the simulation renames within a directory only"
            )
            record(.rename(from: from, to: to))
        }
    }

    func syncDirectory(_ directory: String) throws {
        try lock.withLock {
            guard state.isDirectory(directory) else {
                throw PartitionDBError.io(errno: ENOENT, operation: "open", path: directory)
            }
            record(.syncDirectory(path: directory))
        }
    }

    func makeDirectory(_ path: String) throws {
        try lock.withLock {
            if state.isDirectory(path) { return }
            guard state.isDirectory(DiskImage.parent(of: path)), state.file(at: path) == nil else {
                throw PartitionDBError.io(errno: ENOENT, operation: "mkdir", path: path)
            }
            record(.makeDirectory(path: path))
        }
    }

    func list(_ directory: String) throws -> [String] {
        try lock.withLock {
            guard let entries = state.current.directories[directory] else {
                throw PartitionDBError.io(errno: ENOENT, operation: "opendir", path: directory)
            }
            return entries.keys.sorted()
        }
    }

    // MARK: Handles

    fileprivate func read(_ file: FileID, path: String, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer)
        throws
    {
        try lock.withLock {
            let content = state.current.files[file]!
            let start = Int(offset)
            guard start + buffer.count <= content.count else {
                throw PartitionDBError.unexpectedEndOfFile(path: path, offset: UInt64(max(start, content.count)))
            }
            content.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + buffer.count)]))
            }
        }
    }

    fileprivate func write(_ file: FileID, bytes: UnsafeRawBufferPointer, at offset: UInt64) {
        lock.withLock { record(.write(file: file, offset: Int(offset), bytes: Array(bytes))) }
    }

    fileprivate func sync(_ file: FileID) {
        lock.withLock { if !syncsIgnored { record(.sync(file: file)) } }
    }

    fileprivate func size(_ file: FileID) -> UInt64 {
        lock.withLock { UInt64(state.current.files[file]!.count) }
    }

    fileprivate func truncate(_ file: FileID, to size: UInt64) {
        lock.withLock { record(.truncate(file: file, size: Int(size))) }
    }
}

/// An open file of a `SimulatedFileSystem`. It names the file, not the path: like a descriptor,
/// it keeps working after the name is removed or renamed.
final class SimulatedFileHandle: PartitionDB.FileHandle, @unchecked Sendable {
    let fileSystem: SimulatedFileSystem
    let file: SimulatedFileSystem.FileID
    let path: String
    /// Protects `isClosed`.
    private let lock = NSLock()
    private var isClosed = false
    /// Opened with `openReadOnly`: writes, syncs and truncations fail with EBADF, as on `O_RDONLY`.
    let isReadOnly: Bool

    init(fileSystem: SimulatedFileSystem, file: SimulatedFileSystem.FileID, path: String, readOnly: Bool = false) {
        self.fileSystem = fileSystem
        self.file = file
        self.path = path
        self.isReadOnly = readOnly
    }

    private func checkWritable(_ operation: String) throws {
        try checkOpen(operation)
        if isReadOnly { throw PartitionDBError.io(errno: EBADF, operation: operation, path: path) }
    }

    private func checkOpen(_ operation: String) throws {
        // A use after close is an engine bug; EBADF makes it fail the test instead of passing unnoticed.
        if lock.withLock({ isClosed }) { throw PartitionDBError.io(errno: EBADF, operation: operation, path: path) }
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try checkOpen("pread")
        try fileSystem.read(file, path: path, at: offset, into: buffer)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkWritable("pwrite")
        fileSystem.write(file, bytes: bytes, at: offset)
    }

    func sync() throws {
        try checkOpen("fsync")
        fileSystem.sync(file)
    }

    func size() throws -> UInt64 {
        try checkOpen("fstat")
        return fileSystem.size(file)
    }

    func truncate(to size: UInt64) throws {
        try checkWritable("ftruncate")
        fileSystem.truncate(file, to: size)
    }

    func close() { lock.withLock { isClosed = true } }

    /// No mapping: the engine reads through `read`, which sees every write at once.
    func mapReadOnly(length: Int) -> UnsafeRawPointer? { nil }
}

// MARK: - Disk images

/// A whole disk at rest: which names each directory holds, and every file's bytes.
struct DiskImage {
    enum Entry: Equatable {
        case file(SimulatedFileSystem.FileID)
        case directory
    }

    /// Every directory that exists, by path, with its entries by name.
    var directories: [String: [String: Entry]]
    /// The content of every file that has ever existed, named or not.
    var files: [SimulatedFileSystem.FileID: [UInt8]] = [:]
    /// Directories that exist before anything happens and cannot be lost (the test's own folders).
    var roots: [String]

    init(roots: [String]) {
        self.roots = roots
        self.directories = Dictionary(uniqueKeysWithValues: roots.map { ($0, [:]) })
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func name(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    func file(at path: String) -> SimulatedFileSystem.FileID? {
        if case .file(let id)? = directories[DiskImage.parent(of: path)]?[DiskImage.name(of: path)] { return id }
        return nil
    }

    /// Identifies a disk by what can be read from it: every directory's names and every named
    /// file's bytes. Two disks with one fingerprint behave the same when opened.
    struct Fingerprint: Hashable {
        var hash: Int
        var bytes: Int
    }

    var fingerprint: Fingerprint {
        var hasher = Hasher()
        var bytes = 0
        for directory in directories.keys.sorted() {
            hasher.combine(directory)
            for (name, entry) in directories[directory]!.sorted(by: { $0.key < $1.key }) {
                hasher.combine(name)
                guard case .file(let file) = entry else { continue }
                let content = files[file]!
                // Logs are often zero-filled ahead of their frames: hash the bytes up to the
                // trailing zeros, and the length.
                content.withUnsafeBytes { raw in
                    let used = DiskImage.lengthWithoutTrailingZeros(raw)
                    hasher.combine(content.count)
                    hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<used]))
                    bytes += used
                }
            }
        }
        return Fingerprint(hash: hasher.finalize(), bytes: bytes)
    }

    private static let zeroBlock = [UInt8](repeating: 0, count: 4096)

    /// The length of `bytes` without its trailing zeros, found block by block with `memcmp`.
    static func lengthWithoutTrailingZeros(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        var end = bytes.count
        while end > 0 {
            let start = max(0, (end - 1) / 4096 * 4096)
            let isZero = zeroBlock.withUnsafeBytes { memcmp(base + start, $0.baseAddress!, end - start) == 0 }
            if !isZero { break }
            end = start
        }
        // The last block holds a non-zero byte: trim its zeros one by one.
        while end > 0, bytes[end - 1] == 0 { end -= 1 }
        return end
    }
}

// MARK: - Power loss

/// What survives of the changes made since the last sync, decided independently for each change.
enum PowerLossChoice {
    /// Only what was synced survives.
    case loseEverything
    /// Everything survives, as after a crash of the process alone.
    case keepEverything
    /// Each unsynced write is lost, kept or torn, each truncate lost or kept, and a random prefix
    /// of each directory's unsynced changes survives.
    case random(seed: UInt64)
}

/// The disk as the simulation tracks it while operations are applied: the current content, and
/// what a power loss would start from (the durable content plus the changes since each sync).
struct DiskState {
    var current: DiskImage
    /// Each file's content as of its last sync.
    private var durableFiles: [SimulatedFileSystem.FileID: [UInt8]]
    /// Each directory's entries as of its last sync.
    private var durableDirectories: [String: [String: DiskImage.Entry]]
    /// Writes and truncates of each file since its last sync, in order.
    private var unsyncedContent: [SimulatedFileSystem.FileID: [SimulatedFileSystem.Operation]] = [:]
    /// Creations, removals and renames in each directory since its last sync, in order.
    private var unsyncedNames: [String: [SimulatedFileSystem.Operation]] = [:]

    /// Whether `apply` keeps what a power loss needs (durable content and unsynced changes).
    private let tracksPowerLoss: Bool

    init(image: DiskImage, tracksPowerLoss: Bool = true) {
        current = image
        durableFiles = image.files
        durableDirectories = image.directories
        self.tracksPowerLoss = tracksPowerLoss
    }

    func file(at path: String) -> SimulatedFileSystem.FileID? { current.file(at: path) }
    var hasUnsyncedChanges: Bool { !unsyncedContent.isEmpty || !unsyncedNames.isEmpty }
    func isDirectory(_ path: String) -> Bool { current.directories[path] != nil }
    func nextFileID() -> SimulatedFileSystem.FileID { (current.files.keys.max() ?? 0) + 1 }

    /// Applies one operation to the current disk and remembers it as unsynced.
    mutating func apply(_ operation: SimulatedFileSystem.Operation) {
        applyToCurrent(operation)
        guard tracksPowerLoss else { return }
        switch operation {
        case .makeDirectory(let path), .create(let path, _), .remove(let path), .rename(let path, _):
            unsyncedNames[DiskImage.parent(of: path), default: []].append(operation)
        case .syncDirectory(let path):
            durableDirectories[path] = current.directories[path]
            unsyncedNames[path] = nil
        case .write(let file, _, _), .truncate(let file, _):
            unsyncedContent[file, default: []].append(operation)
        case .sync(let file):
            durableFiles[file] = current.files[file]
            unsyncedContent[file] = nil
        }
    }

    private mutating func applyToCurrent(_ operation: SimulatedFileSystem.Operation) {
        switch operation {
        case .makeDirectory(let path):
            current.directories[DiskImage.parent(of: path), default: [:]][DiskImage.name(of: path)] = .directory
            current.directories[path] = [:]
        case .create(let path, let file):
            current.files[file] = []
            current.directories[DiskImage.parent(of: path), default: [:]][DiskImage.name(of: path)] = .file(file)
        case .remove(let path):
            current.directories[DiskImage.parent(of: path)]?[DiskImage.name(of: path)] = nil
        case .rename(let from, let to):
            let directory = DiskImage.parent(of: from)
            let entry = current.directories[directory]?.removeValue(forKey: DiskImage.name(of: from))
            current.directories[directory]?[DiskImage.name(of: to)] = entry
        case .syncDirectory, .sync:
            break
        case .write(let file, let offset, let bytes):
            DiskState.write(bytes, at: offset, into: &current.files[file]!)
        case .truncate(let file, let size):
            DiskState.resize(&current.files[file]!, to: size)
        }
    }

    /// The disk a power loss right now would leave behind, with unsynced changes surviving as
    /// `choice` says.
    func image(choosing choice: PowerLossChoice) -> DiskImage {
        switch choice {
        case .keepEverything:
            return current
        case .loseEverything:
            var random = SeededGenerator(seed: 0)
            return image(randomly: false, random: &random)
        case .random(let seed):
            var random = SeededGenerator(seed: seed)
            return image(randomly: true, random: &random)
        }
    }

    private enum Fate { case lost, kept, torn }

    /// Builds the crashed disk: with `randomly` false every unsynced change is lost; otherwise each
    /// has a fate drawn from `random`.
    private func image(randomly: Bool, random: inout SeededGenerator) -> DiskImage {
        func fate() -> Fate {
            guard randomly else { return .lost }
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4: return .kept
            case 4..<7: return .lost
            default: return .torn
            }
        }
        func survivingNames(_ count: Int) -> Int {
            // Half the time nothing unsynced survives: the model's base case.
            guard randomly, count > 0, Bool.random(using: &random) else { return 0 }
            return Int.random(in: 0...count, using: &random)
        }

        var image = current
        image.directories = [:]
        // Names: rebuild the tree from the roots, each directory from its durable entries plus a
        // prefix of its unsynced changes. A directory whose own name was lost disappears with
        // everything in it.
        var pending = current.roots
        while let directory = pending.popLast() {
            var entries = durableDirectories[directory] ?? [:]
            let changes = unsyncedNames[directory] ?? []
            for change in changes.prefix(survivingNames(changes.count)) {
                switch change {
                case .makeDirectory(let path): entries[DiskImage.name(of: path)] = .directory
                case .create(let path, let file): entries[DiskImage.name(of: path)] = .file(file)
                case .remove(let path): entries[DiskImage.name(of: path)] = nil
                case .rename(let from, let to):
                    entries[DiskImage.name(of: to)] = entries.removeValue(forKey: DiskImage.name(of: from))
                default: preconditionFailure("not a directory change")
                }
            }
            image.directories[directory] = entries
            for (name, entry) in entries.sorted(by: { $0.key < $1.key }) where entry == .directory {
                pending.append(directory == "/" ? "/" + name : directory + "/" + name)
            }
        }
        // Contents: each file from its durable bytes, then each unsynced change by its fate.
        for file in current.files.keys.sorted() {
            guard let changes = unsyncedContent[file], !changes.isEmpty else {
                image.files[file] = durableFiles[file] ?? []
                continue
            }
            var content = durableFiles[file] ?? []
            for change in changes {
                switch change {
                case .write(_, let offset, let bytes):
                    switch fate() {
                    case .lost: break
                    case .kept: DiskState.write(bytes, at: offset, into: &content)
                    case .torn: DiskState.tear(bytes, at: offset, into: &content, random: &random)
                    }
                case .truncate(_, let size):
                    if fate() != .lost { DiskState.resize(&content, to: size) }
                default: preconditionFailure("not a content change")
                }
            }
            image.files[file] = content
        }
        return image
    }

    /// Writes `bytes` at `offset`, extending the file with zeros when it is shorter. Copies with
    /// `memcpy`: the generic collection path is far too slow in debug builds.
    static func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, into content: inout [UInt8]) {
        if content.count < offset + bytes.count {
            content.append(contentsOf: [UInt8](repeating: 0, count: offset + bytes.count - content.count))
        }
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        content.withUnsafeMutableBytes { target in
            (target.baseAddress! + offset).copyMemory(from: source, byteCount: bytes.count)
        }
    }

    static func write(_ bytes: [UInt8], at offset: Int, into content: inout [UInt8]) {
        bytes.withUnsafeBytes { write($0, at: offset, into: &content) }
    }

    static func resize(_ content: inout [UInt8], to size: Int) {
        if size < content.count {
            // A new array of the prefix: cheaper than copying a shared buffer whole to cut it.
            content = Array(content[..<size])
        } else {
            content.append(contentsOf: [UInt8](repeating: 0, count: size - content.count))
        }
    }

    /// Persists a write in blocks of 512 or 4096 bytes (aligned to the file, as sectors and pages
    /// are), each block independently new, old (not written at all), zeros or garbage.
    static func tear(_ bytes: [UInt8], at offset: Int, into content: inout [UInt8], random: inout SeededGenerator) {
        let block = Bool.random(using: &random) ? 512 : 4096
        var start = offset
        let end = offset + bytes.count
        while start < end {
            let stop = min(end, (start / block + 1) * block)
            let range = (start - offset)..<(stop - offset)
            switch Int.random(in: 0..<8, using: &random) {
            case 0..<4:
                bytes.withUnsafeBytes { write(UnsafeRawBufferPointer(rebasing: $0[range]), at: start, into: &content) }
            case 4..<6: break
            case 6: write([UInt8](repeating: 0, count: range.count), at: start, into: &content)
            default:
                var garbage = [UInt64](repeating: 0, count: (range.count + 7) / 8)
                for i in garbage.indices { garbage[i] = random.next() }
                garbage.withUnsafeBytes {
                    write(UnsafeRawBufferPointer(rebasing: $0[0..<range.count]), at: start, into: &content)
                }
            }
            start = stop
        }
    }
}

/// Walks a recorded trace forward and produces the disks a power loss at each point would leave.
/// Crash points must be visited in ascending order; each costs the operations since the last one.
struct PowerLossReplay {
    private let operations: [SimulatedFileSystem.Operation]
    private var state: DiskState
    /// Operations applied so far: the current crash point.
    private(set) var position = 0

    /// The name each file was created with, for failure messages.
    private var fileNames: [SimulatedFileSystem.FileID: String] = [:]

    init(of fileSystem: SimulatedFileSystem) {
        operations = fileSystem.operations
        state = DiskState(image: fileSystem.initialImage)
        for (_, entries) in fileSystem.initialImage.directories {
            for case (let name, .file(let file)) in entries { fileNames[file] = name }
        }
        // Files are named by their last name: `p.pdb`, not `p.pdb.creating`.
        var named: [String: SimulatedFileSystem.FileID] = [:]
        for operation in operations {
            switch operation {
            case .create(let path, let file):
                named[path] = file
                fileNames[file] = DiskImage.name(of: path)
            case .rename(let from, let to):
                if let file = named.removeValue(forKey: from) {
                    named[to] = file
                    fileNames[file] = DiskImage.name(of: to)
                }
            default: break
            }
        }
    }

    var operationCount: Int { operations.count }

    /// Applies the operations up to crash point `point` (the first `point` operations).
    mutating func advance(to point: Int) {
        precondition(point >= position && point <= operations.count, "crash points must ascend within the trace")
        while position < point {
            state.apply(operations[position])
            position += 1
        }
    }

    /// Whether a power loss at the current point can lose anything: when it cannot, every choice
    /// gives the same disk.
    var hasUnsyncedChanges: Bool { state.hasUnsyncedChanges }

    /// The disk after a power loss at the current point; `recording` as for the file system.
    func crash(choosing choice: PowerLossChoice, recording: Bool = false) -> SimulatedFileSystem {
        SimulatedFileSystem(image: state.image(choosing: choice), recording: recording)
    }

    /// The operation at `index`, for failure messages.
    func describe(_ index: Int) -> String {
        guard index >= 0 else { return "nothing" }
        guard index < operations.count else { return "end of trace" }
        switch operations[index] {
        case .makeDirectory(let path): return "mkdir \(DiskImage.name(of: path))"
        case .create(let path, _): return "create \(DiskImage.name(of: path))"
        case .write(let file, let offset, let bytes): return "write \(bytes.count) bytes at \(offset) of \(name(file))"
        case .truncate(let file, let size): return "truncate \(name(file)) to \(size)"
        case .sync(let file): return "fsync \(name(file))"
        case .remove(let path): return "remove \(DiskImage.name(of: path))"
        case .rename(let from, let to): return "rename \(DiskImage.name(of: from)) to \(DiskImage.name(of: to))"
        case .syncDirectory: return "fsync directory"
        }
    }

    private func name(_ file: SimulatedFileSystem.FileID) -> String { fileNames[file] ?? "file #\(file)" }
}
