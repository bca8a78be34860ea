/// A partition file arriving page by page, from a primary's snapshot or from a backup: written
/// straight into `NAME.pdb.creating`, each page verified as it comes, and renamed into place only
/// once every page has arrived and the file is synced (spec/file-format.md#restoring). Until then
/// the partition's existing file, if any, is untouched and stays readable; a failure, `abandon()`
/// or a crash leaves only the temporary file, which the next receive (and the next open of the
/// database) removes.
///
/// Pages come in order from page 0, in runs of whole pages (`write(pages:)`). Each page must pass
/// the checks a read makes (`Pager.verify`: its checksum, which mixes in its page number, so a page
/// out of place fails too, and its structure); page 0 must be a header that agrees with the facts
/// the receive was announced with. `finish()` refuses a file that is short of the announced count,
/// and `write(pages:)` refuses pages beyond it.
public final class IncomingPartition: @unchecked Sendable {
    /// The partition it becomes.
    public let name: String
    public let pageSize: Int
    public let pageCount: UInt32
    public let lsn: LSN
    public let fileID: [UInt8]
    public let region: Region

    /// What a refusal says, and what it names (a backup file, a primary's snapshot).
    struct Source {
        /// The path named in a damaged page's error.
        var path: String
        /// The name page 0 must carry (a restore under another name renames it).
        var name: String
        var refusal: @Sendable (String) -> PartitionDBError
    }

    private let database: Database
    private let source: Source
    private let temporary: String
    private let replace: Bool
    /// A restore under another name: the header gets `name`, and this file id when set.
    private let renamedFileID: [UInt8]?
    /// Protects everything below: `abandon()` may come from another thread than the writing.
    private let lock = Lock()
    private var file: (any FileHandle)?
    /// Set once the file is installed or the receive abandoned: nothing more may happen to it.
    private var isDone = false
    private var next: UInt32 = 0
    private var written: UInt64 = 0
    private var startedWriteback: UInt64 = 0

    /// The kernel is asked to start writing every this many bytes, so the final sync is short.
    static let writebackBytes: UInt64 = 8 << 20

    /// Checks the facts as `restore` checks a backup's, removes a leftover temporary file and
    /// creates a new one. One receive of a name runs at a time (else `busy`). The partition's file is not looked at for being open here: only
    /// `finish()`, which replaces it, needs it closed.
    init(
        database: Database, name: String, pageSize: Int, pageCount: UInt32, lsn: LSN, fileID: [UInt8], region: Region,
        replace: Bool, source: Source, renamedFileID: [UInt8]? = nil
    ) throws {
        try Names.validate(name, kind: "partition")
        let path = Database.partitionPath(database.path, name)
        let expected = name == Database.globalPartitionName ? Region.global : database.region
        guard region == expected else {
            throw PartitionDBError.regionMismatch(path: source.path, expected: expected.name, found: region.name)
        }
        guard PartitionHeader.isValidPageSize(pageSize) else {
            throw source.refusal("impossible page size \(pageSize)")
        }
        guard pageCount >= 3 else { throw source.refusal("impossible page count \(pageCount)") }
        guard fileID.count == 16 else { throw source.refusal("a file id of \(fileID.count) bytes, not 16") }
        let fileSystem = database.fileSystem
        try PartitionFile.requireOwnFile(path, fileSystem: fileSystem)
        try PartitionFile.requireOwnFile(PartitionFile.logPath(path), fileSystem: fileSystem)
        if fileSystem.status(path) != nil, !replace { throw PartitionDBError.partitionExists(name: name) }
        self.database = database
        self.name = name
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.lsn = lsn
        self.fileID = fileID
        self.region = region
        self.replace = replace
        self.source = source
        self.renamedFileID = renamedFileID
        self.temporary = path + ".creating"
        // `self` is whole from here on, so a throw runs `deinit`: `isDone` keeps it from removing
        // a file that another receive of the name owns.
        do {
            try database.beginReceiving(name)
        } catch {
            isDone = true
            throw error
        }
        do {
            // A leftover is what a receive cut short by a crash left: nothing refers to it.
            try fileSystem.remove(temporary)
            self.file = try fileSystem.createNew(temporary)
        } catch {
            isDone = true
            database.endReceiving(name)
            throw error
        }
    }

    deinit { abandon() }

    /// Pages received so far.
    public var pagesReceived: UInt32 { lock.withLock { next } }

    /// Verifies the next run of whole pages and writes them at their place in the file. A
    /// refusal (a page fails its check, a header that disagrees, pages beyond the count) or an
    /// I/O error abandons the receive: the temporary file is removed and later calls are refused.
    public func write(pages bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(pages: $0) }
    }

    /// `write(pages:)` from memory the caller owns for the length of the call.
    public func write(pages bytes: UnsafeRawBufferPointer) throws {
        try lock.withLock {
            guard let file else {
                throw source.refusal("the receive has ended (finished, or abandoned after a failure)")
            }
            do {
                try writeLocked(bytes, to: file)
            } catch {
                abandonLocked()
                throw error
            }
        }
    }

    private func writeLocked(_ bytes: UnsafeRawBufferPointer, to file: any FileHandle) throws {
        guard bytes.count > 0, bytes.count % pageSize == 0 else {
            throw source.refusal("a run of \(bytes.count) bytes is not whole pages of \(pageSize) bytes")
        }
        let count = bytes.count / pageSize
        guard count <= Int(pageCount - next) else {
            throw source.refusal("pages beyond the announced count of \(pageCount)")
        }
        var header: Page? = nil
        for i in 0..<count {
            let number = next + UInt32(i)
            let page = Page(mapped: bytes.baseAddress! + i * pageSize, size: pageSize)
            do {
                try Pager.verify(page, number: PageNumber(number), file: source.path)
            } catch PartitionDBError.corruptPage(_, _, let reason) {
                throw source.refusal("page \(number) fails its check (\(reason))")
            }
            if number == 0 { header = try checkedHeader(page) }
        }
        let offset = UInt64(next) * UInt64(pageSize)
        if let header {
            // Page 0 as renamed, then the rest of the run as it came.
            try header.withUnsafeBytes { try file.write($0, at: offset) }
            if count > 1 {
                try file.write(UnsafeRawBufferPointer(rebasing: bytes[pageSize...]), at: offset + UInt64(pageSize))
            }
        } else {
            try file.write(bytes, at: offset)
        }
        next += UInt32(count)
        written = offset + UInt64(bytes.count)
        if written - startedWriteback >= Self.writebackBytes {
            file.startWriteback(at: startedWriteback, length: written - startedWriteback)
            startedWriteback = written
        }
    }

    /// Page 0 checked against the announced facts, as it is to be written (renamed for a restore
    /// under another name).
    private func checkedHeader(_ page: Page) throws -> Page {
        var header: PartitionHeader
        do {
            header = try PartitionHeader.decode(page, file: source.path)
        } catch PartitionDBError.corruptPage(_, _, let reason) {
            throw source.refusal("page 0 is not a partition header (\(reason))")
        }
        func disagree(_ what: String) -> PartitionDBError {
            source.refusal("page 0 gives another \(what) than was announced")
        }
        guard header.pageCount == pageCount else { throw disagree("page count") }
        guard header.lastLSN == lsn else { throw disagree("LSN") }
        guard header.fileID == fileID else { throw disagree("file id") }
        guard header.region == region else { throw disagree("region") }
        guard header.name == source.name else { throw disagree("partition name") }
        guard header.name != name || renamedFileID != nil else { return page }
        header.name = name
        if let renamedFileID { header.fileID = renamedFileID }
        return PartitionSnapshotReader.sealed(header)
    }

    /// Checks that every announced page arrived, syncs the file and renames it into place over
    /// the partition's old file and log (which must not be open: `busy`), as `restore` does.
    /// Whatever fails, the temporary file is removed and the old partition stays as it was.
    @discardableResult
    public func finish() throws -> RestoreSummary {
        try lock.withLock {
            guard let file else {
                throw source.refusal("the receive has ended (finished, or abandoned after a failure)")
            }
            do {
                guard next == pageCount else {
                    throw source.refusal("only \(next) of the announced \(pageCount) pages arrived")
                }
                try file.sync()
                file.close()
                self.file = nil
                try database.install(temporary, as: name, replace: replace)
                isDone = true
                database.endReceiving(name)
            } catch {
                abandonLocked()
                throw error
            }
            return RestoreSummary(partition: name, pages: Int(pageCount), lsn: lsn)
        }
    }

    /// Gives up: closes and removes the temporary file. Does nothing after `finish()` succeeded
    /// or once abandoned.
    public func abandon() { lock.withLock { abandonLocked() } }

    private func abandonLocked() {
        guard !isDone else { return }
        isDone = true
        file?.close()
        file = nil
        try? database.fileSystem.remove(temporary)
        database.endReceiving(name)
    }
}

extension Database {
    /// Starts receiving a partition file page by page (a primary's snapshot): `name` is the
    /// partition it becomes, the other facts those the sender announced (its page 0 must agree).
    /// The region must be this host's (`global` for the directory; else `regionMismatch`, and
    /// nothing is created); an existing partition is replaced only with `replace`, at `finish()`,
    /// and only once it is closed.
    public func receivePartition(
        _ name: String, pageSize: Int, pageCount: UInt32, lsn: LSN, fileID: [UInt8], region: Region,
        replace: Bool = false
    ) throws -> IncomingPartition {
        try IncomingPartition(
            database: self, name: name, pageSize: pageSize, pageCount: pageCount, lsn: lsn, fileID: fileID,
            region: region, replace: replace,
            source: .init(
                path: Database.partitionPath(path, name), name: name,
                refusal: { .badSnapshot(partition: name, reason: $0) }))
    }
}
