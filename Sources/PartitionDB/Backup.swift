/// What `Partition.backup(to:)` wrote.
public struct BackupSummary: Sendable, Equatable {
    public var pages: Int
    /// Size of the backup file.
    public var bytes: UInt64
    /// The commit the backup holds.
    public var lsn: LSN
}

/// What `Database.restore(from:as:replace:)` did.
public struct RestoreSummary: Sendable, Equatable {
    public var partition: String
    public var pages: Int
    public var lsn: LSN
}

/// The backup file: a 192-byte header, then one zstd frame holding every page of the partition
/// as of one commit. Layout: spec/file-format.md#backup-file
enum BackupFormat {
    static let magic: [UInt8] = Array("PDBBACK\u{1}".utf8)
    static let headerSize = 192

    struct Header {
        var pageSize: Int
        var pageCount: UInt32
        var lsn: LSN
        var fileID: [UInt8]
        var region: Region
        var name: String
    }

    static func encode(_ header: Header) -> [UInt8] {
        var page = Page(size: headerSize)
        page.setBytes(at: 0, magic)
        page.setU32(8, 1)
        page.setU32(12, UInt32(header.pageSize))
        page.setU32(16, header.pageCount)
        page.setU64(24, header.lsn.rawValue)
        page.setBytes(at: 32, header.fileID)
        let region = Array(header.region.name.utf8)
        page.setU8(48, UInt8(region.count))
        page.setBytes(at: 49, region)
        let name = Array(header.name.utf8)
        page.setU8(80, UInt8(name.count))
        page.setBytes(at: 81, name)
        let crc = page.bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<188])) }
        page.setU32(188, crc)
        return page.bytes
    }

    static func decode(_ bytes: [UInt8], path: String) throws -> Header {
        func bad(_ reason: String) -> PartitionDBError { .badBackup(path: path, reason: reason) }
        guard bytes.count == headerSize, Array(bytes[0..<8]) == magic else { throw bad("no backup magic") }
        let page = Page(bytes: bytes)
        let crc = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<188])) }
        guard page.u32(188) == crc else { throw bad("header checksum mismatch") }
        guard page.u32(8) == 1 else { throw bad("backup version \(page.u32(8))") }
        let pageSize = Int(page.u32(12))
        guard PartitionHeader.isValidPageSize(pageSize) else { throw bad("impossible page size") }
        let regionLength = Int(page.u8(48))
        let nameLength = Int(page.u8(80))
        guard regionLength > 0, regionLength <= Region.maxLength, nameLength > 0, nameLength <= 63 else {
            throw bad("bad names")
        }
        let regionName = String(decoding: page.copyBytes(at: 49, count: regionLength), as: UTF8.self)
        guard let region = regionName == Region.global.name ? Region.global : try? Region(regionName) else {
            throw bad("bad region")
        }
        let pageCount = page.u32(16)
        guard pageCount >= 3 else { throw bad("impossible page count") }
        return Header(
            pageSize: pageSize, pageCount: pageCount, lsn: LSN(page.u64(24)), fileID: page.copyBytes(at: 32, count: 16),
            region: region, name: String(decoding: page.copyBytes(at: 81, count: nameLength), as: UTF8.self))
    }
}

extension Partition {
    /// Writes a consistent, zstd-compressed copy of the partition as of the newest commit to
    /// `path`, while writers go on (it reads one snapshot). The file is synced before this returns.
    /// `path` must lie outside the database directory and must not be a symlink or a special
    /// file; an existing regular file there is replaced only with `replacing` (else
    /// `targetExists`). A failed backup leaves nothing behind.
    public func backup(to path: String, replacing: Bool = false) throws -> BackupSummary {
        try TargetFile.check(
            path, databaseDirectory: PartitionFile.directoryOf(self.path), replacing: replacing, fileSystem: fileSystem)
        let reader = try snapshotReader()
        defer { reader.close() }
        let bytes = try fileSystem.writeWhole(path) { file in
            try file.write(
                BackupFormat.encode(
                    .init(
                        pageSize: reader.pageSize, pageCount: reader.pageCount, lsn: reader.lsn,
                        fileID: reader.fileID, region: reader.region, name: reader.name)), at: 0)
            let writer = try ZstdWriter(file: file, offset: UInt64(BackupFormat.headerSize))
            while let pages = try reader.nextChunk(maxPages: max(1, (1 << 20) / reader.pageSize)) {
                try writer.write(pages)
            }
            try writer.finish()
            return writer.offset
        }
        return BackupSummary(pages: Int(reader.pageCount), bytes: bytes, lsn: reader.lsn)
    }
}

extension Database {
    /// Restores a backup as a partition of this database: under its own name, or `name`. The
    /// backup's region must be this host's (or `global` for the directory). An existing partition
    /// is only overwritten with `replace`, and only when it is not open in this process.
    @discardableResult
    public func restore(from backupPath: String, as name: String? = nil, replace: Bool = false) throws -> RestoreSummary
    {
        // The engine opens no name through a symlink; a backup file named by one is read where it
        // is. Only a regular file is opened: a FIFO would block the open until a writer came.
        let sourcePath = fileSystem.resolve(backupPath) ?? backupPath
        if let status = fileSystem.status(sourcePath), status.kind != .regular {
            throw PartitionDBError.badBackup(path: backupPath, reason: "it is not a regular file")
        }
        let source = try fileSystem.openReadOnly(sourcePath)
        defer { source.close() }
        let headerBytes: [UInt8]
        do {
            headerBytes = try source.read(at: 0, count: BackupFormat.headerSize)
        } catch PartitionDBError.unexpectedEndOfFile {
            throw PartitionDBError.badBackup(path: backupPath, reason: "file is shorter than a backup header")
        }
        let header = try BackupFormat.decode(headerBytes, path: backupPath)
        let target = name ?? header.name
        try Names.validate(target, kind: "partition")
        // Checked here, before anything is created, as a restore has always done; the incoming
        // file checks the name, the region and what is in the way of the partition's files.
        if fileSystem.status(Database.partitionPath(self.path, target)) != nil, replace, isOpen(target) {
            throw PartitionDBError.busy(partition: target, reason: "it is open; close it before restoring over it")
        }
        // Under another name the restored file is a partition of its own: a new file id, so
        // that no change set or log of the original can ever apply to it.
        let fileID = target == header.name ? nil : (0..<16).map { _ in UInt8.random(in: 0...255) }
        let incoming = try IncomingPartition(
            database: self, name: target, pageSize: header.pageSize, pageCount: header.pageCount, lsn: header.lsn,
            fileID: header.fileID, region: header.region, replace: replace,
            source: .init(
                path: backupPath, name: header.name, refusal: { .badBackup(path: backupPath, reason: $0) }),
            renamedFileID: fileID)
        defer { incoming.abandon() }
        try copyPages(of: header, from: source, backupPath: backupPath, to: incoming)
        return try incoming.finish()
    }

    /// Decompresses the pages of a backup into `incoming`, which verifies each.
    private func copyPages(
        of header: BackupFormat.Header, from source: any FileHandle, backupPath: String, to incoming: IncomingPartition
    ) throws {
        let reader = try ZstdReader(file: source, offset: UInt64(BackupFormat.headerSize))
        let run = max(1, (1 << 20) / header.pageSize)
        var n: UInt32 = 0
        while n < header.pageCount {
            let count = min(run, Int(header.pageCount - n))
            let pages: [UInt8]
            do {
                pages = try reader.read(count: count * header.pageSize)
            } catch let error as PartitionDBError {
                throw PartitionDBError.badBackup(path: backupPath, reason: "pages from \(n): \(error)")
            }
            try incoming.write(pages: pages)
            n += UInt32(count)
        }
        // The page count and the frame must agree to the byte: a backup with more content, bytes
        // after the frame, or a frame cut before its content checksum is not the backup it claims.
        do {
            try reader.finish()
        } catch let error as PartitionDBError {
            throw PartitionDBError.badBackup(path: backupPath, reason: "\(error)")
        }
    }
}
