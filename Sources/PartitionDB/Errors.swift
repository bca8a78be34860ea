/// Every error the engine throws. Messages say what happened, where, and what to do next;
/// they never contain keys, values or other record contents.
public enum PartitionDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed. `operation` is the call, `path` the file it was made on.
    case io(errno: Int32, operation: String, path: String)
    /// A short read: the file ended before the bytes the engine needed.
    case unexpectedEndOfFile(path: String, offset: UInt64)
    /// A page failed its checksum or its structure is impossible.
    case corruptPage(file: String, page: UInt32, reason: String)
    /// A file that is not a PartitionDB file, or of a format this build does not read.
    case badFormat(file: String, reason: String)
    /// Another process holds the database's lock file.
    case locked(path: String, pid: Int32)
    /// The database directory or a partition belongs to a region other than this host's.
    case regionMismatch(path: String, expected: String, found: String)
    /// A write would put a record of `owner` into a partition outside the owner's home region.
    case crossRegionWrite(owner: String, home: String, partition: String)
    /// A write names an owner whose home region is not known.
    case unknownHome(owner: String, partition: String)
    /// A record in a regional partition must have an owner; records in `global` must not.
    case ownerRequired(partition: String)
    case ownerNotAllowed(partition: String)
    case invalidName(kind: String, name: String, reason: String)
    case noSuchPartition(name: String)
    case partitionExists(name: String)
    case noSuchTable(partition: String, table: String)
    case databaseExists(path: String)
    case noSuchDatabase(path: String)
    case keyTooLarge(size: Int, limit: Int)
    case keyEmpty
    case valueTooLarge(size: Int, limit: Int)
    case ownerTooLarge(size: Int, limit: Int)
    /// An earlier write or fsync failed; the handle refuses writes until it is reopened.
    case needsReopen(partition: String)
    /// The change stream asked for starts before the oldest change still in the log.
    case changesNotRetained(partition: String, requestedAfter: UInt64, oldestRetained: UInt64)
    /// A change stream does not fit this copy of the partition.
    case changeStreamMismatch(partition: String, reason: String)
    /// `beginEpoch` was asked for an epoch that is not above the partition's.
    case epochNotNewer(partition: String, epoch: UInt64, current: UInt64)
    case badBackup(path: String, reason: String)
    /// A partition file received page by page (`Database.receivePartition`) is refused; nothing
    /// of it is kept and the partition's existing file is unchanged.
    case badSnapshot(partition: String, reason: String)
    case compression(reason: String)
    case closed(partition: String)
    /// The operation needs the partition to itself; `reason` says what is in the way.
    case busy(partition: String, reason: String)
    /// A file the engine would open or replace is not what it must be: a symlink, a file with
    /// more than one name, a device, FIFO or socket, or a file of the database itself.
    case unsafeFile(path: String, reason: String)
    /// A partition file's header names another partition than the file name does.
    case nameMismatch(path: String, expected: String, found: String)
    /// Two files of the database carry the same file id: one is a copy of the other.
    case duplicateFileID(partition: String, other: String)
    /// The file a backup would write exists; it is replaced only when asked to.
    case targetExists(path: String)
    /// The table is reserved for the project's own API (the residency directory's `homes`).
    case reservedTable(partition: String, table: String)
    /// A directory holds partition files but not the identity file `PARTITIONDB`.
    case identityMissing(path: String, files: [String])
    /// Read-only opens (`Options.readOnly`) share the database's lock file, so no writer may
    /// open it meanwhile. Code `locked`.
    case lockedByReaders(path: String)
    /// Another process holds the lock file but has not recorded its process id (yet, or it could
    /// not write it). Code `locked`.
    case lockedByUnknownProcess(path: String)
    /// The database was opened read-only (`Options.readOnly`), or a read-write open found its
    /// directory or files not writable; `operation` would write.
    case readOnly(path: String, operation: String)

    public var description: String {
        switch self {
        case .io(let errno, let operation, let path):
            return "I/O error \(errno) (\(String(cString: strerror(errno)))) in \(operation) on \(Quoting.path(path))"
        case .unexpectedEndOfFile(let path, let offset):
            return "\(Quoting.path(path)) ends before offset \(offset): the file is truncated; restore it from a backup"
        case .corruptPage(let file, let page, let reason):
            return
                "page \(page) of \(Quoting.path(file)) is damaged (\(reason)); run `pdb check` and restore from a backup"
        case .badFormat(let file, let reason):
            return "\(Quoting.path(file)) is not a readable PartitionDB file: \(reason)"
        case .locked(let path, let pid):
            return "\(Quoting.path(path)) is locked by process \(pid); stop that process or open another database"
        case .regionMismatch(let path, let expected, let found):
            return
                "\(Quoting.path(path)) belongs to region \(found), but this host serves region \(expected); it stays untouched"
        case .crossRegionWrite(let owner, let home, let partition):
            return
                "refused: subject \(Quoting.name(owner)) lives in region \(home), not in the region of partition \(Quoting.name(partition)); write it on a host of region \(home)"
        case .unknownHome(let owner, let partition):
            return
                "refused: subject \(Quoting.name(owner)) has no home region, so nothing of it may be written to \(Quoting.name(partition)); assign a home first"
        case .ownerRequired(let partition):
            return "every record in regional partition \(Quoting.name(partition)) needs an owner subject"
        case .ownerNotAllowed(let partition):
            return "records in the global partition \(Quoting.name(partition)) have no owner; drop the owner"
        case .invalidName(let kind, let name, let reason):
            return "invalid \(kind) name '\(Quoting.name(name))': \(reason)"
        case .noSuchPartition(let name):
            return "there is no partition named \(Quoting.name(name)); create it with `pdb create-partition`"
        case .partitionExists(let name):
            return "a partition named \(Quoting.name(name)) exists already"
        case .noSuchTable(let partition, let table):
            return "partition \(Quoting.name(partition)) has no table named \(Quoting.name(table))"
        case .databaseExists(let path):
            return "\(Quoting.path(path)) holds a database already"
        case .noSuchDatabase(let path):
            return "\(Quoting.path(path)) is not a PartitionDB database; create one with `pdb init`"
        case .keyTooLarge(let size, let limit):
            return "key of \(size) bytes exceeds the limit of \(limit) bytes"
        case .keyEmpty:
            return "keys must not be empty"
        case .valueTooLarge(let size, let limit):
            return "value of \(size) bytes exceeds the limit of \(limit) bytes"
        case .ownerTooLarge(let size, let limit):
            return "owner id of \(size) bytes exceeds the limit of \(limit) bytes"
        case .needsReopen(let partition):
            return
                "an earlier I/O error occurred on partition \(Quoting.name(partition)); close and reopen it before writing again"
        case .changesNotRetained(let partition, let after, let oldest):
            return
                "changes of \(Quoting.name(partition)) after LSN \(after) are no longer retained (oldest kept: \(oldest)); copy a fresh backup instead"
        case .changeStreamMismatch(let partition, let reason):
            return "change stream does not fit partition \(Quoting.name(partition)): \(reason)"
        case .epochNotNewer(let partition, let epoch, let current):
            return
                "partition \(Quoting.name(partition)) is at epoch \(current); a new epoch must be above it, not \(epoch)"
        case .badBackup(let path, let reason):
            return "\(Quoting.path(path)) is not a usable backup: \(reason)"
        case .badSnapshot(let partition, let reason):
            return
                "the snapshot received for partition \(Quoting.name(partition)) is refused: \(reason); nothing of it was kept and the partition's existing copy is unchanged; receive a new snapshot"
        case .compression(let reason):
            return "zstd failed: \(reason)"
        case .closed(let partition):
            return "partition \(Quoting.name(partition)) is closed"
        case .busy(let partition, let reason):
            return "partition \(Quoting.name(partition)) is busy: \(reason); retry when it is idle"
        case .unsafeFile(let path, let reason):
            return "refused: \(Quoting.path(path)) \(reason); nothing was written"
        case .nameMismatch(let path, let expected, let found):
            return
                "\(Quoting.path(path)) holds partition \(Quoting.name(found)), not \(Quoting.name(expected)): a partition is opened only by its own name; move the file back to \(Quoting.name(found)).pdb (or restore a backup under the new name with `pdb restore --as`)"
        case .duplicateFileID(let partition, let other):
            return
                "partition \(Quoting.name(partition)) has the same file id as the open partition \(Quoting.name(other)): one is a copy of the other; move the copy out of the database directory (restore a backup with `pdb restore --as` to keep it as a partition of its own)"
        case .targetExists(let path):
            return "\(Quoting.path(path)) exists; choose a new file name, or add --force to replace it"
        case .reservedTable(let partition, let table):
            return
                "table \(Quoting.name(table)) of partition \(Quoting.name(partition)) is written only through its API (the residency directory: `pdb home set`); nothing was changed"
        case .identityMissing(let path, let files):
            let shown = files.prefix(3).map(Quoting.name).joined(separator: ", ") + (files.count > 3 ? ", ..." : "")
            return
                "\(Quoting.path(path)) holds database files (\(shown)) but its identity file PARTITIONDB is missing; nothing was changed. Write it back with the host's region (two lines: `partitiondb 1` and `region R`; spec/file-format.md#database-directory), do not run `pdb init` there"
        case .lockedByReaders(let path):
            return
                "\(Quoting.path(path)) is locked by read-only processes; wait for them to finish or open the database read-only"
        case .lockedByUnknownProcess(let path):
            return
                "\(Quoting.path(path)) is locked by another process, which has not recorded its id; find it with `fuser \(Quoting.path(path))` and stop it, or open another database"
        case .readOnly(let path, let operation):
            return
                "\(Quoting.path(path)) is read-only here (opened with Options.readOnly, or not writable by this process), so \(operation) is refused; write through a read-write open with write permission"
        }
    }

    /// A short, stable machine-readable code (used by `pdb --json` and `pdb apply`).
    public var code: String {
        switch self {
        case .io: return "io"
        case .unexpectedEndOfFile: return "truncated"
        case .corruptPage: return "corrupt_page"
        case .badFormat: return "bad_format"
        case .locked: return "locked"
        case .regionMismatch: return "region_mismatch"
        case .crossRegionWrite: return "cross_region_write"
        case .unknownHome: return "unknown_home"
        case .ownerRequired: return "owner_required"
        case .ownerNotAllowed: return "owner_not_allowed"
        case .invalidName: return "invalid_name"
        case .noSuchPartition: return "no_such_partition"
        case .partitionExists: return "partition_exists"
        case .noSuchTable: return "no_such_table"
        case .databaseExists: return "database_exists"
        case .noSuchDatabase: return "no_such_database"
        case .keyTooLarge: return "key_too_large"
        case .keyEmpty: return "key_empty"
        case .valueTooLarge: return "value_too_large"
        case .ownerTooLarge: return "owner_too_large"
        case .needsReopen: return "needs_reopen"
        case .changesNotRetained: return "changes_not_retained"
        case .changeStreamMismatch: return "change_stream_mismatch"
        case .epochNotNewer: return "epoch_not_newer"
        case .badBackup: return "bad_backup"
        case .badSnapshot: return "bad_snapshot"
        case .compression: return "compression"
        case .closed: return "closed"
        case .busy: return "busy"
        case .unsafeFile: return "unsafe_file"
        case .nameMismatch: return "name_mismatch"
        case .duplicateFileID: return "duplicate_file_id"
        case .targetExists: return "target_exists"
        case .reservedTable: return "reserved_table"
        case .identityMissing: return "identity_missing"
        case .lockedByReaders, .lockedByUnknownProcess: return "locked"
        case .readOnly: return "read_only"
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
