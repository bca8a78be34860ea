/// One region-tagged B+tree file of named tables. Open it through `Database`.
///
/// Any number of `read` transactions run at once, each on the snapshot of the newest commit at
/// its start; one `write` transaction runs at a time. Readers and the writer never wait for each
/// other (see `Pager`).
public final class Partition: @unchecked Sendable {
    public let name: String
    public let region: Region
    /// `region.isGlobal`, decided once: every put asks it (the residency check, reserved tables).
    let isGlobal: Bool
    public let path: String
    let fileSystem: any FileSystem
    let resolver: @Sendable () -> (any HomeRegionResolver)?
    let options: Options
    /// Protects `currentPager`, which compaction replaces. Old transactions keep the pager they
    /// started with; its files stay open until the last of them ends.
    private let pagerLock = Lock()
    private var currentPager: Pager
    var pager: Pager {
        get { pagerLock.withLock { currentPager } }
        set { pagerLock.withLock { currentPager = newValue } }
    }

    /// Registers a reader on the current pager and returns it with the reader's id and snapshot,
    /// or throws `closed` once the partition is closed. The caller ends it with
    /// `pager.endRead(id)`. Registering happens under `pagerLock`, where `close()` checks for
    /// readers and marks the partition closed in one step: a read racing a close either is
    /// refused here or makes the close refuse (`busy`); it never reads through closed or reused
    /// descriptors.
    func beginRead() throws -> (pager: Pager, id: Int, snapshot: Pager.Snapshot) {
        let begun = try pagerLock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            let (id, snapshot) = currentPager.beginRead()
            return (currentPager, id, snapshot)
        }
        readerRegistered?()
        return begun
    }

    /// Test hook: runs in `beginRead()` once the reader is registered, before it reads, where a
    /// close used to slip in between taking the pager and registering. Set it before any reader
    /// starts.
    var readerRegistered: (@Sendable () -> Void)? = nil

    /// Serializes write transactions, checkpoints, compaction and close.
    private let writerLock = Lock()
    /// Guarded by `writerLock`: set after a failed commit write or sync. Reads still work.
    var failure: PartitionDBError? = nil
    /// Guarded by `writerLock` for writers; readers look at it through `pagerLock`.
    private var isClosed = false
    /// Called once by `close()`, so the database forgets this handle and opens a fresh one.
    var onClose: (@Sendable () -> Void)? = nil
    /// Guarded by `writerLock`: receives every commit's change set (`setCommitObserver`).
    private var commitObserver: (@Sendable (ChangeSet) -> Void)? = nil
    /// Guarded by `writerLock`: replaces `Options.autoCheckpointFrames` for this handle.
    private var checkpointFrames: Int? = nil
    /// Durable commits waiting for a shared sync of the log, and the order the observer sees.
    let group: GroupCommit

    init(
        name: String, region: Region, path: String, fileSystem: any FileSystem, pager: Pager, options: Options,
        resolver: @escaping @Sendable () -> (any HomeRegionResolver)?
    ) {
        self.name = name
        self.region = region
        self.isGlobal = region.isGlobal
        self.path = path
        self.fileSystem = fileSystem
        self.currentPager = pager
        self.options = options
        self.resolver = resolver
        self.group = GroupCommit(durableThrough: pager.latestSnapshot.header.lastLSN)
        self.recoveryWarnings = pager.wal.recoveryWarning.map { [$0] } ?? []
    }

    /// The LSN of the newest commit.
    public var lastLSN: LSN { pager.latestSnapshot.header.lastLSN }

    /// The partition's epoch: 1 for a partition never promoted; `beginEpoch` raises it. A
    /// replicated copy has its primary's, through the change sets it applies. Spec:
    /// file-format.md#header-page
    public var epoch: UInt64 { pager.latestSnapshot.header.epoch }

    /// Where each epoch after the first began, oldest first (at most 16: older starts are dropped).
    public var epochHistory: [EpochStart] { pager.latestSnapshot.header.epochHistory }

    /// The last LSN this partition's history holds of `epoch`: the LSN before the next epoch's
    /// first commit. Nil when `epoch` is the current one or newer (its commits go on), or so old
    /// that the history no longer says where it ended. A copy that stopped in `epoch` at an LSN
    /// beyond this holds commits this partition never had (spec/replication.md#rejoin).
    public func lastLSN(ofEpoch epoch: UInt64) -> LSN? {
        let history = epochHistory
        guard let next = history.first(where: { $0.epoch > epoch }) else { return nil }
        // A full history may have dropped the start of an epoch between `epoch` and its first entry.
        if next == history.first, history.count == PartitionHeader.maxEpochHistory { return nil }
        return LSN(next.firstLSN.rawValue - 1)
    }

    /// Raises the partition's epoch to `epoch` with a durable commit of its own (no record
    /// changes) and returns its LSN, the new epoch's first; the change set carries the new epoch
    /// to every copy. Promotion calls this before the new primary accepts a write
    /// (spec/replication.md#promotion). Throws `epochNotNewer` unless `epoch` is above the
    /// current one.
    package func beginEpoch(_ epoch: UInt64) throws -> LSN {
        try write(durability: .durable, unlockingReservedTables: true) { transaction in
            let header = transaction.writeContext.header
            guard epoch > header.epoch else {
                throw PartitionDBError.epochNotNewer(partition: name, epoch: epoch, current: header.epoch)
            }
            var history = header.epochHistory
            history.append(EpochStart(epoch: epoch, firstLSN: header.lastLSN))
            if history.count > PartitionHeader.maxEpochHistory { history.removeFirst() }
            transaction.writeContext.header.epoch = epoch
            transaction.writeContext.header.epochHistory = history
            return header.lastLSN
        }
    }

    /// The file id of the partition file this handle now uses: 16 random bytes that every change
    /// set carries and `apply` requires of a copy. `compact()` gives the partition a new file, with
    /// a new file id, in place (the handle and its observer carry on): change sets from then on
    /// carry the new id, copies made before refuse them (`changeStreamMismatch`), and a shipper
    /// that sees the id change must seed its copies again from a backup. Spec:
    /// file-format.md#change-sets
    public var fileID: [UInt8] { pager.latestSnapshot.header.fileID }

    /// What opening this partition found and kept aside: set when recovery stopped at a damaged
    /// log frame that frames of later commits follow, so commits were dropped and a copy of the
    /// log was preserved next to the file. Empty after a clean open or a torn tail. `check()`
    /// reports the preserved copy to every later process too. Spec: file-format.md#damage-in-the-log
    public let recoveryWarnings: [RecoveryWarning]

    // MARK: Transactions

    /// Runs `body` on a snapshot of the newest commit.
    public func read<T>(_ body: (ReadTransaction) throws -> T) throws -> T {
        let (pager, id, snapshot) = try beginRead()
        defer { pager.endRead(id) }
        let transaction = ReadTransaction(context: PageContext(pager: pager, snapshot: snapshot), partition: self)
        defer { transaction.isFinished = true }
        return try body(transaction)
    }

    /// Runs `body` as the partition's one write transaction: commits when it returns, rolls back
    /// when it throws. With `.durable` the commit is on disk when this returns; concurrent durable
    /// writers share the sync of the log (`GroupCommit`), and readers see a commit once it is
    /// appended, before its sync. In the global partition the reserved tables (`isReserved`) are
    /// refused (`reservedTable`).
    public func write<T>(durability: Durability? = nil, _ body: (WriteTransaction) throws -> T) throws -> T {
        try write(durability: durability, unlockingReservedTables: false, body)
    }

    /// `write` for the project's own APIs (the residency directory), which may write the
    /// reserved tables: they keep the rules those tables live by.
    package func writeReserved<T>(durability: Durability? = nil, _ body: (WriteTransaction) throws -> T) throws -> T {
        try write(durability: durability, unlockingReservedTables: true, body)
    }

    private func write<T>(
        durability: Durability?, unlockingReservedTables: Bool, _ body: (WriteTransaction) throws -> T
    ) throws -> T {
        let (result, awaiting, pager) = try commitUnderWriterLock(
            durability: durability, unlockingReservedTables: unlockingReservedTables, body)
        // Outside the writer lock: the next writers append while this one's sync runs.
        if let awaiting { try waitUntilDurable(awaiting, in: pager) }
        return result
    }

    /// Builds and appends the write transaction; returns its result and, for a durable commit
    /// that waits for the group's sync, its LSN.
    private func commitUnderWriterLock<T>(
        durability: Durability?, unlockingReservedTables: Bool, _ body: (WriteTransaction) throws -> T
    ) throws -> (T, awaiting: LSN?, Pager) {
        writerLock.lock()
        defer { writerLock.unlock() }
        try checkWritable()
        // The writer lock keeps `close()` out until the commit is done.
        let pager = self.pager
        let context = WriteContext(pager: pager, snapshot: pager.latestSnapshot)
        context.header.lastLSN = context.header.lastLSN.next
        let transaction = WriteTransaction(context: context, partition: self)
        transaction.mayWriteReservedTables = unlockingReservedTables
        defer { transaction.isFinished = true }
        let result = try body(transaction)
        precondition(
            !transaction.isBroken, "a write transaction whose change failed must not commit; rethrow the error")
        try transaction.flushCatalog()
        let durability = durability ?? options.durability
        if durability == .durable, let threshold = pager.relocationThreshold {
            try context.relocateChangedNodes(roots: transaction.treeRoots, threshold: threshold)
        }
        let awaiting = try commit(context, durability: durability)
        return (result, awaiting, pager)
    }

    /// Appends the transaction's pages to the log; called with the writer lock held. Returns the
    /// commit's LSN when it waits for the group's sync.
    private func commit(_ context: WriteContext, durability: Durability) throws -> LSN? {
        let awaiting: LSN?
        do {
            awaiting = try commitObserved(
                context.takePagesForCommit(), header: context.header, durability: durability, grouping: true)
        } catch let error as PartitionDBError {
            // A failed write or fsync leaves the disk in an unknown state: never retry it as if it
            // had worked (the PostgreSQL fsync lesson). Reopening runs recovery from what is on disk.
            failure = error
            throw error
        }
        checkpointIfNeeded(pager)
        return awaiting
    }

    /// Waits for the group sync that makes `lsn` durable (`GroupCommit`). A failed sync stops
    /// writes until the partition is reopened (`checkWritable` sees the group's failure).
    private func waitUntilDurable(_ lsn: LSN, in pager: Pager) throws {
        try group.waitUntilDurable(lsn) { try pager.syncLog() }
    }

    /// Makes every appended commit durable and observed; under the writer lock.
    private func settleGroup() throws {
        let pager = self.pager
        try group.settle { try pager.syncLog() }
    }

    /// Commits `pages` through the pager, then hands the commit's change set, once it may be
    /// observed, to the observer set now, if any (only then are the page images copied). Called
    /// with the writer lock held, by `write` and `apply`, in LSN order; a commit that throws is
    /// not observed. With `grouping`, a durable commit that writes only to the log is appended
    /// unsynced and its LSN returned: the caller waits for the group's sync, which observes it.
    @discardableResult
    func commitObserved(
        _ pages: consuming [(PageNumber, Page)], header: PartitionHeader, durability: Durability,
        grouping: Bool = false
    ) throws -> LSN? {
        let observer = commitObserver
        let (images, awaitsSync) = try pager.commit(
            pages, header: header, durability: durability, capturingImages: observer != nil, deferringSync: grouping)
        let observe: (() -> Void)? = observer.map { observer in
            let changes = ChangeSet(
                lsn: header.lastLSN, fileID: header.fileID, pageCount: header.pageCount, pages: images)
            return { observer(changes) }
        }
        let state: GroupCommit.Appended =
            awaitsSync ? .awaitingSync : durability == .durable ? .synced : .unsynced
        group.appended(header.lastLSN, state, observe: observe)
        return awaitsSync ? header.lastLSN : nil
    }

    /// Sets (or, with nil, removes) the function that receives the complete change set of every
    /// later commit of this handle: `write`s (reserved tables included), direct and relocated
    /// commits, and change sets `apply`ed to a copy, so a copy can itself be shipped from. A
    /// commit is observed once it is published and, if `.durable`, on disk: a durable `write`
    /// that waits for a shared sync (`GroupCommit`) is observed by the thread whose sync covered
    /// it, any other commit by its own thread under the writer lock, before the automatic
    /// checkpoint. Change sets arrive one at a time, in LSN order with no gap; a commit that
    /// fails or rolls back calls nothing. Every commit after this returns is observed; a shipper
    /// seeds a copy with a backup taken after setting the observer and drops the change sets at
    /// or below the backup's LSN.
    ///
    /// Keep the observer short (hand the set to a queue): commits wait for it. It must not call
    /// back into this partition's writes, `apply`, `checkpoint`, `compact`, `close` or
    /// `setCommitObserver` (they wait for locks it may run under). Compaction is not a commit
    /// and is not observed; the next change set carries the new `fileID`. The observer belongs
    /// to this handle: `close()` ends it, and a restore with `replace` needs the old handle
    /// closed, so a new handle starts without one. Spec: file-format.md#change-sets
    public func setCommitObserver(_ observer: (@Sendable (ChangeSet) -> Void)?) {
        writerLock.lock()
        defer { writerLock.unlock() }
        // Commits still waiting for their sync go to the observer they were made under.
        try? settleGroup()
        commitObserver = observer
    }

    /// Sets the log frames after which a commit of this handle runs the automatic checkpoint
    /// (nil: the database's `Options.autoCheckpointFrames`). A replica sets a smaller number for
    /// the partitions it applies to: its apply, and so its acknowledgement, waits for each
    /// checkpoint, and a checkpoint of fewer frames is a shorter wait.
    package func setAutoCheckpointFrames(_ frames: Int?) {
        precondition(frames.map { $0 >= 1 } ?? true, "a checkpoint after at least one frame")
        writerLock.lock()
        defer { writerLock.unlock() }
        checkpointFrames = frames
    }

    /// Runs the automatic checkpoint after a commit. The commit has succeeded whatever happens
    /// here; a failure only stops further writes until the partition is reopened.
    func checkpointIfNeeded(_ pager: Pager) {
        guard pager.needsCheckpoint(after: checkpointFrames) else { return }
        do {
            try pager.checkpoint()
        } catch let error as PartitionDBError {
            failure = error
        } catch {
            failure = .io(errno: 0, operation: "checkpoint", path: path)
        }
    }

    private func checkWritable() throws {
        if isClosed { throw PartitionDBError.closed(partition: name) }
        if options.readOnly { throw PartitionDBError.readOnly(path: path, operation: "writing") }
        if failure != nil || group.failure != nil { throw PartitionDBError.needsReopen(partition: name) }
    }

    /// Runs `body` with the writer lock held and writes allowed (maintenance: compaction, apply).
    func exclusively<T>(_ body: () throws -> T) throws -> T {
        writerLock.lock()
        defer { writerLock.unlock() }
        try checkWritable()
        do {
            // Maintenance and applied change sets start from a durable, fully observed log.
            try settleGroup()
            return try body()
        } catch let error as PartitionDBError {
            if case .io = error { failure = error }
            throw error
        }
    }

    /// Whether `close()` has run.
    public var isOpen: Bool { pagerLock.withLock { !isClosed } }

    // MARK: Residency

    /// Guarantee 1 of the design brief: the region check sits in the engine's write path.
    func checkResidency(owner: SubjectID?) throws {
        if isGlobal {
            guard owner == nil else { throw PartitionDBError.ownerNotAllowed(partition: name) }
            return
        }
        guard let owner else { throw PartitionDBError.ownerRequired(partition: name) }
        guard let home = try resolver()?.homeRegion(of: owner) else {
            throw PartitionDBError.unknownHome(owner: owner.rawValue, partition: name)
        }
        guard home == region else {
            throw PartitionDBError.crossRegionWrite(owner: owner.rawValue, home: home.name, partition: name)
        }
    }

    /// Whether `table` is reserved: in the global partition, the residency directory's `homes`
    /// and every name that begins with `pdb.` (kept for the project's later tables). A plain
    /// `write` cannot change them, so no generic put can move a home and strand its records.
    public func isReserved(_ table: String) -> Bool {
        isGlobal && (table == Partition.directoryTable || table.hasPrefix("pdb."))
    }

    /// The table of the global partition that holds the residency directory (`ResidencyDirectory`
    /// names its table by this), reserved to it.
    public static let directoryTable = "homes"

    // MARK: Maintenance

    /// Copies the log into the partition file as far as readers allow.
    public func checkpoint() throws {
        try exclusively { _ = try pager.checkpoint() }
    }

    /// Checkpoints everything (not when read-only) and closes the files. Further use throws
    /// `closed`. Throws `busy`, and stays open, while a read transaction (or `check()`,
    /// `backup(to:)`, `info()`) runs; close again when it has ended. Throws the earlier I/O error,
    /// if writes had stopped because of one (the log keeps what it holds); the files are closed
    /// then all the same.
    public func close() throws {
        writerLock.lock()
        defer { writerLock.unlock() }
        guard !isClosed else { return }
        // Commits waiting for their sync are synced and observed before the files close; a
        // failure here is thrown below, after the files are closed.
        let settled = Result { try settleGroup() }
        let pager = self.pager
        // A reader still running needs the files, and a second handle opened on them meanwhile
        // would checkpoint under it: closing waits for the caller to finish its reads. The check
        // and the mark are one step under `pagerLock`, where readers register.
        let readers: Int = pagerLock.withLock {
            let readers = pager.closeIfIdle()
            if readers == 0 { isClosed = true }
            return readers
        }
        guard readers == 0 else {
            throw PartitionDBError.busy(partition: name, reason: "\(readers) read transactions are still running")
        }
        onClose?()
        // What the observer holds (a shipper's queue) is let go with the handle.
        commitObserver = nil
        defer { pager.releaseFiles() }
        // After an I/O error the partition file may lack commits that only the log holds: say so
        // (reopening recovers them) rather than close as if all were well.
        if let failure { throw failure }
        if let failure = group.failure { throw failure }
        try settled.get()
        if !options.readOnly { try pager.checkpointAll() }
    }

    /// Facts about the partition for `pdb info`.
    public func info() throws -> PartitionInfo {
        // The snapshot of the read itself: a closed partition refuses it, and the counts and the
        // header describe the same commit.
        var tables: [String: Int] = [:]
        let snapshot = try read { tx in
            for table in try tx.tables() { tables[table] = try tx.count(table) }
            return tx.context.snapshot
        }
        let header = snapshot.header
        return PartitionInfo(
            name: name, region: region, pageSize: header.pageSize, pageCount: Int(header.pageCount),
            freePages: Int(header.freeCount), lastLSN: header.lastLSN, logFrames: snapshot.frameLimit,
            fileID: header.fileID.map {
                String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16)
            }
            .joined(),
            tables: tables)
    }
}

/// What `Partition.info()` reports.
public struct PartitionInfo: Sendable, Equatable {
    public var name: String
    public var region: Region
    public var pageSize: Int
    public var pageCount: Int
    public var freePages: Int
    public var lastLSN: LSN
    public var logFrames: Int
    public var fileID: String
    public var tables: [String: Int]
}
