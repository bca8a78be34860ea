/// Every page of a partition as of one commit, read in runs of whole pages while writers go on:
/// what a backup file holds, and what a primary streams to a new replica (spec/replication.md#snapshots).
///
/// It registers one reader, so the pages are those of one snapshot however long the reading
/// takes; while it is open the log cannot restart past the snapshot (checkpoints copy only what
/// no reader needs), so close it as soon as the pages are out. `close()` is also run on deinit.
public final class PartitionSnapshotReader: @unchecked Sendable {
    /// The partition's name in its header.
    public let name: String
    public let pageSize: Int
    /// The pages of the snapshot, page 0 (the header) included.
    public let pageCount: UInt32
    /// The commit the snapshot holds.
    public let lsn: LSN
    /// The partition file's id as of the snapshot (a compaction since gives the file a new one).
    public let fileID: [UInt8]
    public let region: Region

    private let pager: Pager
    private let readerID: Int
    private let snapshot: Pager.Snapshot
    /// Protects `next` and `isClosed`: `close()` may come from another thread than the reading.
    private let lock = Lock()
    private var next: UInt32 = 0
    private var isClosed = false

    init(_ partition: Partition) throws {
        let (pager, id, snapshot) = try partition.beginRead()
        let header = snapshot.header
        self.pager = pager
        self.readerID = id
        self.snapshot = snapshot
        self.name = header.name
        self.pageSize = header.pageSize
        self.pageCount = header.pageCount
        self.lsn = header.lastLSN
        self.fileID = header.fileID
        self.region = header.region
    }

    deinit { close() }

    /// The next run of at most `maxPages` pages, in page order from page 0, as their bytes one
    /// after another (each page as on disk, its checksum inside); nil once every page has been
    /// read. Page 0 is the snapshot's own header, sealed: the file's page 0 may already be newer.
    /// Throws `corruptPage` when a page fails its check, `closed` after `close()`.
    public func nextChunk(maxPages: Int) throws -> [UInt8]? {
        precondition(maxPages >= 1, "a chunk holds at least one page")
        return try lock.withLock {
            guard !isClosed else { throw PartitionDBError.closed(partition: name) }
            guard next < pageCount else { return nil }
            let end = next + UInt32(min(maxPages, Int(pageCount - next)))
            var chunk: [UInt8] = []
            chunk.reserveCapacity(Int(end - next) * pageSize)
            for n in next..<end {
                let page =
                    n == 0
                    ? PartitionSnapshotReader.sealed(snapshot.header) : try pager.page(PageNumber(n), in: snapshot)
                page.withUnsafeBytes { chunk.append(contentsOf: $0) }
            }
            next = end
            return chunk
        }
    }

    /// Ends the read, so checkpoints may again restart the log; later `nextChunk` calls throw.
    public func close() {
        lock.withLock {
            guard !isClosed else { return }
            isClosed = true
            pager.endRead(readerID)
        }
    }

    static func sealed(_ header: PartitionHeader) -> Page {
        var page = header.encode()
        page.seal(number: .header)
        return page
    }
}

extension Partition {
    /// Opens a read of every page as of the newest commit (see `PartitionSnapshotReader`).
    /// Throws `closed` once the partition is closed.
    public func snapshotReader() throws -> PartitionSnapshotReader { try PartitionSnapshotReader(self) }
}
