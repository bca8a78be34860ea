/// Reads pages as of a snapshot, writes commits to the log, and copies the log back into the
/// partition file (checkpoints). One pager per open partition.
///
/// Concurrency: any number of readers call `page(_:in:)` while one writer (serialized by the
/// partition's writer lock) calls `commit` and `checkpoint`. Readers never wait for the writer's
/// I/O: the log is appended past the frames readers may look at, and only published (made
/// visible) under `stateLock` afterwards. Checkpoints overwrite a page of the partition file only
/// when every live reader would read that page from the log instead (SQLite's WAL rule), so a
/// reader's view never changes under it.
final class Pager: @unchecked Sendable {
    struct Snapshot {
        var generation: UInt64
        var frameLimit: Int
        var header: PartitionHeader
    }

    private struct CacheKey: Hashable {
        var page: UInt32
        /// 0 for the partition file's copy; otherwise log generation << 32 | (frame + 1).
        var version: UInt64
    }

    let fileSystem: any FileSystem
    let mainFile: any FileHandle
    let wal: WriteAheadLog
    let pageSize: Int
    let cacheCapacity: Int
    let autoCheckpointFrames: Int

    /// Protects `latest`, `readers`, `nextReaderID`, `cache`, and the log's index and counters.
    fileprivate let stateLock = Lock()
    private var latest: Snapshot
    private var readers: [Int: (generation: UInt64, limit: Int)] = [:]
    private var nextReaderID = 0
    private var cache: [CacheKey: Page] = [:]

    init(
        fileSystem: any FileSystem, mainFile: any FileHandle, wal: WriteAheadLog, header: PartitionHeader,
        cacheCapacity: Int, autoCheckpointFrames: Int
    ) {
        self.fileSystem = fileSystem
        self.mainFile = mainFile
        self.wal = wal
        self.pageSize = header.pageSize
        self.cacheCapacity = max(64, cacheCapacity)
        self.autoCheckpointFrames = max(1, autoCheckpointFrames)
        self.latest = Snapshot(generation: wal.generation, frameLimit: wal.frameCount, header: header)
    }

    // MARK: Snapshots

    /// Registers a reader of the newest committed state.
    func beginRead() -> (id: Int, snapshot: Snapshot) {
        stateLock.withLock {
            nextReaderID += 1
            readers[nextReaderID] = (latest.generation, latest.frameLimit)
            return (nextReaderID, latest)
        }
    }

    func endRead(_ id: Int) {
        stateLock.withLock { _ = readers.removeValue(forKey: id) }
    }

    var latestSnapshot: Snapshot { stateLock.withLock { latest } }
    var activeReaders: Int { stateLock.withLock { readers.count } }

    // MARK: Reading

    /// The page as of `snapshot`, checksum-verified and structurally validated.
    func page(_ number: PageNumber, in snapshot: Snapshot) throws -> Page {
        while true {
            if let page = try readOnce(number, in: snapshot) { return page }
        }
    }

    /// One attempt of `page(_:in:)`; nil when the log restarted while a frame was being read, so
    /// the frame may have been overwritten (the retry reads the partition file, which by then
    /// holds everything the log held).
    private func readOnce(_ number: PageNumber, in snapshot: Snapshot) throws -> Page? {
        var frame: Int? = nil
        var key = CacheKey(page: number.rawValue, version: 0)
        stateLock.lock()
        let generation = wal.generation
        if snapshot.generation == generation, let f = wal.latestFrame(of: number, below: snapshot.frameLimit) {
            frame = f
            key.version = generation << 32 | UInt64(f + 1)
        }
        if let hit = cache[key] {
            stateLock.unlock()
            return hit
        }
        stateLock.unlock()

        let page: Page
        let path: String
        if let frame {
            path = wal.file.path
            page = try wal.readFrame(frame)
        } else {
            path = mainFile.path
            guard number.rawValue < snapshot.header.pageCount else {
                throw PartitionDBError.corruptPage(
                    file: path, page: number.rawValue, reason: "page is beyond the page count")
            }
            do {
                page = Page(bytes: try mainFile.read(at: UInt64(number.rawValue) * UInt64(pageSize), count: pageSize))
            } catch PartitionDBError.unexpectedEndOfFile {
                throw PartitionDBError.corruptPage(
                    file: path, page: number.rawValue, reason: "file ends before the page")
            }
        }
        if frame != nil && currentGeneration != generation { return nil }
        try Pager.verify(page, number: number, file: path)
        stateLock.withLock { insertIntoCache(key, page) }
        return page
    }

    /// Checks a page right after it was read: its checksum, then that its structure can be trusted.
    static func verify(_ page: Page, number: PageNumber, file: String) throws {
        guard page.hasValidChecksum(number: number) else {
            throw PartitionDBError.corruptPage(file: file, page: number.rawValue, reason: "checksum mismatch")
        }
        if let problem = structureProblem(page) {
            throw PartitionDBError.corruptPage(file: file, page: number.rawValue, reason: problem)
        }
    }

    static func structureProblem(_ page: Page) -> String? {
        switch PageKind(rawValue: page.kind) {
        case .leaf, .branch: return page.nodeStructureProblem()
        case .overflow: return OverflowLayout.structureProblem(page)
        case .freelistTrunk: return FreelistLayout.structureProblem(page)
        case .header: return nil
        case nil: return "unknown page kind \(page.kind)"
        }
    }

    private func insertIntoCache(_ key: CacheKey, _ page: Page) {
        if cache.count >= cacheCapacity {
            // Drop an eighth of the entries; the dictionary's order is as good as random.
            for _ in 0..<(cacheCapacity / 8) { cache.remove(at: cache.startIndex) }
        }
        cache[key] = page
    }

    // MARK: Committing

    /// Appends a commit to the log and makes it the newest snapshot. `pages` must include page 0.
    func commit(_ pages: [PageNumber: Page], header: PartitionHeader, durability: Durability) throws {
        var sealed: [(PageNumber, Page)] = []
        sealed.reserveCapacity(pages.count)
        for (number, var page) in pages {
            precondition(page.size == pageSize, "dirty page of the wrong size")
            precondition(number.rawValue < header.pageCount, "dirty page beyond the page count")
            page.seal(number: number)
            sealed.append((number, page))
        }
        sealed.sort { $0.0 < $1.0 }
        precondition(sealed.first?.0 == .header, "a commit must write the header page")
        try wal.write(commit: sealed, lsn: header.lastLSN, pageCount: header.pageCount, sync: durability == .durable)
        stateLock.withLock {
            let firstFrame = wal.frameCount
            wal.publish(pages: sealed.map { $0.0 }, lsn: header.lastLSN, synced: durability == .durable)
            for (i, (number, page)) in sealed.enumerated() {
                let key = CacheKey(page: number.rawValue, version: wal.generation << 32 | UInt64(firstFrame + i + 1))
                insertIntoCache(key, page)
            }
            latest = Snapshot(generation: wal.generation, frameLimit: wal.frameCount, header: header)
        }
    }

    var needsCheckpoint: Bool {
        stateLock.withLock { wal.frameCount - wal.backfilled >= autoCheckpointFrames }
    }

    // MARK: Checkpoints

    /// Copies into the partition file every page image that all live readers can do without, then
    /// starts the log over when nothing in it is needed any more. Call with the writer lock held.
    /// Returns whether the log was restarted.
    @discardableResult
    func checkpoint(truncateAbove truncateLimit: UInt64 = 64 << 20) throws -> Bool {
        let (range, frames): (Range<Int>, [(PageNumber, Int)]) = stateLock.withLock {
            var limit = wal.frameCount
            for reader in readers.values {
                limit = min(limit, reader.generation == wal.generation ? reader.limit : 0)
            }
            let range = wal.backfilled..<max(wal.backfilled, limit)
            return (range, wal.newestFrames(in: range))
        }
        if !frames.isEmpty {
            // The partition file must never hold a page whose log frame could still be lost.
            if !wal.isSynced {
                try wal.file.sync()
                stateLock.withLock { wal.isSynced = true }
            }
            for (number, frame) in frames {
                let page = try wal.readFrame(frame)
                try Pager.verify(page, number: number, file: wal.file.path)
                try mainFile.write(page.bytes, at: UInt64(number.rawValue) * UInt64(pageSize))
            }
            try mainFile.sync()
        }
        let restarted: Bool = stateLock.withLock {
            wal.backfilled = range.upperBound
            for (number, _) in frames { cache.removeValue(forKey: CacheKey(page: number.rawValue, version: 0)) }
            guard wal.backfilled == wal.frameCount, wal.frameCount > 0 else { return false }
            let everyReaderIsCurrent = readers.values.allSatisfy {
                $0.generation != wal.generation || $0.limit == wal.frameCount
            }
            guard everyReaderIsCurrent else { return false }
            wal.restart()
            cache = cache.filter { $0.key.version == 0 }
            latest.generation = wal.generation
            latest.frameLimit = 0
            return true
        }
        if restarted, try wal.file.size() > truncateLimit {
            try wal.file.truncate(to: 0)
        }
        return restarted
    }

    /// Checkpoints everything and empties the log; used on close, when no reader is left.
    func checkpointAll() throws {
        try checkpoint(truncateAbove: 0)
        if wal.frameCount == 0, try wal.file.size() > 0 {
            try wal.file.truncate(to: 0)
            try wal.file.sync()
        }
    }
}

extension Pager {
    func stateLockedIsFullyCheckpointed() -> Bool {
        stateLock.withLock { wal.backfilled == wal.frameCount }
    }

    /// The commits still in the log, taken under the state lock.
    var currentGeneration: UInt64 { stateLock.withLock { wal.generation } }

    func stateLockedCommits() -> [(lsn: LSN, endFrame: Int)] {
        stateLock.withLock { wal.commits }
    }

    /// `WriteAheadLog.latestFrame`, taken under the state lock (for `check()`).
    func stateLockedLatestFrame(of page: PageNumber, below limit: Int) -> Int? {
        stateLock.withLock { wal.latestFrame(of: page, below: limit) }
    }
}
