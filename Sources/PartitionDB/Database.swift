/// A database: one directory on one host, holding the partitions of the host's region and the
/// global residency directory partition. Layout of the directory: spec/file-format.md#database-directory
///
/// Open it once per process; a second process gets `locked(pid:)`. With `Options.readOnly` any
/// number of processes open it at once, and no writer meanwhile (spec/file-format.md#lock).
public final class Database: @unchecked Sendable {
    public let path: String
    /// The region this host serves. Partitions of other regions are refused.
    public let region: Region
    public let options: Options
    let fileSystem: any FileSystem
    private let lock: FileLock

    public static let globalPartitionName = "global"
    static let identityFileName = "PARTITIONDB"
    static let partitionSuffix = ".pdb"

    /// Protects `partitions`, `receiving` and `resolver`.
    private let stateLock = Lock()
    private var partitions: [String: Partition] = [:]
    /// Names of partitions whose file is being received (`IncomingPartition`): one at a time each,
    /// since each writes the same temporary file.
    private var receiving: Set<String> = []
    private var resolver: (any HomeRegionResolver)? = nil
    private var isClosed = false

    private init(path: String, region: Region, options: Options, fileSystem: any FileSystem, lock: FileLock) {
        self.path = path
        self.region = region
        self.options = options
        self.fileSystem = fileSystem
        self.lock = lock
    }

    /// Creates a database for a host of `region` in the directory `path` (created if missing, and
    /// it must not hold a database already), with an empty global partition.
    public static func create(at path: String, region: Region, options: Options = Options()) throws -> Database {
        try create(at: path, region: region, options: options, fileSystem: PosixFileSystem())
    }

    package static func create(at path: String, region: Region, options: Options, fileSystem: any FileSystem) throws
        -> Database
    {
        guard !region.isGlobal else {
            throw PartitionDBError.invalidName(
                kind: "region", name: region.name, reason: "global is reserved for the directory")
        }
        // A database's directory holds only its own files: a database made inside one would be
        // a stray partition file or log of it (`pdb init DIR/new.pdb`).
        let parent = PartitionFile.directoryOf(path)
        if fileSystem.exists(parent + "/" + identityFileName)
            || !((try? databaseFiles(in: parent, fileSystem: fileSystem)) ?? []).isEmpty
        {
            throw PartitionDBError.unsafeFile(
                path: path, reason: "is inside the database directory \(parent); create the database elsewhere")
        }
        try fileSystem.makeDirectory(path)
        try fileSystem.syncDirectory(PartitionFile.directoryOf(path))
        let lock = try FileLock(path: path + "/LOCK")
        let identity = path + "/" + identityFileName
        guard fileSystem.status(identity) == nil else { throw PartitionDBError.databaseExists(path: path) }
        // Partition files without the identity file are a database that lost it, not an empty
        // directory: creating a new global partition there would replace every home.
        // The one exception is what an interrupted `create` leaves: a global partition that no
        // commit ever touched, alone.
        let leftovers = try databaseFiles(in: path, fileSystem: fileSystem)
        guard leftovers.isEmpty || isUntouchedGlobal(leftovers, in: path, fileSystem: fileSystem) else {
            throw PartitionDBError.identityMissing(path: path, files: leftovers)
        }
        try PartitionFile.create(
            at: partitionPath(path, globalPartitionName), name: globalPartitionName, region: .global,
            pageSize: options.pageSize, fileSystem: fileSystem)
        // The identity file is written last: a directory without it is not a database yet.
        let text = "partitiondb 1\nregion \(region.name)\n"
        let temporary = identity + ".creating"
        let file = try fileSystem.open(temporary, create: true)
        defer { file.close() }
        try file.write(Array(text.utf8), at: 0)
        try file.sync()
        try fileSystem.rename(temporary, to: identity)
        try fileSystem.syncDirectory(path)
        return Database(path: path, region: region, options: options, fileSystem: fileSystem, lock: lock)
    }

    /// Opens the database in `path` as a host of `region`; refuses a database of another region.
    /// With `options.readOnly` nothing is created or written and writes throw `readOnly`; the
    /// directory and its files then need only be readable (spec/file-format.md#read-only-opens).
    public static func open(at path: String, region: Region, options: Options = Options()) throws -> Database {
        try open(at: path, region: region, options: options, fileSystem: PosixFileSystem())
    }

    /// Opens the database in `path` as a host of the region it was created for (the region in its
    /// identity file, read once the lock is held): for tools such as `pdb` that serve whatever
    /// database they are pointed at.
    public static func openAsCreated(at path: String, options: Options = Options()) throws -> Database {
        try open(at: path, region: nil, options: options, fileSystem: PosixFileSystem())
    }

    package static func open(at path: String, region: Region, options: Options, fileSystem: any FileSystem) throws
        -> Database
    {
        try open(at: path, region: Optional(region), options: options, fileSystem: fileSystem)
    }

    /// `region` nil: the region in the identity file.
    private static func open(at path: String, region: Region?, options: Options, fileSystem: any FileSystem) throws
        -> Database
    {
        // Nothing is created in a directory that holds no database, not even `LOCK`.
        guard fileSystem.exists(path + "/" + identityFileName) else {
            // `noSuchDatabase`, or `identityMissing` when partition files say it was a database.
            _ = try storedRegion(at: path, fileSystem: fileSystem)
            throw PartitionDBError.noSuchDatabase(path: path)
        }
        // The lock (and the holder's pid in it) comes before any other file is opened.
        let lock = try FileLock(path: path + "/LOCK", mode: options.readOnly ? .shared : .exclusive)
        let found = try storedRegion(at: path, fileSystem: fileSystem)
        let region = region ?? found
        guard found == region else {
            throw PartitionDBError.regionMismatch(path: path, expected: region.name, found: found.name)
        }
        try removeLeftovers(in: path, fileSystem: fileSystem, readOnly: options.readOnly)
        // Read-only, the engine's only door to the files refuses whatever would change them.
        let files = options.readOnly ? ReadOnlyFileSystem(base: fileSystem) : fileSystem
        return Database(path: path, region: region, options: options, fileSystem: files, lock: lock)
    }

    /// Whether `name` is a temporary file of a creation, restore or compaction in the database
    /// directory. Its operation never finished (the rename that ends each one removes the name),
    /// and nothing else refers to it: spec/file-format.md#database-directory
    static func isLeftover(_ name: String) -> Bool {
        name == identityFileName + ".creating" || name.hasSuffix(partitionSuffix + ".creating")
            || name.hasSuffix(partitionSuffix + ".compacting") || name.hasSuffix(partitionSuffix + ".compacting-log")
            || name.hasSuffix(partitionSuffix + ".compacting.creating")
            || (name.contains(partitionSuffix + "-log.damaged-") && name.hasSuffix(".copying"))
    }

    /// Whether `files` is only a global partition file as `create` writes it: no log, and a
    /// header that decodes with no commit (LSN 0) and the three pages of an empty partition.
    private static func isUntouchedGlobal(_ files: [String], in path: String, fileSystem: any FileSystem) -> Bool {
        guard files == [globalPartitionName + partitionSuffix] else { return false }
        let file = partitionPath(path, globalPartitionName)
        guard fileSystem.status(file) == FileStatus(kind: .regular, linkCount: 1),
            let handle = try? fileSystem.open(file, create: false)
        else { return false }
        defer { handle.close() }
        guard let size = try? handle.size(), size >= 4096, let prefix = try? handle.read(at: 0, count: 64),
            let pageSize = try? PartitionHeader.probePageSize(prefix, file: file), size == UInt64(pageSize) * 3,
            let bytes = try? handle.read(at: 0, count: pageSize)
        else { return false }
        let page = Page(bytes: bytes)
        guard page.hasValidChecksum(number: .header), let header = try? PartitionHeader.decode(page, file: file) else {
            return false
        }
        return header.lastLSN == .zero && header.pageCount == 3 && header.region.isGlobal
    }

    /// Whether `name` is, or could become, one of the directory's own files: `PARTITIONDB`,
    /// `LOCK`, a partition file, a log (or a preserved part of one) and their temporary files.
    static func isDatabaseName(_ name: String) -> Bool {
        name == identityFileName || name == "LOCK" || name.hasPrefix(identityFileName + ".")
            || name.hasPrefix("LOCK.") || name.hasSuffix(partitionSuffix) || name.contains(partitionSuffix + "-log")
            || name.contains(partitionSuffix + ".") || isLeftover(name)
    }

    /// Removes what crashed creations, restores and compactions left; called with the lock held.
    private static func removeLeftovers(in path: String, fileSystem: any FileSystem, readOnly: Bool) throws {
        guard !readOnly else { return }
        let leftovers = try fileSystem.list(path).filter(isLeftover)
        guard !leftovers.isEmpty else { return }
        for name in leftovers { try fileSystem.remove(path + "/" + name) }
        try fileSystem.syncDirectory(path)
    }

    /// The region recorded in the database directory `path` by `create`.
    public static func storedRegion(at path: String) throws -> Region {
        try storedRegion(at: path, fileSystem: PosixFileSystem())
    }

    static func storedRegion(at path: String, fileSystem: any FileSystem) throws -> Region {
        let identity = path + "/" + identityFileName
        guard fileSystem.exists(identity) else {
            // An interrupted `create` (an untouched global partition alone) is no database yet.
            let files = (try? databaseFiles(in: path, fileSystem: fileSystem)) ?? []
            guard files.isEmpty || isUntouchedGlobal(files, in: path, fileSystem: fileSystem) else {
                throw PartitionDBError.identityMissing(path: path, files: files)
            }
            throw PartitionDBError.noSuchDatabase(path: path)
        }
        let file = try fileSystem.openReadOnly(identity)
        defer { file.close() }
        let size = try file.size()
        guard size < 4096 else { throw PartitionDBError.badFormat(file: identity, reason: "identity file too large") }
        let text = String(decoding: try file.read(at: 0, count: Int(size)), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        guard lines.first == "partitiondb 1", lines.count >= 2, lines[1].hasPrefix("region "),
            let region = try? Region(String(lines[1].dropFirst("region ".count)))
        else { throw PartitionDBError.badFormat(file: identity, reason: "not a PartitionDB identity file") }
        return region
    }

    /// The names in `directory` that are partition files or logs (or what is left of them), sorted.
    static func databaseFiles(in directory: String, fileSystem: any FileSystem) throws -> [String] {
        guard fileSystem.exists(directory) else { return [] }
        return try fileSystem.list(directory).filter {
            $0.hasSuffix(partitionSuffix) || $0.contains(partitionSuffix + "-log")
        }
    }

    static func partitionPath(_ directory: String, _ name: String) -> String {
        directory + "/" + name + partitionSuffix
    }

    // MARK: Residency

    /// Sets the resolver the engine asks for each owner's home region on every put.
    public func setResolver(_ resolver: any HomeRegionResolver) {
        stateLock.withLock { self.resolver = resolver }
    }

    private var currentResolver: (any HomeRegionResolver)? { stateLock.withLock { resolver } }

    // MARK: Partitions

    /// Creates a partition of this host's region. Naming another region (or `global`) is refused
    /// and creates nothing.
    @discardableResult
    public func createPartition(_ name: String, region requested: Region? = nil) throws -> Partition {
        try Names.validate(name, kind: "partition")
        let region = requested ?? self.region
        guard region == self.region else {
            throw PartitionDBError.regionMismatch(
                path: Database.partitionPath(path, name), expected: self.region.name, found: region.name)
        }
        guard name != Database.globalPartitionName else { throw PartitionDBError.partitionExists(name: name) }
        let file = Database.partitionPath(path, name)
        // Under the lock, so two threads creating the same name cannot both pass the check.
        try stateLock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            guard !fileSystem.exists(file) else { throw PartitionDBError.partitionExists(name: name) }
            try PartitionFile.create(
                at: file, name: name, region: region, pageSize: options.pageSize,
                fileSystem: fileSystem)
        }
        return try partition(name)
    }

    /// The open partition `name`, opening it on first use. A partition file of another region is
    /// refused.
    public func partition(_ name: String) throws -> Partition {
        try Names.validate(name, kind: "partition")
        return try stateLock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            if let open = partitions[name] { return open }
            let file = Database.partitionPath(path, name)
            // `status`, not `exists`: a dangling symlink is refused as a symlink, not missed.
            guard fileSystem.status(file) != nil else { throw PartitionDBError.noSuchPartition(name: name) }
            let region = name == Database.globalPartitionName ? Region.global : self.region
            let pager = try PartitionFile.open(
                at: file, expectedName: name, expectedRegion: region, options: options, fileSystem: fileSystem)
            // Change sets and backups name a partition by its file id: two open files with one id
            // would let one's history be applied to the other.
            let fileID = pager.latestSnapshot.header.fileID
            if let twin = partitions.values.first(where: { $0.pager.latestSnapshot.header.fileID == fileID }) {
                _ = pager.closeIfIdle()
                pager.releaseFiles()
                throw PartitionDBError.duplicateFileID(partition: name, other: twin.name)
            }
            let partition = Partition(
                name: name, region: region, path: file, fileSystem: fileSystem, pager: pager, options: options,
                resolver: { [weak self] in self?.currentResolver })
            partition.onClose = { [weak self] in self?.forget(name) }
            partitions[name] = partition
            return partition
        }
    }

    /// The global partition that holds the residency directory.
    public func globalPartition() throws -> Partition { try partition(Database.globalPartitionName) }

    /// The names of the partition files in the directory, `global` included, sorted.
    public func partitionNames() throws -> [String] {
        try fileSystem.list(path).filter { $0.hasSuffix(Database.partitionSuffix) }
            .map { String($0.dropLast(Database.partitionSuffix.count)) }
            .filter { (try? Names.validate($0, kind: "partition")) != nil }
    }

    /// Files of the directory that look like the database's but belong to no partition: a
    /// `*.pdb` whose name is not a valid partition name, and a log without its partition file.
    /// `pdb check` and `pdb info` report them; nothing opens them.
    public func strayFiles() throws -> [String] {
        let names = try fileSystem.list(path)
        let present = Set(names)
        return names.filter { name in
            if name.hasSuffix(Database.partitionSuffix) {
                return (try? Names.validate(String(name.dropLast(Database.partitionSuffix.count)), kind: "partition"))
                    == nil
            }
            if name.hasSuffix(Database.partitionSuffix + "-log") {
                return !present.contains(String(name.dropLast("-log".count)))
            }
            return false
        }
    }

    /// Closes every open partition (checkpointing it) and releases the directory's lock, and from
    /// then on refuses to open partitions (`closed`). The lock is released only once every
    /// partition has closed: a partition that refuses (`busy`: a read transaction still runs)
    /// stays open, tracked and locked against other processes, and its error is thrown; calling
    /// `close()` again after the reader has ended finishes the job. A partition that closed its
    /// files but reported an earlier I/O error counts as closed; the error is thrown all the same.
    public func close() throws {
        let open = stateLock.withLock {
            isClosed = true
            return Array(partitions.values)
        }
        var firstError: Error? = nil
        for partition in open {
            do { try partition.close() } catch { if firstError == nil { firstError = error } }
        }
        let remaining = stateLock.withLock {
            // `onClose` forgets a closed partition already; this also covers a handle without it.
            partitions = partitions.filter { $0.value.isOpen }
            return partitions.count
        }
        if remaining == 0 { lock.release() }
        if let firstError { throw firstError }
    }

    /// Whether the directory's `LOCK` is still held by this handle (false after `close()`
    /// released it, and for a read-only open of a directory it may not write, which goes without).
    package var holdsLock: Bool { lock.isHeld }

    /// Moves a restored partition file into place as `name`. Under the lock, so no handle of
    /// that name can be opened meanwhile; the old partition's log goes first (durably), so it is
    /// never replayed onto the restored file.
    func install(_ temporary: String, as name: String, replace: Bool) throws {
        try stateLock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            let file = Database.partitionPath(path, name)
            if fileSystem.exists(file) {
                guard replace else { throw PartitionDBError.partitionExists(name: name) }
                guard partitions[name] == nil else {
                    throw PartitionDBError.busy(
                        partition: name, reason: "it is open; close it before restoring over it")
                }
            }
            try fileSystem.remove(PartitionFile.logPath(file))
            try fileSystem.syncDirectory(path)
            try fileSystem.rename(temporary, to: file)
            try fileSystem.syncDirectory(path)
        }
    }

    func isOpen(_ name: String) -> Bool { stateLock.withLock { partitions[name] != nil } }

    /// Claims `name` for an `IncomingPartition`; `busy` while another one holds it.
    func beginReceiving(_ name: String) throws {
        try stateLock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            guard receiving.insert(name).inserted else {
                throw PartitionDBError.busy(
                    partition: name, reason: "another snapshot or restore of it is being received")
            }
        }
    }

    func endReceiving(_ name: String) { _ = stateLock.withLock { receiving.remove(name) } }

    /// Forgets a closed partition handle, so the next `partition(name)` opens it afresh.
    func forget(_ name: String) {
        stateLock.withLock { _ = partitions.removeValue(forKey: name) }
    }
}
