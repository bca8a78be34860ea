/// Durable commits of concurrent writers share one sync of the log (group commit).
///
/// A durable `write` appends its commit's frames under the writer lock without syncing them,
/// lets the lock go, and waits here until a sync covers its LSN. The first writer to wait syncs
/// the log once for every commit appended by then, while the next writers append theirs; those
/// are covered by the sync after it. One writer at a time still builds and appends a commit:
/// what the writers share is the wait for the disk.
///
/// Commits reach the commit observer from here, in LSN order with no gap, and a commit that
/// waits for a sync only once the sync has covered it: a copy fed by the observer never holds
/// a durable commit that its source could still lose. A commit is visible to readers of its
/// partition once appended; `write` returns once it is durable. Spec: file-format.md#group-commit
final class GroupCommit: @unchecked Sendable {
    /// How an appended commit stands when it is handed over.
    enum Appended {
        /// Synced by its own commit (a direct or a replica's commit): so is every commit
        /// appended before it, the log's sync covers every earlier frame.
        case synced
        /// A `noSync` commit: observed as soon as every commit before it is.
        case unsynced
        /// A durable commit that waits for the group's next sync (`waitUntilDurable`).
        case awaitingSync
    }

    /// A commit appended and not yet handed to the observer.
    private struct Waiting {
        let lsn: LSN
        let needsSync: Bool
        /// Hands the commit's change set to the observer set when it was committed, if any.
        let observe: (() -> Void)?
    }

    /// One sync of the log at a time. Taken after the writer lock, never before it.
    private let syncLock = Lock()
    /// Guards the state below; taken last. Observers run under it, so they run one at a time
    /// and in LSN order.
    private let stateLock = Lock()
    private var waiting: [Waiting] = []
    /// The newest LSN known to be on disk; written under `stateLock` and `durableLock`, read
    /// under either (an observer reads `durableThrough` under `stateLock`'s hold).
    private var durableLSN: LSN
    private let durableLock = Lock()
    /// A failed sync: what was appended after the last good one may or may not be on disk, and
    /// nothing is written until the partition is reopened (the PostgreSQL fsync lesson).
    private var syncFailure: PartitionDBError? = nil
    /// The number of syncs this group ran (for tests and benchmarks).
    private var syncs = 0

    init(durableThrough lsn: LSN) {
        durableLSN = lsn
    }

    var failure: PartitionDBError? { stateLock.withLock { syncFailure } }
    /// The newest LSN known to be on disk.
    var durableThrough: LSN { durableLock.withLock { durableLSN } }
    var syncCount: Int { stateLock.withLock { syncs } }

    /// Takes a commit just appended and published; call under the writer lock, in LSN order.
    /// Observes every commit that can be observed now.
    func appended(_ lsn: LSN, _ state: Appended, observe: (() -> Void)?) {
        stateLock.withLock {
            precondition(waiting.last.map { $0.lsn < lsn } ?? true, "commits are handed over in LSN order")
            if state == .synced { advanceDurable(to: lsn) }
            waiting.append(Waiting(lsn: lsn, needsSync: state == .awaitingSync, observe: observe))
            observeReady()
        }
    }

    /// Returns once `lsn` is durable, syncing the log for the whole group if no sync has covered
    /// it yet. `sync` syncs the log and returns the newest LSN whose frames were written before
    /// it began. Call without the writer lock, so that other writers append meanwhile. Throws
    /// the failure of the sync that should have covered `lsn`, or of an earlier one.
    func waitUntilDurable(_ lsn: LSN, sync: () throws -> LSN) throws {
        syncLock.lock()
        defer { syncLock.unlock() }
        let covered: Bool = try stateLock.withLock {
            if let syncFailure { throw syncFailure }
            return durableLSN >= lsn
        }
        guard !covered else { return }
        do {
            let through = try sync()
            precondition(through >= lsn, "a group sync must cover the commit that asked for it")
            stateLock.withLock {
                syncs += 1
                advanceDurable(to: through)
                observeReady()
            }
        } catch let error as PartitionDBError {
            stateLock.withLock { if syncFailure == nil { syncFailure = error } }
            throw error
        }
    }

    /// Makes every appended commit durable and observed; call under the writer lock (so none is
    /// appended meanwhile) before anything that replaces the pager, changes the observer or
    /// closes the files.
    func settle(sync: () throws -> LSN) throws {
        let newest: LSN? = stateLock.withLock { waiting.last(where: { $0.needsSync })?.lsn }
        if let newest { try waitUntilDurable(newest, sync: sync) }
    }

    /// Call under `stateLock`.
    private func advanceDurable(to lsn: LSN) {
        durableLock.withLock { durableLSN = max(durableLSN, lsn) }
    }

    /// Observes the waiting commits from the oldest while each is durable or needs no sync.
    /// Call under `stateLock`.
    private func observeReady() {
        var ready = 0
        while ready < waiting.count, !waiting[ready].needsSync || waiting[ready].lsn <= durableLSN {
            waiting[ready].observe?()
            ready += 1
        }
        waiting.removeFirst(ready)
    }
}
