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
/// Memory holds an index of the retained commits and the newest change sets (up to
/// `cacheBytes`), so a replica that keeps up never reads the disk. Appends are not synced one by
/// one (the partition's own log holds the commit durably): a segment is synced when it is
/// sealed, and a restart keeps what it finds whole and consecutive, drops what the partition
/// does not have (commits that were not durable), and fills a gap from the partition's log when
/// it still holds the commits.
final class ShippedLog: Sendable {
    enum Read {
        /// The next commits after the position, at most about `maxBytes` of page images.
        case changes([ChangeSet])
        /// The position is the newest commit.
        case caughtUp
        /// The position is not kept (or of another file): send a snapshot.
        case notRetained
    }

    /// Change sets kept in memory beside the index, newest first (their uncompressed size).
    static let cacheBytes = 16 << 20

    private struct Entry {
        var segment: SegmentFile
        var offset: Int
        var size: Int
        /// The uncompressed size of the change set: page images and their numbers.
        var pageBytes: Int
        /// Unix milliseconds.
        var committed: UInt64
        var cached: ChangeSet?
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
        /// The oldest entry whose change set is still in memory.
        var cacheStart = 0
        var cachedBytes = 0
        /// Oldest first; appends go to the last.
        var segments: [Segment] = []
        var diskBytes = 0
        var lastError: String?
        var waiters: [UnsafeContinuation<Void, Never>] = []
        var newest: UInt64 { base + UInt64(entries.count - start) }
    }

    private let state: Mutex<State>
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
        try SegmentFile.makeDirectory(directory)
        state = Mutex(try Self.recover(directory: directory, partition: partition))
        let (newest, fileID) = state.withLock { ($0.newest, $0.fileID) }
        let last = partition.lastLSN.rawValue
        if newest < last {
            // Commits the partition made after the segments' end (a kill between a commit and
            // its append): from the partition's log while it still holds them.
            do {
                for changes in try partition.changes(after: LSN(newest)) { append(changes) }
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

    /// Called by the commit observer, in LSN order, with the writer lock held.
    func append(_ changes: ChangeSet) {
        let committed = UInt64(Date().timeIntervalSince1970 * 1000)
        let record: [UInt8]
        do {
            record = try SegmentFormat.record(changes, committed: committed)
        } catch {
            return reset(fileID: changes.fileID, lastLSN: changes.lsn, error: "\(error)")
        }
        let pageBytes = changes.pages.reduce(20) { $0 + $1.bytes.count + 4 }
        let waiters: [UnsafeContinuation<Void, Never>] = state.withLock { state in
            if changes.fileID != state.fileID || changes.lsn.rawValue != state.newest + 1 {
                // Another file (a restore) or a gap: nothing kept before applies any more.
                restart(&state, fileID: changes.fileID, base: changes.lsn.rawValue - 1)
            }
            do {
                try write(record, lsn: changes.lsn.rawValue, committed: committed, pageBytes: pageBytes, into: &state)
            } catch {
                restart(&state, fileID: changes.fileID, base: changes.lsn.rawValue)
                state.lastError = "\(error)"
                defer { state.waiters = [] }
                return state.waiters
            }
            state.entries[state.entries.count - 1].cached = changes
            state.cachedBytes += pageBytes
            while state.cachedBytes > Self.cacheBytes, state.cacheStart < state.entries.count - 1 {
                state.cachedBytes -= state.entries[state.cacheStart].pageBytes
                state.entries[state.cacheStart].cached = nil
                state.cacheStart += 1
            }
            trim(&state)
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
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

    /// Restarts the log after the partition became another file (compaction, restore).
    func reset(fileID: [UInt8], lastLSN: LSN, error: String? = nil) {
        let waiters = state.withLock { state in
            let waiters = state.waiters
            restart(&state, fileID: fileID, base: lastLSN.rawValue)
            state.lastError = error ?? state.lastError
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Removes every segment and keeps nothing before `base`.
    private func restart(_ state: inout State, fileID: [UInt8], base: UInt64) {
        for segment in state.segments { segment.file.remove() }
        let waiters = state.waiters
        let error = state.lastError
        state = State(fileID: fileID, base: base)
        state.waiters = waiters
        state.lastError = error
    }

    /// Removes the oldest segments while the log is over its size bound or their newest commit
    /// is older than the age bound.
    private func trim(_ state: inout State) {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let maxAge = retention.maxAgeSeconds > UInt64.max / 1000 ? UInt64.max : retention.maxAgeSeconds * 1000
        while let oldest = state.segments.first,
            state.diskBytes > retention.maxBytes || (now > maxAge && oldest.newestCommitted < now - maxAge)
        {
            while state.start < state.entries.count, state.entries[state.start].segment === oldest.file {
                if state.start >= state.cacheStart { state.cachedBytes -= state.entries[state.start].pageBytes }
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
        state.withLock { fileID == $0.fileID && position >= $0.base && position <= $0.newest }
    }

    func read(fileID: [UInt8], after position: UInt64, maxBytes: Int) -> Read {
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
        // Older commits come from the segments, outside the lock (a removed segment stays
        // readable while its file is open).
        do {
            var changes: [ChangeSet] = []
            changes.reserveCapacity(picked.count)
            for (offset, entry) in picked.enumerated() {
                if let cached = entry.cached {
                    changes.append(cached)
                    continue
                }
                let bytes = try entry.segment.read(at: entry.offset, count: entry.size)
                let read = try SegmentFormat.changes(ofRecord: bytes, fileID: fileID)
                guard read.lsn.rawValue == position + UInt64(offset) + 1 else {
                    throw ResidencyError.retainedLog(path: entry.segment.path, operation: "read", errno: 0)
                }
                changes.append(read)
            }
            return .changes(changes)
        } catch {
            state.withLock { $0.lastError = "\(error)" }
            return .notRetained
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
        /// Bytes of the segment files.
        var retainedBytes: Int
        var segments: Int
        var lastError: String?
    }

    var figures: Figures {
        state.withLock {
            Figures(
                fileID: $0.fileID, newest: $0.newest, oldestRetained: $0.base, retainedBytes: $0.diskBytes,
                segments: $0.segments.count, lastError: $0.lastError)
        }
    }

    /// How long ago the first commit after `position` was made, and the page bytes after it.
    func lag(after position: UInt64) -> (milliseconds: Int, bytes: Int) {
        state.withLock { state in
            guard position >= state.base, position < state.newest else { return (0, 0) }
            let index = state.start + Int(position - state.base)
            let now = UInt64(Date().timeIntervalSince1970 * 1000)
            let committed = state.entries[index].committed
            let bytes = state.entries[index...].reduce(0) { $0 + $1.pageBytes }
            return (now > committed ? Int(now - committed) : 0, bytes)
        }
    }
}
