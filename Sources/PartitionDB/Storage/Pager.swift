import CPartitionSupport
import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads pages as of a snapshot, writes commits to the log, and copies the log back into the
/// partition file (checkpoints). One pager per open partition.
///
/// Concurrency: any number of readers call `page(_:in:)` while one writer (serialized by the
/// partition's writer lock) calls `commit` and `checkpoint`. Readers never wait for the writer's
/// I/O: the log is appended past the frames readers may look at, and only published (made
/// visible) under `stateLock` afterwards. Checkpoints overwrite a page of the partition file only
/// when every live reader would read that page from the log instead (SQLite's WAL rule), so a
/// reader's view never changes under it.
///
/// Pages of the partition file are read through a read-only shared mapping when the file system
/// offers one: no copy, no system call and no lock. Pages with a frame in the log are taken from
/// `FrameImages`, the commits' own page images kept in memory, also without a lock: a bit per
/// page says whether the page has a frame in the current generation, an atomic entry per page
/// names its newest frame, and only a reader whose snapshot ends before that frame needs the
/// locked index lookup. `verified` bits say which mapped pages have passed their checksum since
/// they were last written, so each is checked once when first read from disk, like a page
/// entering a cache.
final class Pager: @unchecked Sendable {
    struct Snapshot {
        var generation: UInt64
        var frameLimit: Int
        var header: PartitionHeader
        /// The generation's frame images; holding them keeps their memory alive.
        var frames: FrameImages
    }

    /// Pages read from disk, kept so the next read needs no I/O: log frames by frame number
    /// (of the current log generation), and partition-file pages by page number (used only
    /// when the file is not mapped). Frames are immutable, so their entries never go stale.
    private struct Cache {
        var frames = TwoGenerationCache()
        var mainPages = TwoGenerationCache()
    }

    /// An approximate LRU in O(1): entries go into `young`; when it is full it becomes `old`
    /// and the previous old generation is dropped; a hit in `old` moves back to `young`.
    struct TwoGenerationCache {
        private var young = PageMap<Page>()
        private var old = PageMap<Page>()
        var capacity: Int

        init(capacity: Int = 1024) { self.capacity = capacity }

        mutating func get(_ key: UInt32) -> Page? {
            if let page = young[key] { return page }
            guard let page = old[key] else { return nil }
            insert(page, key)
            return page
        }

        mutating func insert(_ page: Page, _ key: UInt32) {
            if young.count >= capacity / 2 {
                old = young
                young = PageMap(capacity: capacity / 2)
            }
            young[key] = page
        }

        mutating func remove(_ key: UInt32) {
            young[key] = nil
            old[key] = nil
        }
    }

    let fileSystem: any FileSystem
    let mainFile: any FileHandle
    let wal: WriteAheadLog
    let pageSize: Int
    let cacheCapacity: Int
    let autoCheckpointFrames: Int
    /// `Options.directWritePages`.
    let directWritePages: Int?
    /// A durable commit that changes at least this many existing pages moves its changed nodes
    /// to new pages (`WriteContext.relocateChangedNodes`), so that it is a direct commit: as many
    /// as one checkpoint's worth of log frames, and never fewer than `directWritePages`. nil when
    /// direct commits are off.
    var relocationThreshold: Int? {
        directWritePages.map { relocationPages ?? max($0, autoCheckpointFrames) }
    }
    /// `Options.relocationPages`.
    let relocationPages: Int?
    /// The pages that direct commits of the current log generation wrote straight into the
    /// partition file, as runs of page numbers, oldest commit first: `changes(after:)` reads them
    /// back from there, where each stays until a checkpoint copies a later frame of it over it.
    /// Written by the writer under `stateLock`; emptied when the log restarts.
    private(set) var directCommits: [(lsn: LSN, runs: [Range<UInt32>])] = []

    /// Protects `latest`, `readers`, `isClosed`, `nextReaderID`, `cache`, and the log's index and
    /// counters.
    fileprivate let stateLock = Lock()
    private var latest: Snapshot
    private var readers: [Int: (generation: UInt64, limit: Int)] = [:]
    /// Set by `closeIfIdle()`; no reader may begin afterwards.
    private var isClosed = false
    private var nextReaderID = 0
    private var cache: Cache

    /// The partition file mapped read-only, `mappingLength` bytes; nil when the file system
    /// cannot map (then pages are read with `read` and cached).
    /// Set to nil by `releaseFiles()`, when no reader is left and none can come.
    private var mapping: UnsafeRawPointer?
    private let mappingLength: Int
    /// Pages with numbers below this lie inside the mapping.
    private let mappedPages: Int
    /// Pages with numbers below this have entries in `newestFrames`, `inLog` and `verified`.
    private let flaggedPages: Int
    /// One entry per page: 0 when the current log generation holds no frame of the page, else
    /// the generation's low 32 bits above the newest frame's number plus one. Set under
    /// `stateLock` before the frame is published; cleared when the log restarts.
    private let newestFrames: UnsafeMutablePointer<UInt64>
    /// One bit per page: set when `newestFrames` holds an entry, so that the reads of a page
    /// without one (most, in a large partition) touch a small bitmap and not the entries.
    private let inLog: UnsafeMutablePointer<UInt64>
    /// The current generation's frame images, and how many frames a generation keeps.
    private var frameImages: FrameImages
    private let keptFrames: Int
    /// One bit per page: set when the mapped page passed `verify` since it was last written.
    private let verified: UnsafeMutablePointer<UInt64>
    /// The log generation, readable without the lock; and the number of whole pages the
    /// partition file holds (the mapping must not be touched beyond them).
    private let atomics: UnsafeMutablePointer<UInt64>

    init(
        fileSystem: any FileSystem, mainFile: any FileHandle, wal: WriteAheadLog, header: PartitionHeader,
        cacheCapacity: Int, autoCheckpointFrames: Int, directWritePages: Int? = nil, relocationPages: Int? = nil,
        mapFile: Bool = true
    ) {
        self.directWritePages = directWritePages.map { max(1, $0) }
        self.relocationPages = relocationPages.map { max(1, $0) }
        self.fileSystem = fileSystem
        self.mainFile = mainFile
        self.wal = wal
        self.pageSize = header.pageSize
        self.cacheCapacity = max(64, cacheCapacity)
        self.cache = Cache(
            frames: TwoGenerationCache(capacity: max(64, cacheCapacity)),
            mainPages: TwoGenerationCache(capacity: max(64, cacheCapacity)))
        self.autoCheckpointFrames = max(1, autoCheckpointFrames)
        // A generation keeps the images of up to 16 checkpoints' worth of frames (64 MiB with
        // the defaults); the log holds more only while readers hold checkpoints back.
        self.keptFrames = max(4096, 16 * self.autoCheckpointFrames)
        self.frameImages = FrameImages(generation: wal.generation, capacity: keptFrames)
        self.latest = Snapshot(
            generation: wal.generation, frameLimit: wal.frameCount, header: header, frames: frameImages)
        // The largest reservation the address space allows (valgrind and `ulimit -v` refuse
        // 64 GiB); pages beyond it are read with `read`.
        var mapping: UnsafeRawPointer? = nil
        var mappingLength = 0
        for length in [64 << 30, 4 << 30, 1 << 30] where mapFile && mapping == nil {
            mapping = mainFile.mapReadOnly(length: length)
            mappingLength = mapping == nil ? 0 : length
        }
        self.mapping = mapping
        self.mappingLength = mappingLength
        self.mappedPages = mappingLength / header.pageSize
        self.flaggedPages = (64 << 30) / header.pageSize
        self.newestFrames = Pager.zeroedTable(words: flaggedPages)
        self.inLog = Pager.zeroedTable(words: flaggedPages / 64 + 1)
        self.verified = Pager.zeroedTable(words: flaggedPages / 64 + 1)
        self.atomics = .allocate(capacity: 2)
        atomics.initialize(repeating: 0, count: 2)
        pdb_u64_store(atomics, wal.generation)
        let fileSize = (try? mainFile.size()) ?? 0
        pdb_u64_store(atomics + 1, fileSize / UInt64(header.pageSize))
        for page in wal.indexedPages where Int(page) < flaggedPages {
            if let frame = wal.latestFrame(of: PageNumber(page), below: wal.frameCount) {
                pdb_u64_store(newestFrames + Int(page), frameEntry(frame, generation: wal.generation))
                pdb_bit_set(inLog, UInt64(page))
            }
        }
    }

    private func frameEntry(_ frame: Int, generation: UInt64) -> UInt64 {
        (generation & 0xFFFF_FFFF) << 32 | UInt64(frame + 1)
    }

    deinit {
        if let mapping { mainFile.unmap(mapping, length: mappingLength) }
        Pager.freeTable(newestFrames, words: flaggedPages)
        Pager.freeTable(inLog, words: flaggedPages / 64 + 1)
        Pager.freeTable(verified, words: flaggedPages / 64 + 1)
        atomics.deallocate()
    }

    /// A zeroed table of `words` 64-bit words from an anonymous mapping: the kernel hands out
    /// zeroed pages on first touch, so entries of pages the partition does not have cost nothing
    /// (as with calloc), and memory checkers do not prepare the whole range (AddressSanitizer's
    /// calloc of the 128 MiB frame table cost every open milliseconds).
    private static func zeroedTable(words: Int) -> UnsafeMutablePointer<UInt64> {
        let bytes = max(1, words) * 8
        let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        // Like the calloc it replaces, running out of address space here is fatal.
        guard let base, base != MAP_FAILED else { fatalError("no address space for a \(bytes)-byte page table") }
        return base.bindMemory(to: UInt64.self, capacity: max(1, words))
    }

    private static func freeTable(_ table: UnsafeMutablePointer<UInt64>, words: Int) {
        munmap(table, max(1, words) * 8)
    }

    private var atomicGeneration: UInt64 { pdb_u64_load(atomics) }
    private var mappedPageCount: UInt64 { pdb_u64_load(atomics + 1) }

    // MARK: Snapshots

    /// Registers a reader of the newest committed state. `Partition.beginRead()` calls it where
    /// `close()` cannot run meanwhile, so it never meets a closed pager.
    func beginRead() -> (id: Int, snapshot: Snapshot) {
        stateLock.withLock {
            precondition(!isClosed, "beginRead() on a closed pager (use Partition.beginRead())")
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

    /// Marks the pager closed if no reader is registered, in one step under the state lock. Returns the readers in the
    /// way (0: closed; then only the writer may use the files, until `releaseFiles()`).
    func closeIfIdle() -> Int {
        stateLock.withLock {
            let active = readers.count
            if active == 0 { isClosed = true }
            return active
        }
    }

    /// Unmaps the partition file and closes both files; after `closeIfIdle()` returned 0.
    func releaseFiles() {
        stateLock.withLock {
            precondition(isClosed && readers.isEmpty, "releasing the files of a pager in use")
            if let mapping { mainFile.unmap(mapping, length: mappingLength) }
            mapping = nil
        }
        wal.file.close()
        mainFile.close()
    }

    // MARK: Reading

    /// The page as of `snapshot`, checksum-verified and structurally validated.
    func page(_ number: PageNumber, in snapshot: Snapshot) throws -> Page {
        let n = Int(number.rawValue)
        guard n < flaggedPages else { return try readLocked(number, in: snapshot) }
        if snapshot.frameLimit > 0 && pdb_bit_test(inLog, UInt64(n)) != 0 && snapshot.generation == atomicGeneration {
            let entry = pdb_u64_load(newestFrames + n)
            if entry != 0 && entry >> 32 == snapshot.generation & 0xFFFF_FFFF {
                // The newest frame is the snapshot's when the snapshot reaches it; else an older
                // frame (or none) is, which takes the index.
                let frame = Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1
                if frame < snapshot.frameLimit, let page = snapshot.frames.page(frame, size: pageSize) {
                    return page
                }
                return try readLocked(number, in: snapshot)
            }
            // No frame of this generation, or the log restarted since the check: either way the
            // partition file holds the snapshot's version, and no checkpoint will overwrite it
            // while the snapshot's reader is registered.
        }
        if let mapping, n < mappedPages, number.rawValue < snapshot.header.pageCount, UInt64(n) < mappedPageCount {
            // No frame of this page is visible to the snapshot (a reader of an older log
            // generation sees the partition file, which held its whole state at the restart).
            let page = Page(mapped: mapping + n * pageSize, size: pageSize)
            if pdb_bit_test(verified, UInt64(n)) == 0 {
                try Pager.verify(page, number: number, file: mainFile.path)
                pdb_bit_set(verified, UInt64(n))
            }
            return page
        }
        return try readLocked(number, in: snapshot)
    }

    private func readLocked(_ number: PageNumber, in snapshot: Snapshot) throws -> Page {
        while true {
            if let page = try readOnce(number, in: snapshot) { return page }
        }
    }

    /// One attempt of `page(_:in:)`; nil when the log restarted while a frame was being read, so
    /// the frame may have been overwritten (the retry reads the partition file, which by then
    /// holds everything the log held).
    private func readOnce(_ number: PageNumber, in snapshot: Snapshot) throws -> Page? {
        var frame: Int? = nil
        stateLock.lock()
        let generation = wal.generation
        if snapshot.generation == generation, let f = wal.latestFrame(of: number, below: snapshot.frameLimit) {
            frame = f
            if let page = snapshot.frames.page(f, size: pageSize) {
                stateLock.unlock()
                return page
            }
        }
        if let hit = frame.map({ cache.frames.get(UInt32($0)) }) ?? cache.mainPages.get(number.rawValue) {
            stateLock.unlock()
            return hit
        }
        stateLock.unlock()

        let page: Page
        let path: String
        if let frame {
            path = wal.file.path
            do {
                page = try wal.readFrame(frame)
            } catch {
                // A restart since the lookup may have truncated the log: read again.
                if currentGeneration != generation { return nil }
                throw error
            }
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
        stateLock.withLock {
            if let frame {
                // A restart since the lookup makes frame numbers mean other frames: skip caching.
                if wal.generation == generation {
                    cache.frames.insert(page, UInt32(frame))
                }
            } else if Int(number.rawValue) >= mappedPages {
                cache.mainPages.insert(page, number.rawValue)
            }
        }
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

    // MARK: Committing

    /// Appends a commit to the log and makes it the newest snapshot. `pages` must include page 0.
    /// With `capturingImages`, returns a copy of every page the commit wrote, sealed, in page
    /// order, the direct ones included (for `Partition.setCommitObserver`); else nothing.
    /// With `deferringSync`, a durable commit that writes only to the log is appended without a
    /// sync and `awaitsSync` is true: the caller syncs it (`syncLog`, shared by a group of
    /// commits) before it reports the commit durable.
    @discardableResult
    func commit(
        _ pages: consuming [(PageNumber, Page)], header: PartitionHeader, durability: Durability,
        capturingImages: Bool = false, deferringSync: Bool = false
    ) throws -> (images: [ChangeSet.PageImage], awaitsSync: Bool) {
        // Sealed in place: the caller hands the pages over, so each is uniquely referenced and
        // sealing does not copy it. Each page is sealed right before it is written, while the
        // write can still find its bytes in the CPU's caches.
        var sealed = pages
        for i in sealed.indices {
            precondition(sealed[i].1.size == pageSize, "dirty page of the wrong size")
            precondition(sealed[i].0.rawValue < header.pageCount, "dirty page beyond the page count")
        }
        sealed.sort { $0.0 < $1.0 }
        precondition(sealed.first?.0 == .header, "a commit must write the header page")
        // Pages beyond the committed end are read by no snapshot and referenced by no durable
        // state until this commit is, so they may go straight into the partition file, if they
        // are on disk before the commit's frames are (only a durable commit orders the two).
        let committedEnd = latestSnapshot.header.pageCount
        let firstNew = sealed.firstIndex { $0.0.rawValue >= committedEnd } ?? sealed.count
        let isDirect =
            durability == .durable && directWritePages.map { sealed.count - firstNew >= $0 } ?? false
        var directRuns: [Range<UInt32>] = []
        var direct: PagesToRelease? = nil
        if isDirect {
            try writeToPartitionFile(&sealed, firstNew..<sealed.count, sealing: true)
            stateLock.withLock {
                for i in firstNew..<sealed.count { cache.mainPages.remove(sealed[i].0.rawValue) }
            }
            directRuns = Pager.runs(of: sealed[firstNew...].lazy.map { $0.0.rawValue })
            // The kernel holds their bytes now: the pages' memory is freed on another thread
            // while the sync waits for the disk (tens of thousands of `free`s, a tenth of a
            // second of a bulk load's commit). An observer's copy of them is made there too,
            // each page freed as soon as it is copied, so the copy costs the commit little time
            // and memory holds each page once.
            let written = PagesToRelease()
            direct = written
            written.pages.reserveCapacity(sealed.count - firstNew)
            while sealed.count > firstNew { written.pages.append(sealed.removeLast()) }
            Pager.releaseQueue.async {
                if capturingImages {
                    written.images.reserveCapacity(written.pages.count)
                    while let (number, page) = written.pages.popLast() {
                        written.images.append(.init(number: number.rawValue, bytes: page.bytes))
                    }
                }
                written.pages = []
            }
            try syncPartitionFile()
        }
        for i in sealed.indices { sealed[i].1.seal(number: sealed[i].0) }
        let awaitsSync = durability == .durable && deferringSync && !isDirect
        let syncs = durability == .durable && !awaitsSync
        try wal.write(commit: sealed, lsn: header.lastLSN, pageCount: header.pageCount, sync: syncs)
        stateLock.withLock {
            if isDirect { directCommits.append((header.lastLSN, directRuns)) }
            let firstFrame = wal.frameCount
            for (i, (number, page)) in sealed.enumerated() {
                let frame = firstFrame + i
                frameImages.append(page, frame: frame)
                if frame >= frameImages.capacity { cache.frames.insert(page, UInt32(frame)) }
                if Int(number.rawValue) < flaggedPages {
                    pdb_u64_store(newestFrames + Int(number.rawValue), frameEntry(frame, generation: wal.generation))
                    pdb_bit_set(inLog, UInt64(number.rawValue))
                }
            }
            wal.publish(pages: sealed.map { $0.0 }, lsn: header.lastLSN, synced: syncs)
            latest = Snapshot(
                generation: wal.generation, frameLimit: wal.frameCount, header: header, frames: frameImages)
        }
        guard capturingImages else { return ([], awaitsSync) }
        var images = sealed.map { ChangeSet.PageImage(number: $0.0.rawValue, bytes: $0.1.bytes) }
        if let direct {
            // The copy is done when the queue (serial) has run it; the logged pages are all below
            // the direct ones, so appending keeps page order.
            Pager.releaseQueue.sync {}
            assert(direct.images.count == directRuns.reduce(0) { $0 + $1.count }, "a direct page was not copied")
            images += direct.images
        }
        return (images, awaitsSync)
    }

    /// Consecutive numbers in `numbers` (ascending) joined into runs.
    private static func runs(of numbers: some Sequence<UInt32>) -> [Range<UInt32>] {
        var runs: [Range<UInt32>] = []
        for number in numbers {
            if let last = runs.last, last.upperBound == number {
                runs[runs.count - 1] = last.lowerBound..<number + 1
            } else {
                runs.append(number..<number + 1)
            }
        }
        return runs
    }

    /// Whether the log holds `frames` (default `autoCheckpointFrames`) not yet checkpointed.
    func needsCheckpoint(after frames: Int? = nil) -> Bool {
        stateLock.withLock { wal.frameCount - wal.backfilled >= (frames ?? autoCheckpointFrames) }
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
            // A megabyte of pages at a time: a large log read back from disk (after recovery) is
            // never all in memory at once.
            let batch = max(1, (1 << 20) / pageSize)
            for start in stride(from: 0, to: frames.count, by: batch) {
                var pages = try frames[start..<min(start + batch, frames.count)].map { number, frame in
                    // A cached frame was verified when it was read, or sealed by this process.
                    let cached = stateLock.withLock {
                        frameImages.ownedPage(frame) ?? cache.frames.get(UInt32(frame))
                    }
                    if let cached { return (number, cached) }
                    let page = try wal.readFrame(frame)
                    try Pager.verify(page, number: number, file: wal.file.path)
                    return (number, page)
                }
                try writeToPartitionFile(&pages, pages.indices, sealing: false)
            }
            try syncPartitionFile()
        }
        let restarted: Bool = stateLock.withLock {
            wal.backfilled = range.upperBound
            for (number, _) in frames { cache.mainPages.remove(number.rawValue) }
            guard wal.backfilled == wal.frameCount, wal.frameCount > 0 else { return false }
            let everyReaderIsCurrent = readers.values.allSatisfy {
                $0.generation != wal.generation || $0.limit == wal.frameCount
            }
            guard everyReaderIsCurrent else { return false }
            for page in wal.indexedPages where Int(page) < flaggedPages {
                pdb_bit_clear(inLog, UInt64(page))
                pdb_u64_store(newestFrames + Int(page), 0)
            }
            wal.restart()
            directCommits = []
            pdb_u64_store(atomics, wal.generation)
            cache.frames = TwoGenerationCache(capacity: cache.frames.capacity)
            frameImages = FrameImages(generation: wal.generation, capacity: keptFrames)
            latest.generation = wal.generation
            latest.frameLimit = 0
            latest.frames = frameImages
            return true
        }
        if restarted, try wal.file.size() > truncateLimit {
            try wal.truncate(keeping: min(truncateLimit, WriteAheadLog.growthStep))
        }
        return restarted
    }

    /// Writes `pages[range]`, sorted by number, to their places in the partition file (without
    /// syncing), sealing each first if `sealing`. Pages with consecutive numbers go out in one
    /// write of up to 1 MiB: a bulk load's new pages are one run, not a system call each. Clears
    /// their `verified` bits.
    private func writeToPartitionFile(_ pages: inout [(PageNumber, Page)], _ range: Range<Int>, sealing: Bool) throws {
        let runLimit = max(1, (1 << 20) / pageSize)
        // The pages' own bytes, gathered by `pwritev`: `pages` keeps them alive meanwhile.
        var run: [UnsafeRawBufferPointer] = []
        run.reserveCapacity(min(runLimit, range.count))
        var runStart: UInt32 = 0
        // Every `writebackStep` bytes, the disk starts on what was written since the last time,
        // so that it writes while the rest is still being copied and the `sync` that follows
        // waits for less (the pages go out in page order: `unstarted` is one file range).
        let writebackStep = UInt64(8 << 20)
        var unstarted: (from: UInt64, to: UInt64, bytes: UInt64)? = nil
        func flush() throws {
            guard !run.isEmpty else { return }
            let offset = UInt64(runStart) * UInt64(pageSize)
            let length = UInt64(run.count * pageSize)
            try mainFile.write(gathering: run, at: offset)
            run.removeAll(keepingCapacity: true)
            var pending = unstarted ?? (offset, offset, 0)
            pending.to = offset + length
            pending.bytes += length
            unstarted = pending
            if pending.bytes >= writebackStep {
                mainFile.startWriteback(at: pending.from, length: pending.to - pending.from)
                unstarted = nil
            }
        }
        for i in range {
            let number = pages[i].0
            let follows = !run.isEmpty && UInt64(runStart) + UInt64(run.count) == UInt64(number.rawValue)
            if !follows || run.count == runLimit {
                try flush()
                runStart = number.rawValue
            }
            if sealing { pages[i].1.seal(number: number) }
            run.append(pages[i].1.withUnsafeBytes { $0 })
            if Int(number.rawValue) < flaggedPages { pdb_bit_clear(verified, UInt64(number.rawValue)) }
        }
        try flush()
    }

    /// Makes the partition-file writes durable, then lets readers map the pages they added.
    /// Syncs the log for commits appended with `deferringSync` and returns the newest LSN whose
    /// frames were written before the sync began: it is durable when this returns. Runs while
    /// the next commits are appended; a checkpoint meanwhile syncs the log itself before it
    /// copies any frame (`checkpoint`), so `isSynced` is left to the commits and checkpoints.
    func syncLog() throws -> LSN {
        let written = latestSnapshot.header.lastLSN
        try wal.file.sync()
        return written
    }

    private func syncPartitionFile() throws {
        try mainFile.sync()
        pdb_u64_store(atomics + 1, try mainFile.size() / UInt64(pageSize))
    }

    /// Checkpoints everything and empties the log; used on close, when no reader is left.
    func checkpointAll() throws {
        try checkpoint(truncateAbove: 0)
        if wal.frameCount == 0, try wal.file.size() > 0 {
            try wal.truncate()
            try wal.file.sync()
        }
    }
}

/// Pages handed to `Pager.releaseQueue` to be freed there; nothing else refers to them. Their
/// copies for an observer, made there too, are read after the queue has run (`sync`).
private final class PagesToRelease: @unchecked Sendable {
    var pages: [(PageNumber, Page)] = []
    var images: [ChangeSet.PageImage] = []
}

extension Pager {
    /// Frees the pages of direct commits off the committing thread.
    fileprivate static let releaseQueue = DispatchQueue(label: "PartitionDB.page-release", qos: .utility)

    func stateLockedIsFullyCheckpointed() -> Bool {
        stateLock.withLock { wal.backfilled == wal.frameCount }
    }

    /// The commits still in the log, taken under the state lock.
    var currentGeneration: UInt64 { atomicGeneration }

    func stateLockedCommits() -> [(lsn: LSN, endFrame: Int)] {
        stateLock.withLock { wal.commits }
    }

    /// `directCommits`, taken under the state lock.
    func stateLockedDirectCommits() -> [(lsn: LSN, runs: [Range<UInt32>])] {
        stateLock.withLock { directCommits }
    }

    /// Whether a checkpoint of this log generation has copied a frame of a page in `runs` into
    /// the partition file, so the file no longer holds what a direct commit wrote there before.
    func stateLockedIsAnyBackfilled(_ runs: [Range<UInt32>]) -> Bool {
        stateLock.withLock {
            runs.contains { run in run.contains { wal.latestFrame(of: PageNumber($0), below: wal.backfilled) != nil } }
        }
    }

    /// `WriteAheadLog.latestFrame`, taken under the state lock (for `check()`).
    func stateLockedLatestFrame(of page: PageNumber, below limit: Int) -> Int? {
        stateLock.withLock { wal.latestFrame(of: page, below: limit) }
    }
}
