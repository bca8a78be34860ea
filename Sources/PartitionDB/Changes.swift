/// The exact changes of one commit: the page images it wrote, sealed, as they are on disk.
/// Applying the change sets of a partition in LSN order to a copy of it (same file id, restored
/// from a backup) reproduces the partition page for page. Log shipping sends these, from
/// `Partition.setCommitObserver` or `Partition.changes(after:)`. Layout on the wire: not defined
/// here (spec/file-format.md#change-sets).
public struct ChangeSet: Sendable, Equatable {
    public struct PageImage: Sendable, Equatable {
        public var number: UInt32
        public var bytes: [UInt8]

        public init(number: UInt32, bytes: [UInt8]) {
            self.number = number
            self.bytes = bytes
        }
    }

    public var lsn: LSN
    /// The file id of the partition file the commit went to (`Partition.fileID`).
    public var fileID: [UInt8]
    /// The partition's page count after the commit.
    public var pageCount: UInt32
    /// Every page the commit wrote, in page order, page 0 (the header) first.
    public var pages: [PageImage]

    public init(lsn: LSN, fileID: [UInt8], pageCount: UInt32, pages: [PageImage]) {
        self.lsn = lsn
        self.fileID = fileID
        self.pageCount = pageCount
        self.pages = pages
    }
}

extension Partition {
    /// The change sets of every commit after `lsn`, in order, while the log still holds them (it
    /// holds commits since its last restart). Throws `changesNotRetained` otherwise.
    ///
    /// A direct commit's new pages are not in the log: they are read back from the partition
    /// file, which holds them until a checkpoint copies a later commit's frame of one of them over
    /// it; from then on that commit's change set is incomplete and the stream restarts after it,
    /// as after a log restart. `setCommitObserver` has no such limit.
    public func changes(after lsn: LSN) throws -> [ChangeSet] {
        try exclusively {
            let pager = self.pager
            let latest = pager.latestSnapshot.header.lastLSN
            guard lsn < latest else { return [] }
            let commits = pager.retainedCommits()
            // The direct commits the stream needs, and the newest of them whose pages have been
            // overwritten in the file (the stream cannot start before its successor).
            let direct = pager.stateLockedDirectCommits().filter { $0.lsn > lsn }
            let directRuns = Dictionary(direct.map { ($0.lsn, $0.runs) }, uniquingKeysWith: { first, _ in first })
            let incomplete = direct.last { pager.stateLockedIsAnyBackfilled($0.runs) }
            let complete = commits.drop { commit in incomplete.map { commit.lsn <= $0.lsn } ?? false }
            guard let first = complete.first, first.lsn <= lsn.next else {
                throw PartitionDBError.changesNotRetained(
                    partition: name, requestedAfter: lsn.rawValue,
                    oldestRetained: complete.first?.lsn.rawValue ?? latest.rawValue)
            }
            var result: [ChangeSet] = []
            var start = 0
            for commit in commits {
                defer { start = commit.endFrame }
                guard commit.lsn > lsn else { continue }
                var set = ChangeSet(
                    lsn: commit.lsn, fileID: pager.latestSnapshot.header.fileID, pageCount: 0, pages: [])
                for frame in start..<commit.endFrame {
                    let header = try pager.wal.readFrameHeader(frame)
                    let page = try pager.wal.readFrame(frame)
                    try Pager.verify(page, number: header.page, file: pager.wal.file.path)
                    set.pages.append(.init(number: header.page.rawValue, bytes: page.bytes))
                    if header.isCommit { set.pageCount = header.commitPageCount }
                }
                // The direct pages all lie above the logged ones (beyond the committed end).
                for run in directRuns[commit.lsn] ?? [] {
                    set.pages += try pager.readDirectPages(run)
                }
                result.append(set)
            }
            return result
        }
    }

    /// Applies the next change set of the partition this one is a copy of. The copy must be at
    /// exactly `changes.lsn - 1`, with the same file id, name and region.
    public func apply(_ changes: ChangeSet, durability: Durability? = nil) throws {
        try exclusively {
            let pager = self.pager
            let (pages, header) = try checked(changes, following: pager.latestSnapshot.header)
            try commitObserved(
                pages.map { ($0.key, $0.value) }, header: header, durability: durability ?? options.durability)
            checkpointIfNeeded(pager)
        }
    }

    /// Applies consecutive change sets from this copy's LSN as one commit: each is checked
    /// against the header the one before it would leave, then the newest image of every page
    /// they wrote (below the last one's page count) is committed with the last one's header,
    /// once. A replica applies each batch of its stream this way (spec/replication.md#batches):
    /// whole or not at all, each page verified once, and the pages that consecutive commits all
    /// rewrite (the header, a leaf filling up) written and synced once, not once per commit. The
    /// copy passes from the state at its LSN to the state at the batch's last LSN, both committed
    /// states of the primary; its log holds one commit for the batch, with that LSN
    /// (spec/file-format.md#change-sets). An empty batch does nothing.
    package func apply(batch: [ChangeSet], durability: Durability? = nil) throws {
        guard !batch.isEmpty else { return }
        try exclusively {
            let pager = self.pager
            var current = pager.latestSnapshot.header
            var newest: [PageNumber: Page] = [:]
            for changes in batch {
                let (pages, header) = try checked(changes, following: current)
                newest.merge(pages) { _, later in later }
                current = header
            }
            // A page beyond the final page count belongs to no state of the batch's last commit.
            let pages = newest.filter { $0.key.rawValue < current.pageCount }.map { ($0.key, $0.value) }
            try commitObserved(pages, header: current, durability: durability ?? options.durability)
            checkpointIfNeeded(pager)
        }
    }

    /// The pages and the new header of `changes`, checked to follow a copy whose header is
    /// `current`: same file id, the next LSN, whole pages within the page count, each page's
    /// checksum, and a header that agrees.
    private func checked(_ changes: ChangeSet, following current: PartitionHeader) throws -> (
        pages: [PageNumber: Page], header: PartitionHeader
    ) {
        func mismatch(_ reason: String) -> PartitionDBError {
            .changeStreamMismatch(partition: name, reason: reason)
        }
        guard changes.fileID == current.fileID else { throw mismatch("it comes from another partition file") }
        guard changes.lsn == current.lastLSN.next else {
            throw mismatch("it holds LSN \(changes.lsn), this copy is at \(current.lastLSN)")
        }
        var pages: [PageNumber: Page] = [:]
        for image in changes.pages {
            guard image.bytes.count == current.pageSize, image.number < changes.pageCount else {
                throw mismatch("page \(image.number) has the wrong size or lies beyond the page count")
            }
            let page = Page(bytes: image.bytes)
            do {
                try Pager.verify(page, number: PageNumber(image.number), file: "change set \(changes.lsn)")
            } catch {
                throw mismatch("page \(image.number) fails its checksum")
            }
            pages[PageNumber(image.number)] = page
        }
        guard let headerPage = pages[.header] else { throw mismatch("it has no header page") }
        let header = try PartitionHeader.decode(headerPage, file: "change set \(changes.lsn)")
        guard header.region == region, header.name == current.name, header.fileID == current.fileID,
            header.lastLSN == changes.lsn, header.pageCount == changes.pageCount
        else { throw mismatch("its header disagrees with this copy") }
        guard header.epoch >= current.epoch else {
            throw mismatch("it is of epoch \(header.epoch), this copy is at epoch \(current.epoch)")
        }
        return (pages, header)
    }
}

extension Pager {
    func retainedCommits() -> [(lsn: LSN, endFrame: Int)] {
        stateLockedCommits()
    }

    /// The pages of `run`, written by a direct commit, read back from the partition file (a
    /// megabyte at a time) and verified. Called with the writer lock held, so no checkpoint
    /// writes them meanwhile.
    func readDirectPages(_ run: Range<UInt32>) throws -> [ChangeSet.PageImage] {
        var images: [ChangeSet.PageImage] = []
        images.reserveCapacity(run.count)
        let batch = UInt32(max(1, (1 << 20) / pageSize))
        for start in stride(from: run.lowerBound, to: run.upperBound, by: Int(batch)) {
            let count = Int(min(batch, run.upperBound - start))
            let bytes = try mainFile.read(at: UInt64(start) * UInt64(pageSize), count: count * pageSize)
            for i in 0..<count {
                let number = start + UInt32(i)
                let image = Array(bytes[(i * pageSize)..<((i + 1) * pageSize)])
                try Pager.verify(Page(bytes: image), number: PageNumber(number), file: mainFile.path)
                images.append(.init(number: number, bytes: image))
            }
        }
        return images
    }
}
