import Dispatch
import Foundation
import PartitionDB
import Synchronization

/// The commits of one primary partition kept for its replicas (spec/replication.md#retention):
/// every change set the engine's commit observer hands over, in LSN order, written to segment
/// files in `NAME.pdb-shipped/` beside the partition, until the retention bounds (bytes on
/// disk, age) remove the oldest segment. A replica whose position is older than what is kept,
/// or of another file id (after a compaction or restore), catches up by snapshot instead.
///
/// Memory holds an index of the retained commits and the newest compressed commits (up to
/// `cacheBytes`), so a replica that keeps up never reads the disk. Appends are not synced one by
/// one (the partition's own log holds the commit durably): a segment is synced when it is
/// sealed, and a restart keeps what it finds whole and consecutive, drops what the partition
/// does not have (commits that were not durable), and fills a gap from the partition's log when
/// it still holds the commits.
final class ShippedLog: Sendable {
    enum Read {
        /// The next commits after the position, at most about `maxBytes` of page images.
        case batch(Batch)
        /// The position is the newest commit.
        case caughtUp
        /// The position is not kept (or of another file): send a snapshot.
        case notRetained
    }

    /// Consecutive commits as their retained records' zstd frames, concatenated: a batch
    /// message's contents (spec/replication.md#batches), shipped without compressing again.
    struct Batch {
        var firstLSN: UInt64
        var count: Int
        /// The frames' contents together: the commits' change sets, encoded as in a batch.
        var uncompressedLength: Int
        var frames: [UInt8]
        var lastLSN: UInt64 { firstLSN + UInt64(count) - 1 }
    }

    /// Compressed commits kept in memory beside the index, newest first.
    static let cacheBytes = 16 << 20

    private struct Entry {
        var segment: SegmentFile
        var offset: Int
        var size: Int
        /// The uncompressed size of the change set: page images and their numbers.
        var pageBytes: Int
        /// Unix milliseconds.
        var committed: UInt64
        /// The record's zstd frame, while it is among the newest `cacheBytes`.
        var cached: [UInt8]?
    }

    private struct Segment {
        var file: SegmentFile
        var size: Int
        var newestCommitted: UInt64
    }

    private struct State {
        var fileID: [UInt8]
        /// The LSN before the first kept entry: positions from here on are retained.
        var base: UInt64
        var entries: [Entry] = []
        var start = 0
        /// The oldest entry whose frame is still in memory.
        var cacheStart = 0
        var cachedBytes = 0
        /// Oldest first; appends go to the last.
        var segments: [Segment] = []
        var diskBytes = 0
        var lastError: String?
        /// Every configured replica has acknowledged up to here: older segments are not needed.
        var released: UInt64 = 0
        var newest: UInt64 { base + UInt64(entries.count - start) }
    }

    private let state: Mutex<State>

    /// Change sets handed over and not yet written, oldest first.
    private struct Queued {
        var changes: [(ChangeSet, committed: UInt64)] = []
        var drainScheduled = false
    }

    private let queued = Mutex(Queued())
    /// Held while queued change sets are written, so they go out in order.
    private let drainLock = Mutex(())
    private let drainQueue: DispatchQueue

    /// Streams waiting for a commit; `handedOver` counts appends, so a wait that begins just
    /// after one is not missed.
    private struct Waiting {
        var handedOver: UInt64 = 0
        var waiters: [UnsafeContinuation<Void, Never>] = []
    }

    private let waiting = Mutex(Waiting())
    let retention: HostConfiguration.Retention
    let directory: String
    /// A segment is sealed (synced, and a new one begun) past this size: a quarter of the bound,
    /// so a partition keeps about five files.
    let segmentBytes: Int

    /// Opens the retained log of `partition` in `directory` (created if missing), recovering what
    /// an earlier run left. Call before setting the commit observer, while nothing writes.
    init(directory: String, partition: Partition, retention: HostConfiguration.Retention) throws {
        self.directory = directory
        self.retention = retention
        segmentBytes = Int(min(max(retention.maxBytes / 4, 4096), 64 << 20))
        drainQueue = DispatchQueue(label: "pdb.shipped-log.\(partition.name)")
        try SegmentFile.makeDirectory(directory)
        state = Mutex(try Self.recover(directory: directory, partition: partition))
        let (newest, fileID) = state.withLock { ($0.newest, $0.fileID) }
        let last = partition.lastLSN.rawValue
        if newest < last {
            // Commits the partition made after the segments' end (a kill between a commit and
            // its append): from the partition's log while it still holds them.
            do {
                for changes in try partition.changes(after: LSN(newest)) { append(changes) }
                drain()
            } catch {
                reset(fileID: fileID, lastLSN: partition.lastLSN)
            }
        }
        state.withLock { trim(&$0) }
    }

    /// The segments' whole, consecutive commits that the partition has too.
    private static func recover(directory: String, partition: Partition) throws -> State {
        let fileID = partition.fileID
        let last = partition.lastLSN.rawValue
        var state = State(fileID: fileID, base: last)
        func dropAll() {
            for segment in state.segments { segment.file.remove() }
            state = State(fileID: fileID, base: last)
        }
        let files = SegmentFile.list(directory: directory)
        for (index, found) in files.enumerated() {
            let file = try SegmentFile.open(path: found.path, firstLSN: found.firstLSN)
            let scan = SegmentFormat.scan(try file.read(at: 0, count: try file.size()))
            let isNewest = index == files.count - 1
            guard let header = scan.header, header.fileID == fileID, header.firstLSN == found.firstLSN,
                state.segments.isEmpty || header.firstLSN == state.newest + 1
            else {
                // Another partition file (compacted or restored while stopped), a header cut
                // short, or a gap: nothing before it can be followed on from.
                dropAll()
                file.remove()
                continue
            }
            if scan.stop != nil && !isNewest {
                // Damage inside an older segment: the commits after it cannot follow on.
                dropAll()
                file.remove()
                continue
            }
            if scan.stop != nil { try file.truncate(to: scan.end) }
            if state.segments.isEmpty { state.base = header.firstLSN - 1 }
            for (record, offset) in scan.records {
                state.entries.append(
                    Entry(
                        segment: file, offset: offset, size: record.size, pageBytes: Int(record.uncompressedLength),
                        committed: record.committed))
            }
            state.segments.append(
                Segment(file: file, size: scan.end, newestCommitted: scan.records.last?.record.committed ?? 0))
            state.diskBytes += scan.end
        }
        if state.entries.isEmpty || state.base > last {
            dropAll()
        } else if state.newest > last {
            // Commits that were not durable and that the partition lost in a crash.
            let keep = Int(last - state.base)
            let cut = state.entries[keep]
            while let segment = state.segments.last, segment.file !== cut.segment {
                segment.file.remove()
                state.diskBytes -= segment.size
                state.segments.removeLast()
            }
            try cut.segment.truncate(to: cut.offset)
            state.diskBytes -= state.segments[state.segments.count - 1].size - cut.offset
            state.segments[state.segments.count - 1].size = cut.offset
            state.entries.removeSubrange(keep...)
            state.segments[state.segments.count - 1].newestCommitted =
                state.entries.last { $0.segment === cut.segment }?.committed ?? 0
        }
        state.cacheStart = state.entries.count
        SegmentFile.syncDirectory(directory)
        return state
    }

    /// Called by the commit observer, in LSN order, with the writer lock held: the change set is
    /// only queued (and a waiting stream woken), so the writer does not wait for its compression
    /// and write. The queue is written out by a background drain, or by whichever reader comes
    /// first: every read of the log drains it before it looks, so a read sees every commit
    /// handed over before it.
    func append(_ changes: ChangeSet) {
        let committed = UInt64(Date().timeIntervalSince1970 * 1000)
        let schedule = queued.withLock { queued in
            queued.changes.append((changes, committed))
            defer { queued.drainScheduled = true }
            return !queued.drainScheduled
        }
        if schedule { drainQueue.async { self.drain() } }
        wake()
    }

    /// Writes every queued change set to the segments, in order.
    private func drain() {
        drainLock.withLock { _ in
            let batch = queued.withLock { queued in
                queued.drainScheduled = false
                defer { queued.changes = [] }
                return queued.changes
            }
            for (changes, committed) in batch { write(changes, committed: committed) }
        }
    }

    /// Compresses one change set and appends it (holding `drainLock`).
    private func write(_ changes: ChangeSet, committed: UInt64) {
        let record: [UInt8]
        do {
            record = try SegmentFormat.record(changes, committed: committed)
        } catch {
            state.withLock { state in
                restart(&state, fileID: changes.fileID, base: changes.lsn.rawValue)
                state.lastError = "\(error)"
            }
            return
        }
        let pageBytes = changes.pages.reduce(20) { $0 + $1.bytes.count + 4 }
        state.withLock { state in
            if changes.fileID != state.fileID || changes.lsn.rawValue != state.newest + 1 {
                // Another file (a restore) or a gap: nothing kept before applies any more.
                restart(&state, fileID: changes.fileID, base: changes.lsn.rawValue - 1)
            }
            do {
                try write(record, lsn: changes.lsn.rawValue, committed: committed, pageBytes: pageBytes, into: &state)
            } catch {
                restart(&state, fileID: changes.fileID, base: changes.lsn.rawValue)
                state.lastError = "\(error)"
                return
            }
            let frame = Array(SegmentFormat.frame(ofRecord: record))
            state.entries[state.entries.count - 1].cached = frame
            state.cachedBytes += frame.count
            while state.cachedBytes > Self.cacheBytes, state.cacheStart < state.entries.count - 1 {
                state.cachedBytes -= state.entries[state.cacheStart].cached?.count ?? 0
                state.entries[state.cacheStart].cached = nil
                state.cacheStart += 1
            }
            trim(&state)
        }
    }

    /// Appends a record to the newest segment, or to a new one when it is full.
    private func write(_ record: [UInt8], lsn: UInt64, committed: UInt64, pageBytes: Int, into state: inout State)
        throws
    {
        if state.segments.isEmpty
            || (state.segments[state.segments.count - 1].size + record.count > segmentBytes
                && state.segments[state.segments.count - 1].size > SegmentFormat.headerBytes)
        {
            if let sealed = state.segments.last?.file {
                let directory = self.directory
                DispatchQueue.global(qos: .utility).async {
                    // A failed sync loses nothing a replica is owed yet (the records were read
                    // back from the page cache), but the segment may not survive a power loss:
                    // say so in the status.
                    do { try sealed.sync() } catch { self.state.withLock { $0.lastError = "\(error)" } }
                    SegmentFile.syncDirectory(directory)
                }
            }
            let file = try SegmentFile.create(directory: directory, fileID: state.fileID, firstLSN: lsn)
            state.segments.append(Segment(file: file, size: SegmentFormat.headerBytes, newestCommitted: committed))
            state.diskBytes += SegmentFormat.headerBytes
        }
        let last = state.segments.count - 1
        let offset = state.segments[last].size
        try state.segments[last].file.write(record, at: offset)
        state.segments[last].size += record.count
        state.segments[last].newestCommitted = committed
        state.diskBytes += record.count
        state.entries.append(
            Entry(
                segment: state.segments[last].file, offset: offset, size: record.count, pageBytes: pageBytes,
                committed: committed))
    }

    /// Restarts the log after the partition was rewritten into another file (an erasure's
    /// compaction): every segment is removed, and each stream finds its position gone and sends
    /// its replica a snapshot of the new file.
    func restart(afterRewriteOf partition: Partition) {
        reset(fileID: partition.fileID, lastLSN: partition.lastLSN)
        wakeAll()
    }

    /// Restarts the log after the partition became another file (compaction, restore).
    private func reset(fileID: [UInt8], lastLSN: LSN) {
        drainLock.withLock { _ in
            queued.withLock { $0.changes = [] }
            state.withLock { restart(&$0, fileID: fileID, base: lastLSN.rawValue) }
        }
        wake()
    }

    /// Removes every segment and keeps nothing before `base`.
    private func restart(_ state: inout State, fileID: [UInt8], base: UInt64) {
        for segment in state.segments { segment.file.remove() }
        let error = state.lastError
        state = State(fileID: fileID, base: base)
        state.lastError = error
    }

    /// Removes the oldest segments while the log is over its size bound or their newest commit
    /// is older than the age bound.
    /// The last LSN the oldest segment holds.
    private func lastLSN(of oldest: Segment, in state: State) -> UInt64 {
        var index = state.start
        while index < state.entries.count, state.entries[index].segment === oldest.file { index += 1 }
        return state.base + UInt64(index - state.start)
    }

    /// Every configured replica holds the commits up to `lsn` durably: the segments wholly at or
    /// below it are removed (all but the newest), as PostgreSQL recycles WAL no replication slot
    /// needs. Until every replica has acknowledged since this host started, nothing is released.
    func release(through lsn: UInt64) {
        drain()
        state.withLock { state in
            guard lsn > state.released else { return }
            state.released = lsn
            trim(&state)
        }
    }

    private func trim(_ state: inout State) {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let maxAge = retention.maxAgeSeconds > UInt64.max / 1000 ? UInt64.max : retention.maxAgeSeconds * 1000
        while let oldest = state.segments.first,
            state.diskBytes > retention.maxBytes || (now > maxAge && oldest.newestCommitted < now - maxAge)
                || (state.segments.count > 1 && lastLSN(of: oldest, in: state) <= state.released)
        {
            while state.start < state.entries.count, state.entries[state.start].segment === oldest.file {
                if state.start >= state.cacheStart {
                    state.cachedBytes -= state.entries[state.start].cached?.count ?? 0
                }
                state.start += 1
                state.base += 1
            }
            state.cacheStart = max(state.cacheStart, state.start)
            oldest.file.remove()
            state.diskBytes -= oldest.size
            state.segments.removeFirst()
        }
        if state.start > 1024, state.start * 2 > state.entries.count {
            state.entries.removeFirst(state.start)
            state.cacheStart -= state.start
            state.start = 0
        }
    }

    /// Whether a stream from `position` of file `fileID` can be served from the kept commits.
    func retains(fileID: [UInt8], after position: UInt64) -> Bool {
        drain()
        return state.withLock { fileID == $0.fileID && position >= $0.base && position <= $0.newest }
    }

    /// The commits after `position`, up to about `maxBytes` of page images (at least one).
    func read(fileID: [UInt8], after position: UInt64, maxBytes: Int) -> Read {
        drain()
        let picked: [Entry]? = state.withLock { state in
            guard fileID == state.fileID, position >= state.base, position <= state.newest else { return nil }
            // Entries are consecutive from base + 1.
            var index = state.start + Int(position - state.base)
            var result: [Entry] = []
            var bytes = 0
            while index < state.entries.count, result.isEmpty || bytes + state.entries[index].pageBytes <= maxBytes {
                result.append(state.entries[index])
                bytes += state.entries[index].pageBytes
                index += 1
            }
            return result
        }
        guard let picked else { return .notRetained }
        guard !picked.isEmpty else { return .caughtUp }
        // One commit larger than a batch may be (a bulk load of about 90,000 records of 174
        // bytes) is not streamed: the replica gets a snapshot that holds it.
        if picked[0].pageBytes > ChangeBatch.maxUncompressedBytes { return .notRetained }
        // Older commits come from the segments, outside the lock (a removed segment stays
        // readable while its file is open); each record's checksum and LSN are checked, and
        // the replica decodes and checks every commit before it applies one.
        do {
            var frames: [UInt8] = []
            frames.reserveCapacity(picked.reduce(0) { $0 + ($1.cached?.count ?? $1.size) })
            for (offset, entry) in picked.enumerated() {
                if let cached = entry.cached {
                    frames += cached
                    continue
                }
                let bytes = try entry.segment.read(at: entry.offset, count: entry.size)
                let (record, frame) = try SegmentFormat.checkedFrame(ofRecord: bytes)
                guard record.lsn == position + UInt64(offset) + 1 else {
                    throw ResidencyError.retainedLog(path: entry.segment.path, operation: "read", errno: 0)
                }
                frames += frame
            }
            return .batch(
                Batch(
                    firstLSN: position + 1, count: picked.count,
                    uncompressedLength: picked.reduce(0) { $0 + $1.pageBytes }, frames: frames))
        } catch {
            state.withLock { $0.lastError = "\(error)" }
            return .notRetained
        }
    }

    /// Waits until a commit after `position` is handed over, or `wakeAll` runs (the heartbeat
    /// ticker, shutdown).
    func waitForCommit(after position: UInt64) async {
        let seen = waiting.withLock { $0.handedOver }
        drain()
        if state.withLock({ $0.newest > position }) { return }
        await withUnsafeContinuation { continuation in
            let ready = waiting.withLock { waiting in
                if waiting.handedOver != seen { return true }
                waiting.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Wakes the waiting streams after an append.
    private func wake() {
        let waiters = waiting.withLock { waiting in
            waiting.handedOver &+= 1
            defer { waiting.waiters = [] }
            return waiting.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wakeAll() {
        let waiters = waiting.withLock { waiting in
            defer { waiting.waiters = [] }
            return waiting.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    struct Figures {
        var fileID: [UInt8]
        var newest: UInt64
        var oldestRetained: UInt64
        /// Bytes of the segment files.
        var retainedBytes: Int
        var segments: Int
        var lastError: String?
    }

    var figures: Figures {
        drain()
        return state.withLock {
            Figures(
                fileID: $0.fileID, newest: $0.newest, oldestRetained: $0.base, retainedBytes: $0.diskBytes,
                segments: $0.segments.count, lastError: $0.lastError)
        }
    }

    /// How long ago the first commit after `position` was made, and the page bytes after it.
    func lag(after position: UInt64) -> (milliseconds: Int, bytes: Int) {
        drain()
        return state.withLock { state in
            guard position >= state.base, position < state.newest else { return (0, 0) }
            let index = state.start + Int(position - state.base)
            let now = UInt64(Date().timeIntervalSince1970 * 1000)
            let committed = state.entries[index].committed
            let bytes = state.entries[index...].reduce(0) { $0 + $1.pageBytes }
            return (now > committed ? Int(now - committed) : 0, bytes)
        }
    }
}
