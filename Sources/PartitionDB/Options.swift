/// Settings of an open database. The defaults suit a server.
public struct Options: Sendable {
    /// Page size of newly created partitions: a power of two from 4096 to 32768.
    public var pageSize: Int = 4096
    /// Log frames (and, where the partition file cannot be mapped, file pages) kept in memory
    /// per partition. Pages of the partition file are read through the file mapping instead.
    public var cachePages: Int = 2048
    /// Durability of commits that do not name one.
    public var durability: Durability = .durable
    /// Log frames that trigger a checkpoint after a commit.
    public var autoCheckpointFrames: Int = 4096

    /// A durable commit that adds at least this many pages beyond the partition's committed end
    /// writes those pages straight into the partition file (then syncs it) instead of into the
    /// log, and the log takes only the pages that existed before: a bulk load is written once,
    /// not once to the log and again at the checkpoint, as PostgreSQL's `wal_level = minimal`
    /// does for bulk loads. Such a commit's change set still holds every page (a commit observer
    /// gets copies; `changes(after:)` reads them back from the partition file until a checkpoint
    /// overwrites one of them). A durable commit that changes at least
    /// max(this, `autoCheckpointFrames`) existing pages, and at least 1/64 of the partition's,
    /// moves its changed nodes to new pages at the end of the file first (copy-on-write, as LMDB
    /// does), so it too is written once; the old pages are freed for later commits (while free
    /// pages stay at most half the file). nil sends every page through the log.
    public var directWritePages: Int? = 1024

    /// Replaces max(`directWritePages`, `autoCheckpointFrames`) as the number of changed existing
    /// pages that makes a durable commit relocate them; tests lower it so that small workloads
    /// take that path. Not public: the derived value is the setting users need.
    var relocationPages: Int? = nil

    /// Read partition files through a read-only memory mapping (no copies, no system calls, no
    /// locks on the read path). The price, as with LMDB: a disk error while reading a mapped
    /// page stops the process with SIGBUS instead of throwing `PartitionDBError.io`. Set it to
    /// false to read with `pread` and get every read error as a typed error.
    public var mapPartitionFiles: Bool = true

    /// Open the database read-only: every file is opened `O_RDONLY`, nothing is created, no
    /// checkpoint runs (recovery of a log keeps its commits in memory and reads them from the
    /// log), writes throw `readOnly`, and the `LOCK` is shared with other read-only opens, so no
    /// writer can open the database meanwhile (it gets `lockedByReaders`). A directory that is
    /// not writable is opened without the lock. Spec: spec/file-format.md#read-only-opens
    public var readOnly: Bool = false

    public init() {}
}
