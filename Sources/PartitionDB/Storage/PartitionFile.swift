/// Creating and opening partition files: the steps that must happen in a careful order.
/// Walk-through of each crash point: spec/file-format.md#creating-and-opening
enum PartitionFile {
    static func logPath(_ path: String) -> String { path + "-log" }

    /// Writes a new, empty partition file at `path` through a temporary file and a rename, so a
    /// crash leaves either no partition or a complete one.
    static func create(
        at path: String, name: String, region: Region, pageSize: Int, fileID: [UInt8]? = nil,
        fileSystem: any FileSystem
    ) throws {
        guard PartitionHeader.isValidPageSize(pageSize) else {
            throw PartitionDBError.badFormat(
                file: path, reason: "page size \(pageSize) is not a power of two in 4096...32768")
        }
        var id = fileID ?? []
        if id.isEmpty { for _ in 0..<16 { id.append(UInt8.random(in: 0...255)) } }
        let header = PartitionHeader(
            pageSize: pageSize, fileID: id, region: region, name: name, pageCount: 3, freelistHead: .none,
            freeCount: 0, catalogRoot: PageNumber(1), ownerIndexRoot: PageNumber(2), nextTableID: 1, lastLSN: .zero)
        var pages = [
            header.encode(), Page.emptyNode(kind: .leaf, size: pageSize), Page.emptyNode(kind: .leaf, size: pageSize),
        ]
        var bytes: [UInt8] = []
        for i in pages.indices {
            pages[i].seal(number: PageNumber(UInt32(i)))
            bytes.append(contentsOf: pages[i].bytes)
        }
        try fileSystem.writeWhole(path) { file in try file.write(bytes, at: 0) }
    }

    /// Refuses to use `path` unless it is a regular file with one name: a symlink or a second
    /// hard link would make two partitions share a file, or a log replay into another file.
    static func requireOwnFile(_ path: String, fileSystem: any FileSystem) throws {
        guard let status = fileSystem.status(path) else { return }
        switch status.kind {
        case .regular:
            guard status.linkCount == 1 else {
                throw PartitionDBError.unsafeFile(
                    path: path,
                    reason:
                        "has \(status.linkCount) names (hard links): a partition file or log must have one; remove the other names"
                )
            }
        case .symbolicLink:
            throw PartitionDBError.unsafeFile(
                path: path, reason: "is a symlink: a partition file or log must be a regular file of its own")
        case .directory, .special:
            throw PartitionDBError.unsafeFile(path: path, reason: "is not a regular file")
        }
    }

    /// Opens the partition at `path`, refusing (and creating nothing) when it belongs to a region
    /// other than `expectedRegion`. Recovers the log and checkpoints it. With `options.readOnly`
    /// both files are opened read-only, a missing log is an empty one in memory, and nothing is
    /// checkpointed: the pager reads the recovered commits from the log
    /// (spec/file-format.md#read-only-opens).
    static func open(
        at path: String, expectedName: String, expectedRegion: Region, options: Options, fileSystem: any FileSystem
    ) throws -> Pager {
        let logPath = logPath(path)
        try requireOwnFile(path, fileSystem: fileSystem)
        try requireOwnFile(logPath, fileSystem: fileSystem)
        let readOnly = options.readOnly
        let mainFile = try readOnly ? fileSystem.openReadOnly(path) : fileSystem.open(path, create: false)
        var handles: [any FileHandle] = [mainFile]
        do {
            // Page 0 of the partition file says what the file is. A checkpoint rewrites it, so a
            // power loss can tear it; then the log, which holds page 0 until the checkpoint is
            // synced, says the same (page size and file id in its header, page 0 in a frame).
            let logExists = fileSystem.status(logPath) != nil
            var mainHeader: PartitionHeader? = nil
            var pageSize: Int? = nil
            // A partition file shorter than its header page: reported as `truncated` unless the
            // log can stand in for page 0.
            var truncation: PartitionDBError? = nil
            do {
                let size = try mainFile.size()
                let prefix = try mainFile.read(at: 0, count: Int(min(size, 64)))
                let probed = try PartitionHeader.probePageSize(prefix, file: path)
                guard size >= UInt64(probed) else {
                    // The header says how long page 0 is, and the file ends before that.
                    throw PartitionDBError.unexpectedEndOfFile(path: path, offset: UInt64(probed))
                }
                pageSize = probed
                let page = Page(bytes: try mainFile.read(at: 0, count: probed))
                if page.hasValidChecksum(number: .header) { mainHeader = try PartitionHeader.decode(page, file: path) }
            } catch let error as PartitionDBError {
                // Damage may be repaired from the log; an I/O error is reported as what it is.
                if case .io = error { throw error }
                guard logExists else { throw error }
                if case .unexpectedEndOfFile = error { truncation = error }
            }

            // Without a log, the partition file alone is the truth: check its region before creating
            // the log. With a log, recovery reads it (read-only) and the newest header decides.
            if !logExists {
                guard let mainHeader else {
                    throw PartitionDBError.corruptPage(file: path, page: 0, reason: "checksum mismatch")
                }
                try checkRegion(mainHeader, expected: expectedRegion, path: path)
                try checkName(mainHeader, expected: expectedName, path: path)
            }
            let logFile: any FileHandle
            if readOnly {
                logFile = logExists ? try fileSystem.openReadOnly(logPath) : EmptyFile(path: logPath)
            } else {
                logFile = try fileSystem.open(logPath, create: true)
            }
            handles.append(logFile)
            if !logExists && !readOnly { try fileSystem.syncDirectory(directoryOf(path)) }
            let logIdentity = logHeaderIdentity(logFile)
            guard let pageSize = pageSize ?? logIdentity?.pageSize,
                let fileID = mainHeader?.fileID ?? logIdentity?.fileID
            else {
                throw truncation
                    ?? PartitionDBError.corruptPage(file: path, page: 0, reason: "damaged, and the log holds no copy")
            }
            let wal = WriteAheadLog(file: logFile, pageSize: pageSize, fileID: fileID)
            try wal.recover()
            if let damage = wal.damage {
                // Commits after the damage are lost to this open: keep the log as found before the
                // checkpoint below (and the next commit) can replace it. The kept prefix is a valid
                // state, so opening goes on; `check()` reports the copy until it is removed.
                // Read-only, nothing will replace the log: it stays as found, and is the evidence.
                let copy =
                    readOnly ? logPath : try preserveDamagedLog(wal, damage: damage, path: path, fileSystem: fileSystem)
                wal.recoveryWarning = RecoveryWarning(preservedLog: copy, damage: damage)
            }

            var header = mainHeader
            if let frame = wal.latestFrame(of: .header, below: wal.frameCount) {
                let page = try wal.readFrame(frame)
                try Pager.verify(page, number: .header, file: logPath)
                let recovered = try PartitionHeader.decode(page, file: logPath)
                // A checkpoint copies only whole, synced commits of the log, and page 0 with them,
                // so the file is never ahead of the log's newest commit. Ahead of the kept prefix
                // means recovery dropped commits (damage) whose pages a checkpoint had already
                // copied: the file mixes two states, and opening on it would return either.
                if let mainHeader, mainHeader.lastLSN > recovered.lastLSN {
                    throw PartitionDBError.corruptPage(
                        file: path, page: 0,
                        reason:
                            "the file holds commits up to LSN \(mainHeader.lastLSN) but its log only up to LSN \(recovered.lastLSN): pages of the dropped commits are mixed into it"
                            + (wal.recoveryWarning.map { "; the log is kept as \($0.preservedLog)" } ?? ""))
                }
                header = recovered
            }
            guard let header else {
                throw truncation ?? PartitionDBError.corruptPage(file: path, page: 0, reason: "checksum mismatch")
            }
            try checkRegion(header, expected: expectedRegion, path: path)
            try checkName(header, expected: expectedName, path: path)
            // Every page below the page count is in the file or in a log frame. The header is whole
            // (its checksum holds), so a larger count means the file was cut short: `truncated`
            // (and check() and the page flags must not size themselves by such a count).
            let filePages = try mainFile.size() / UInt64(pageSize)
            guard UInt64(header.pageCount) <= filePages + UInt64(wal.frameCount) else {
                throw PartitionDBError.unexpectedEndOfFile(
                    path: path, offset: UInt64(header.pageCount) * UInt64(pageSize))
            }
            let pager = Pager(
                fileSystem: fileSystem, mainFile: mainFile, wal: wal, header: header, cacheCapacity: options.cachePages,
                autoCheckpointFrames: options.autoCheckpointFrames, directWritePages: options.directWritePages,
                relocationPages: options.relocationPages, mapFile: options.mapPartitionFiles)
            // Recovery ends with a checkpoint, so the partition file is whole again; read-only,
            // the recovered commits stay in the log, where the pager finds them.
            if !readOnly { try pager.checkpoint() }
            return pager
        } catch {
            for handle in handles { handle.close() }
            throw error
        }
    }

    private static func checkRegion(_ header: PartitionHeader, expected: Region, path: String) throws {
        guard header.region == expected else {
            throw PartitionDBError.regionMismatch(path: path, expected: expected.name, found: header.region.name)
        }
    }

    /// A copy saved under another name is not that partition: its file id and history are the
    /// original's, so it is refused rather than opened as a second partition of the same file.
    private static func checkName(_ header: PartitionHeader, expected: String, path: String) throws {
        guard header.name == expected else {
            throw PartitionDBError.nameMismatch(path: path, expected: expected, found: header.name)
        }
    }

    /// The page size and file id a valid log header records, or nil.
    private static func logHeaderIdentity(_ file: any FileHandle) -> (pageSize: Int, fileID: [UInt8])? {
        guard let bytes = try? file.read(at: 0, count: WriteAheadLog.headerSize) else { return nil }
        let header = Page(bytes: bytes)
        let crc = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard Array(bytes[0..<8]) == WriteAheadLog.magic, header.u32(60) == crc,
            PartitionHeader.isValidPageSize(Int(header.u32(12)))
        else { return nil }
        return (Int(header.u32(12)), header.copyBytes(at: 16, count: 16))
    }

    static func directoryOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
