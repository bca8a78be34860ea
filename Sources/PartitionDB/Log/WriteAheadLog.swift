/// The write-ahead log of one partition: a header and a sequence of frames, each a page image.
/// The last frame of a commit carries the commit's page count and LSN; a commit is in the log
/// exactly when all its frames are valid. Layout and recovery: spec/file-format.md#write-ahead-log
///
/// The writer appends with `write(...)` (no lock: one writer at a time, and no reader looks at
/// frames that are not yet published), then publishes the frames with `publish(...)` under the
/// partition's state lock. Readers look frames up with `latestFrame(...)` under the same lock.
final class WriteAheadLog {
    static let headerSize = 64
    static let frameHeaderSize = 32
    static let magic: [UInt8] = Array("PDBWAL\0\u{1}".utf8)
    static let version: UInt32 = 1

    let file: any FileHandle
    let pageSize: Int
    let fileID: [UInt8]
    var frameSize: Int { WriteAheadLog.frameHeaderSize + pageSize }

    /// Random per restart; frames of earlier restarts carry another salt and are ignored.
    private(set) var salt: UInt64
    /// Counts restarts since the partition was opened; part of page-cache keys.
    private(set) var generation: UInt64 = 1
    /// Frames of complete commits since the last restart.
    private(set) var frameCount = 0
    /// Frames below this number have been copied into the partition file.
    var backfilled = 0
    /// Whether every published frame is known to be on disk.
    var isSynced = true
    /// The checksum of the last published frame. Each frame's checksum continues from the one
    /// before it (as in SQLite), so a stale frame left behind by a torn write can never join a
    /// newer sequence of frames, even with the same salt and LSN.
    private(set) var chain: UInt32 = 0
    /// The chain after the frames written by the last `write`, taken over by `publish`.
    private var pendingChain: UInt32 = 0
    /// For each page, its newest frame; `previousFrame[f]` is the frame of the same page before
    /// frame `f` (or -1), so older versions are a short walk back.
    private var newestFrame = PageMap<Int32>()
    private var previousFrame: [Int32] = []
    /// The commits still in the log: LSN and the frame after the commit's last frame.
    private(set) var commits: [(lsn: LSN, endFrame: Int)] = []
    /// Bytes of the log file known to exist (written, zeros included). Small commits write only
    /// inside this size: overwriting blocks that exist costs one data flush, while growing the
    /// file makes every fsync commit the file system's journal too (about twice the time).
    private var allocatedSize: UInt64 = 0
    static let growthStep: UInt64 = 4 << 20

    /// Set by `restart()` and by recovery of an empty log: the next write starts a new log at offset 0.
    private var restartPending = false
    /// Set by `recover()` when it stopped at damage rather than at a torn tail: frames of a later
    /// commit follow the frame where it stopped (see `Recovery.swift`).
    private(set) var damage: LogDamage? = nil
    /// Set by `PartitionFile.open` once it has preserved a copy of the damaged log.
    var recoveryWarning: RecoveryWarning? = nil

    init(file: any FileHandle, pageSize: Int, fileID: [UInt8]) {
        self.file = file
        self.pageSize = pageSize
        self.fileID = fileID
        self.salt = UInt64.random(in: 1...UInt64.max)
    }

    func frameOffset(_ frame: Int) -> UInt64 { UInt64(WriteAheadLog.headerSize + frame * frameSize) }

    // MARK: Recovery

    /// Reads the log from disk and keeps every complete commit up to the first bad frame; sets
    /// `damage` when whole frames of later commits follow that frame.
    func recover() throws {
        let size = try file.size()
        allocatedSize = size
        damage = nil
        newestFrame = PageMap()
        previousFrame = []
        commits = []
        frameCount = 0
        guard size >= UInt64(WriteAheadLog.headerSize) else {
            restartPending = true
            return
        }
        let header = Page(bytes: try file.read(at: 0, count: WriteAheadLog.headerSize))
        let storedChecksum = header.u32(60)
        let computed = header.bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard Array(header.bytes[0..<8]) == WriteAheadLog.magic, storedChecksum == computed else {
            // A torn or foreign header: no frame after it can be trusted, and none was acknowledged
            // without a complete header (the header and the first frames share one fsync).
            restartPending = true
            return
        }
        guard header.u32(8) == WriteAheadLog.version else {
            throw PartitionDBError.badFormat(file: file.path, reason: "log version \(header.u32(8))")
        }
        guard Int(header.u32(12)) == pageSize, header.copyBytes(at: 16, count: 16) == fileID else {
            throw PartitionDBError.badFormat(
                file: file.path, reason: "the log belongs to another partition file; move it away to open without it")
        }
        salt = header.u64(32)

        var pending: [(UInt32, Int32)] = []
        var frame = 0
        var running: UInt32 = 0
        chain = 0
        // Every frame of a commit carries the commit's LSN, and each commit's LSN is larger than
        // the one before it: by one for commits of the partition's own, by a batch's length for
        // a replica's batch applied as one commit (`Partition.apply(batch:)`).
        var commitLSN: LSN? = nil
        var previousCommitLSN: LSN? = nil
        let batch = max(1, (1 << 20) / frameSize)
        scan: while frameOffset(frame) + UInt64(frameSize) <= size {
            let available = Int((size - frameOffset(frame)) / UInt64(frameSize))
            let n = min(batch, available)
            let chunk = try file.read(at: frameOffset(frame), count: n * frameSize)
            for i in 0..<n {
                guard
                    let (parsed, checksum) = WriteAheadLog.parseFrame(
                        chunk, at: i * frameSize, pageSize: pageSize, salt: salt, previous: running)
                else { break scan }
                running = checksum
                if let commitLSN {
                    if parsed.lsn != commitLSN { break scan }
                } else if let previousCommitLSN, parsed.lsn <= previousCommitLSN {
                    break scan
                }
                commitLSN = parsed.lsn
                pending.append((parsed.page.rawValue, Int32(frame)))
                if parsed.isCommit {
                    for (page, f) in pending { addToIndex(page: page, frame: f) }
                    pending.removeAll()
                    commits.append((parsed.lsn, frame + 1))
                    frameCount = frame + 1
                    chain = running
                    previousCommitLSN = parsed.lsn
                    commitLSN = nil
                }
                frame += 1
            }
        }
        backfilled = 0
        isSynced = true
        damage = try findDamage(from: frameCount, lastKept: commits.last?.lsn, size: size)
        // Without a complete commit, start a new log (new salt) rather than append after frames
        // of a commit that never completed.
        if frameCount == 0 { restartPending = true }
    }

    struct FrameHeader {
        var page: PageNumber
        var commitPageCount: UInt32
        var lsn: LSN
        var isCommit: Bool { commitPageCount != 0 }
    }

    /// Parses and verifies the frame at `base` in `bytes`, whose checksum must continue from
    /// `previous`; returns it with its checksum, or nil when it is not the next valid frame.
    static func parseFrame(_ bytes: [UInt8], at base: Int, pageSize: Int, salt: UInt64, previous: UInt32) -> (
        FrameHeader, UInt32
    )? {
        guard base + frameHeaderSize + pageSize <= bytes.count else { return nil }
        return bytes.withUnsafeBytes { raw -> (FrameHeader, UInt32)? in
            let pageNumber = raw.loadUnaligned(fromByteOffset: base, as: UInt32.self).littleEndian
            let commitPageCount = raw.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self).littleEndian
            let lsn = raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self).littleEndian
            let frameSalt = raw.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self).littleEndian
            let stored = raw.loadUnaligned(fromByteOffset: base + 24, as: UInt32.self).littleEndian
            // LSNs stay below 2^63 and page numbers below 2^32 - 1, so neither can overflow later.
            guard frameSalt == salt, lsn > 0, lsn < 1 << 63, pageNumber != UInt32.max else { return nil }
            let pageStart = base + frameHeaderSize
            var crc = CRC32C.update(previous, UnsafeRawBufferPointer(rebasing: raw[base..<(base + 24)]))
            crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: raw[pageStart..<(pageStart + 4)]))
            guard crc == stored else { return nil }
            let pageChecksum = raw.loadUnaligned(fromByteOffset: pageStart, as: UInt32.self).littleEndian
            let body = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[(pageStart + 4)..<(pageStart + pageSize)]))
            guard pageChecksum == body ^ (pageNumber &* 0x9E37_79B1) else { return nil }
            return (FrameHeader(page: PageNumber(pageNumber), commitPageCount: commitPageCount, lsn: LSN(lsn)), crc)
        }
    }

    // MARK: Appending

    /// Writes one commit's pages (already sealed) after the published frames, and syncs when
    /// `sync` is true. Nothing becomes visible to readers until `publish`.
    func write(commit pages: [(PageNumber, Page)], lsn: LSN, pageCount: UInt32, sync: Bool) throws {
        precondition(!pages.isEmpty, "a commit writes at least the header page")
        var offset: UInt64
        // Frames go out by `pwritev` in chunks of up to 512 frames (1,024 parts): each frame's
        // header from `headers`, its image from the page itself, without copying it.
        let chunkFrames = 512
        var headers = [UInt8](repeating: 0, count: min(chunkFrames, pages.count) * WriteAheadLog.frameHeaderSize)
        var parts: [UnsafeRawBufferPointer] = []
        parts.reserveCapacity(2 * min(chunkFrames, pages.count))
        var running = chain
        if restartPending {
            // The new header (new salt) is on disk before any frame of the new log, so a torn
            // write can never leave old frames behind a header that would accept them.
            salt = UInt64.random(in: 1...UInt64.max)
            try file.write(encodeHeader(), at: 0)
            try file.sync()
            allocatedSize = max(allocatedSize, UInt64(WriteAheadLog.headerSize))
            running = 0
        }
        offset = frameOffset(restartPending ? 0 : frameCount)
        let end = offset + UInt64(pages.count * frameSize)
        if end > allocatedSize && end - offset < WriteAheadLog.growthStep {
            try grow(to: end)
        }
        try headers.withUnsafeMutableBytes { headers in
            for (i, (number, page)) in pages.enumerated() {
                let isLast = i == pages.count - 1
                let start = parts.count / 2 * WriteAheadLog.frameHeaderSize
                let header = UnsafeMutableRawBufferPointer(
                    rebasing: headers[start..<start + WriteAheadLog.frameHeaderSize])
                running = encodeFrameHeader(
                    into: header, number: number, page: page, lsn: lsn, commitPageCount: isLast ? pageCount : 0,
                    previous: running)
                parts.append(UnsafeRawBufferPointer(header))
                // `pages` keeps each image alive until the write.
                parts.append(page.withUnsafeBytes { $0 })
                if parts.count == 2 * chunkFrames || isLast {
                    try file.write(gathering: parts, at: offset)
                    offset += UInt64(parts.count / 2 * frameSize)
                    parts.removeAll(keepingCapacity: true)
                }
            }
        }
        if sync { try file.sync() }
        allocatedSize = max(allocatedSize, end)
        pendingChain = running
    }

    /// Extends the file with zeros, a step beyond `end`, and makes the new size durable. Zeros are
    /// never a valid frame, so recovery stops at them.
    private func grow(to end: UInt64) throws {
        let target = (end / WriteAheadLog.growthStep + 1) * WriteAheadLog.growthStep
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var position = allocatedSize
        while position < target {
            let count = Int(min(UInt64(zeros.count), target - position))
            try zeros.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<count]), at: position) }
            position += UInt64(count)
        }
        try file.sync()
        allocatedSize = target
    }

    /// Shortens the log file to `length` bytes (after a restart, when it has grown large). The
    /// bytes kept are old frames, invalid under the next header's new salt, and stay allocated,
    /// so the small commits that follow overwrite blocks instead of growing the file again.
    func truncate(keeping length: UInt64 = 0) throws {
        try file.truncate(to: length)
        allocatedSize = min(allocatedSize, length)
    }

    func encodeHeader() -> [UInt8] {
        var header = Page(size: WriteAheadLog.headerSize)
        header.setBytes(at: 0, WriteAheadLog.magic)
        header.setU32(8, WriteAheadLog.version)
        header.setU32(12, UInt32(pageSize))
        header.setBytes(at: 16, fileID)
        header.setU64(32, salt)
        header.setU64(40, generation)
        let crc = header.bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        header.setU32(60, crc)
        return header.bytes
    }

    /// Writes one frame's header into `raw` (32 bytes) and returns its checksum, which the next
    /// frame continues from.
    private func encodeFrameHeader(
        into raw: UnsafeMutableRawBufferPointer, number: PageNumber, page: Page, lsn: LSN, commitPageCount: UInt32,
        previous: UInt32
    ) -> UInt32 {
        precondition(page.size == pageSize, "frame page size mismatch")
        precondition(raw.count == WriteAheadLog.frameHeaderSize, "frame header size mismatch")
        raw.storeBytes(of: number.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: commitPageCount.littleEndian, toByteOffset: 4, as: UInt32.self)
        raw.storeBytes(of: lsn.rawValue.littleEndian, toByteOffset: 8, as: UInt64.self)
        raw.storeBytes(of: salt.littleEndian, toByteOffset: 16, as: UInt64.self)
        var crc = CRC32C.update(previous, UnsafeRawBufferPointer(rebasing: raw[0..<24]))
        crc = page.withUnsafeBytes { CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: $0[0..<4])) }
        raw.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self)
        raw.storeBytes(of: UInt32(0), toByteOffset: 28, as: UInt32.self)
        return crc
    }

    /// Makes the frames written by the last `write` visible. Call under the state lock.
    func publish(pages: [PageNumber], lsn: LSN, synced: Bool) {
        restartPending = false
        chain = pendingChain
        for (i, number) in pages.enumerated() {
            addToIndex(page: number.rawValue, frame: Int32(frameCount + i))
        }
        frameCount += pages.count
        commits.append((lsn, frameCount))
        // A sync covers every frame written before it.
        isSynced = synced
    }

    // MARK: Lookup

    private func addToIndex(page: UInt32, frame: Int32) {
        assert(Int(frame) == previousFrame.count, "frames enter the index in order")
        previousFrame.append(newestFrame[page] ?? -1)
        newestFrame[page] = frame
    }

    /// The newest frame of `page` below `limit`. Call under the state lock.
    func latestFrame(of page: PageNumber, below limit: Int) -> Int? {
        guard limit > 0, var frame = newestFrame[page.rawValue] else { return nil }
        while Int(frame) >= limit {
            frame = previousFrame[Int(frame)]
            if frame < 0 { return nil }
        }
        return Int(frame)
    }

    /// Every page with a frame in this generation of the log.
    var indexedPages: [UInt32] { newestFrame.allKeys }

    /// The pages with frames in `range`, each with its newest frame in the range.
    func newestFrames(in range: Range<Int>) -> [(PageNumber, Int)] {
        var result: [(PageNumber, Int)] = []
        for page in newestFrame.allKeys {
            if let f = latestFrame(of: PageNumber(page), below: range.upperBound), f >= range.lowerBound {
                result.append((PageNumber(page), f))
            }
        }
        return result.sorted { $0.0 < $1.0 }
    }

    func readFrame(_ frame: Int) throws -> Page {
        Page(bytes: try file.read(at: frameOffset(frame) + UInt64(WriteAheadLog.frameHeaderSize), count: pageSize))
    }

    func readFrameHeader(_ frame: Int) throws -> FrameHeader {
        let bytes = try file.read(at: frameOffset(frame), count: WriteAheadLog.frameHeaderSize)
        let page = Page(bytes: bytes)
        return FrameHeader(page: PageNumber(page.u32(0)), commitPageCount: page.u32(4), lsn: LSN(page.u64(8)))
    }

    /// Forgets every frame (all are in the partition file) and starts the log over at offset 0 with
    /// the next write. Call under the state lock, only when no reader needs a frame.
    func restart() {
        precondition(backfilled == frameCount, "restarting a log whose frames are not all in the partition file")
        restartPending = true
        chain = 0
        newestFrame = PageMap()
        previousFrame = []
        commits = []
        frameCount = 0
        backfilled = 0
        generation += 1
    }

    var isRestartPending: Bool { restartPending }
}
