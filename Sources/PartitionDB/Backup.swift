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
        let (pager, id, snapshot) = try beginRead()
        defer { pager.endRead(id) }
        let header = snapshot.header
        let bytes = try fileSystem.writeWhole(path) { file in
            try file.write(
                BackupFormat.encode(
                    .init(
                        pageSize: header.pageSize, pageCount: header.pageCount, lsn: header.lastLSN,
                        fileID: header.fileID, region: header.region, name: header.name)), at: 0)
            let writer = try ZstdWriter(file: file, offset: UInt64(BackupFormat.headerSize))
            var batch: [UInt8] = []
            batch.reserveCapacity(1 << 20)
            for n in 0..<header.pageCount {
                let number = PageNumber(n)
                let page = n == 0 ? sealedHeader(header) : try pager.page(number, in: snapshot)
                batch.append(contentsOf: page.bytes)
                if batch.count >= 1 << 20 {
                    try writer.write(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            try writer.write(batch)
            try writer.finish()
            return writer.offset
        }
        return BackupSummary(pages: Int(header.pageCount), bytes: bytes, lsn: header.lastLSN)
    }

    private func sealedHeader(_ header: PartitionHeader) -> Page {
        var page = header.encode()
        page.seal(number: .header)
        return page
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
        let expected = target == Database.globalPartitionName ? Region.global : region
        guard header.region == expected else {
            throw PartitionDBError.regionMismatch(path: backupPath, expected: expected.name, found: header.region.name)
        }
        let path = Database.partitionPath(self.path, target)
        try PartitionFile.requireOwnFile(path, fileSystem: fileSystem)
        try PartitionFile.requireOwnFile(PartitionFile.logPath(path), fileSystem: fileSystem)
        if fileSystem.status(path) != nil {
            guard replace else { throw PartitionDBError.partitionExists(name: target) }
            guard !isOpen(target) else {
                throw PartitionDBError.busy(partition: target, reason: "it is open; close it before restoring over it")
            }
        }
        // Under another name the restored file is a partition of its own: a new file id, so
        // that no change set or log of the original can ever apply to it.
        let fileID = target == header.name ? nil : (0..<16).map { _ in UInt8.random(in: 0...255) }
        let temporary = path + ".creating"
        try fileSystem.remove(temporary)
        let file = try fileSystem.createNew(temporary)
        do {
            defer { file.close() }
            try copyPages(of: header, from: source, backupPath: backupPath, to: file, name: target, fileID: fileID)
            try file.sync()
            try install(temporary, as: target, replace: replace)
        } catch {
            try? fileSystem.remove(temporary)
            throw error
        }
        return RestoreSummary(partition: target, pages: Int(header.pageCount), lsn: header.lsn)
    }

    /// Decompresses and verifies every page of a backup into `file`, renaming the partition in
    /// its header (and giving it `fileID` when set).
    private func copyPages(
        of header: BackupFormat.Header, from source: any FileHandle, backupPath: String, to file: any FileHandle,
        name: String, fileID: [UInt8]?
    ) throws {
        let reader = try ZstdReader(file: source, offset: UInt64(BackupFormat.headerSize))
        for n in 0..<header.pageCount {
            var page: Page
            do {
                page = Page(bytes: try reader.read(count: header.pageSize))
            } catch let error as PartitionDBError {
                throw PartitionDBError.badBackup(path: backupPath, reason: "page \(n): \(error)")
            }
            do {
                try Pager.verify(page, number: PageNumber(n), file: backupPath)
            } catch {
                throw PartitionDBError.badBackup(path: backupPath, reason: "page \(n) fails its checksum")
            }
            if n == 0 {
                var restored = try PartitionHeader.decode(page, file: backupPath)
                restored.name = name
                if let fileID { restored.fileID = fileID }
                page = restored.encode()
                page.seal(number: .header)
            }
            try file.write(page.bytes, at: UInt64(n) * UInt64(header.pageSize))
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
