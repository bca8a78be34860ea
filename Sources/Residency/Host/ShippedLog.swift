import Foundation
import PartitionDB
import Synchronization

/// The commits of one primary partition kept for its replicas (spec/replication.md#retention):
/// every change set the engine's commit observer hands over, in LSN order, until the retention
/// bounds (bytes, age) drop the oldest. A replica whose position is older than what is kept, or
/// of another file id (after a compaction or restore), catches up by snapshot instead.
///
/// Kept in memory; a primary that restarts keeps nothing of it, so a replica behind the
/// primary's LSN at that moment catches up by snapshot.
final class ShippedLog: Sendable {
    enum Read {
        /// The next commits after the position, at most about `maxBytes` of page images.
        case changes([ChangeSet])
        /// The position is the newest commit.
        case caughtUp
        /// The position is not kept (or of another file): send a snapshot.
        case notRetained
    }

    private struct Entry {
        var changes: ChangeSet
        var bytes: Int
        var committed: ContinuousClock.Instant
    }

    private struct State {
        var fileID: [UInt8]
        /// The LSN before the first kept entry: positions from here on are retained.
        var base: UInt64
        var entries: [Entry] = []
        var start = 0
        var bytes = 0
        var waiters: [UnsafeContinuation<Void, Never>] = []
        var newest: UInt64 { entries.last.map { $0.changes.lsn.rawValue } ?? base }
    }

    private let state: Mutex<State>
    let retention: HostConfiguration.Retention

    init(fileID: [UInt8], lastLSN: LSN, retention: HostConfiguration.Retention) {
        state = Mutex(State(fileID: fileID, base: lastLSN.rawValue))
        self.retention = retention
    }

    /// Called by the commit observer, in LSN order, with the writer lock held.
    func append(_ changes: ChangeSet) {
        let waiters: [UnsafeContinuation<Void, Never>] = state.withLock { state in
            if changes.fileID != state.fileID || changes.lsn.rawValue != state.newest + 1 {
                // Another file (a restore) or a gap: nothing kept before applies any more.
                state = State(fileID: changes.fileID, base: changes.lsn.rawValue - 1)
            }
            let size = changes.pages.reduce(16) { $0 + $1.bytes.count + 4 }
            state.entries.append(Entry(changes: changes, bytes: size, committed: .now))
            state.bytes += size
            trim(&state)
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Restarts the log after the partition became another file (compaction, restore).
    func reset(fileID: [UInt8], lastLSN: LSN) {
        let waiters = state.withLock { state in
            let waiters = state.waiters
            state = State(fileID: fileID, base: lastLSN.rawValue)
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func trim(_ state: inout State) {
        let oldest = ContinuousClock.now - .seconds(Int64(min(retention.maxAgeSeconds, UInt64(Int64.max))))
        while state.start < state.entries.count - 1,
            state.bytes > retention.maxBytes || state.entries[state.start].committed < oldest
        {
            state.bytes -= state.entries[state.start].bytes
            state.base = state.entries[state.start].changes.lsn.rawValue
            state.start += 1
        }
        if state.start > 1024, state.start * 2 > state.entries.count {
            state.entries.removeFirst(state.start)
            state.start = 0
        }
    }

    func read(fileID: [UInt8], after position: UInt64, maxBytes: Int) -> Read {
        state.withLock { state in
            guard fileID == state.fileID, position >= state.base, position <= state.newest else { return .notRetained }
            guard position < state.newest else { return .caughtUp }
            // Entries are consecutive from base + 1.
            var index = state.start + Int(position - state.base)
            var result: [ChangeSet] = []
            var bytes = 0
            while index < state.entries.count, result.isEmpty || bytes + state.entries[index].bytes <= maxBytes {
                result.append(state.entries[index].changes)
                bytes += state.entries[index].bytes
                index += 1
            }
            return .changes(result)
        }
    }

    /// Waits until a commit arrives or `wakeAll` runs (the heartbeat ticker, shutdown).
    func waitForCommit(after position: UInt64) async {
        await withUnsafeContinuation { continuation in
            let ready = state.withLock { state in
                if state.newest > position { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func wakeAll() {
        let waiters = state.withLock { state in
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    struct Figures {
        var fileID: [UInt8]
        var newest: UInt64
        var oldestRetained: UInt64
        var retainedBytes: Int
    }

    var figures: Figures {
        state.withLock {
            Figures(fileID: $0.fileID, newest: $0.newest, oldestRetained: $0.base, retainedBytes: $0.bytes)
        }
    }

    /// How long ago the first commit after `position` was made, and the page bytes after it.
    func lag(after position: UInt64) -> (milliseconds: Int, bytes: Int) {
        state.withLock { state in
            guard position >= state.base, position < state.newest else { return (0, 0) }
            let index = state.start + Int(position - state.base)
            let age = ContinuousClock.now - state.entries[index].committed
            let bytes = state.entries[index...].reduce(0) { $0 + $1.bytes }
            return (Int(age.components.seconds * 1000 + age.components.attoseconds / 1_000_000_000_000_000), bytes)
        }
    }
}
