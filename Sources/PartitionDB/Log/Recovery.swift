/// Telling damage in the log from a torn tail, and keeping the evidence.
/// Rules and reasoning: spec/file-format.md#damage-in-the-log
///
/// Recovery keeps the longest run of whole, consecutive commits and stops at the first frame that
/// is not the next valid one. Where it stops after a crash, the frames that follow belong to the
/// one commit that was being written (its `write` never returned): a torn tail, dropped by design.
/// Where it stops because a frame of an acknowledged commit is damaged, the frames that follow
/// include frames of later commits, and dropping them silently would lose durable data. The two
/// are told apart by what comes after the stop: a frame that carries this log's salt and is whole
/// on its own (its page checksum does not depend on the chain) and belongs to a commit later than
/// the first dropped one proves that the first dropped commit had been written completely before
/// it, since a commit's frames are only written after the previous commit's `write` returned.
///
/// A log of page images is a copy of the partition's recent history: once recovery's checkpoint
/// copies the kept prefix and the next commit overwrites the log, the dropped commits are gone.
/// So before anything writes, `PartitionFile.open` copies the log to `NAME.pdb-log.damaged-LSN`,
/// and `check()` reports that file as a problem until an operator removes it.
struct LogDamage: Equatable {
    /// The LSN of the first commit recovery did not keep.
    var firstDroppedLSN: LSN
    /// The newest LSN among the whole frames of this log after the stop.
    var lastSeenLSN: LSN
    /// The frame where recovery stopped (the first frame not kept).
    var stopFrame: Int
    /// Frames from `stopFrame` to the last whole frame of this log, both included.
    var droppedFrames: Int
    /// How many of them are whole on their own (salt, LSN, page number and page checksum).
    var intactFrames: Int

    /// Commits from the first dropped one to the newest seen, the last of which may be a torn
    /// write that was never acknowledged.
    var droppedCommits: Int { Int(lastSeenLSN.rawValue - firstDroppedLSN.rawValue) + 1 }
}

/// What opening a partition found and kept aside: damage that made recovery drop commits.
/// Reported by `Partition.recoveryWarnings` to the process that opened it, and by
/// `Partition.check()` to any process, as long as the preserved file exists.
public struct RecoveryWarning: Sendable, Equatable, CustomStringConvertible {
    /// The copy of the log as it was found, next to the partition file.
    public var preservedLog: String
    /// The first commit that recovery could not keep; the partition holds the commits before it.
    public var firstDroppedLSN: LSN
    /// Commits from `firstDroppedLSN` to the newest one found in the log after the damage.
    public var droppedCommits: Int
    /// Frames of the log from the damaged one to the last one of this log.
    public var droppedFrames: Int

    public var description: String {
        let last = firstDroppedLSN.rawValue + UInt64(max(droppedCommits, 1)) - 1
        return
            "recovery dropped \(droppedCommits) commits (LSN \(firstDroppedLSN) to \(last), \(droppedFrames) log "
            + "frames) because a frame of the log was damaged; the partition holds the commits before LSN "
            + "\(firstDroppedLSN), and \(preservedLog) \(evidence). Restore the partition "
            + "from a backup that holds those commits, then remove the file (or remove it once the loss is accepted)"
    }

    /// A read-only open copies nothing: the log itself is then the evidence, left as found.
    private var evidence: String {
        preservedLog.hasSuffix("-log")
            ? "is the log as it was found (a read-only open copied nothing; the next read-write open keeps a copy)"
            : "is a copy of the log as it was found"
    }

    init(preservedLog: String, damage: LogDamage) {
        self.preservedLog = preservedLog
        self.firstDroppedLSN = damage.firstDroppedLSN
        self.droppedCommits = damage.droppedCommits
        self.droppedFrames = damage.droppedFrames
    }
}

extension WriteAheadLog {
    /// Looks at the frames from `stopFrame` (where recovery stopped) to the end of the file for
    /// proof that a complete commit was dropped. `lastKept` is the LSN of the last kept commit.
    func findDamage(from stopFrame: Int, lastKept: LSN?, size: UInt64) throws -> LogDamage? {
        // With a commit kept, the first dropped commit is the next LSN. Without one, it is the
        // oldest LSN among the frames that follow (every frame of this salt is of this log).
        let floor = lastKept?.next ?? LSN(1)
        var oldest: LSN? = nil
        var newest = LSN.zero
        var intact = 0
        var lastIntactFrame = -1
        let batch = max(1, (1 << 20) / frameSize)
        var frame = stopFrame
        while frameOffset(frame) + UInt64(frameSize) <= size {
            let n = min(batch, Int((size - frameOffset(frame)) / UInt64(frameSize)))
            let chunk = try file.read(at: frameOffset(frame), count: n * frameSize)
            for i in 0..<n {
                let base = i * frameSize
                guard let header = WriteAheadLog.parseWholeFrame(chunk, at: base, pageSize: pageSize, salt: salt),
                    header.lsn >= floor
                else { continue }
                intact += 1
                lastIntactFrame = frame + i
                oldest = min(oldest ?? header.lsn, header.lsn)
                newest = max(newest, header.lsn)
            }
            frame += n
        }
        let first = lastKept?.next ?? oldest ?? floor
        // Frames of the first dropped commit alone may be a torn write of a commit that was never
        // acknowledged; only a frame of a later commit proves the loss.
        guard intact > 0, newest > first else { return nil }
        return LogDamage(
            firstDroppedLSN: first, lastSeenLSN: newest, stopFrame: stopFrame,
            droppedFrames: lastIntactFrame - stopFrame + 1, intactFrames: intact)
    }

    /// The header of the frame at `base` when the frame is whole on its own: it carries `salt`, an
    /// LSN in 1..<2^63, a page number other than 0xFFFFFFFF, and an image whose page checksum
    /// holds. The frame checksum is not looked at: it depends on the frames before it.
    static func parseWholeFrame(_ bytes: [UInt8], at base: Int, pageSize: Int, salt: UInt64) -> FrameHeader? {
        guard base + frameHeaderSize + pageSize <= bytes.count else { return nil }
        return bytes.withUnsafeBytes { raw -> FrameHeader? in
            let frameSalt = raw.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self).littleEndian
            guard frameSalt == salt else { return nil }
            let pageNumber = raw.loadUnaligned(fromByteOffset: base, as: UInt32.self).littleEndian
            let commitPageCount = raw.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self).littleEndian
            let lsn = raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self).littleEndian
            guard lsn > 0, lsn < 1 << 63, pageNumber != UInt32.max else { return nil }
            let pageStart = base + frameHeaderSize
            let pageChecksum = raw.loadUnaligned(fromByteOffset: pageStart, as: UInt32.self).littleEndian
            let body = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[(pageStart + 4)..<(pageStart + pageSize)]))
            guard pageChecksum == body ^ (pageNumber &* 0x9E37_79B1) else { return nil }
            return FrameHeader(page: PageNumber(pageNumber), commitPageCount: commitPageCount, lsn: LSN(lsn))
        }
    }
}

extension PartitionFile {
    /// The name every preserved copy of `path`'s log starts with, without the directory.
    static func damagedLogPrefix(_ path: String) -> String { baseName(logPath(path)) + ".damaged-" }

    /// Copies the log of the partition at `path` (its header and every frame up to the last one
    /// of this log) to a new file `NAME.pdb-log.damaged-LSN` next to it, never over an existing
    /// file, and makes the copy and its name durable. Returns the copy's path.
    static func preserveDamagedLog(
        _ wal: WriteAheadLog, damage: LogDamage, path: String, fileSystem: any FileSystem
    ) throws -> String {
        let directory = directoryOf(path)
        let base = directory + "/" + damagedLogPrefix(path) + String(damage.firstDroppedLSN.rawValue)
        var target = base
        var suffix = 2
        while fileSystem.exists(target) {
            target = base + "." + String(suffix)
            suffix += 1
        }
        let length = wal.frameOffset(damage.stopFrame + damage.droppedFrames)
        // Written under a temporary name and renamed, so a file with the final name is always whole.
        try fileSystem.writeWhole(target, temporarySuffix: ".copying") { copy in
            var offset: UInt64 = 0
            while offset < length {
                let count = Int(min(UInt64(1 << 20), length - offset))
                try copy.write(try wal.file.read(at: offset, count: count), at: offset)
                offset += UInt64(count)
            }
        }
        return target
    }

    /// The warnings for every preserved log copy next to the partition at `path`, as found on
    /// disk: each copy is a log, and recovering it again says what was dropped.
    static func preservedLogs(
        path: String, pageSize: Int, fileID: [UInt8], fileSystem: any FileSystem
    ) throws -> [(path: String, damage: LogDamage?)] {
        let directory = directoryOf(path)
        let prefix = damagedLogPrefix(path)
        var found: [(path: String, damage: LogDamage?)] = []
        for name in try fileSystem.list(directory).sorted()
        where name.hasPrefix(prefix) && !name.hasSuffix(".copying") {
            let copyPath = directory + "/" + name
            var damage: LogDamage? = nil
            // Only read; a copy that cannot be read or recovered is still reported, without figures.
            if let file = try? fileSystem.openReadOnly(copyPath) {
                let wal = WriteAheadLog(file: file, pageSize: pageSize, fileID: fileID)
                try? wal.recover()
                damage = wal.damage
                file.close()
            }
            found.append((copyPath, damage))
        }
        return found
    }
}
