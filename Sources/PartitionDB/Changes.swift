/// The exact changes of one commit: the page images it wrote. Applying the change sets of a
/// partition in LSN order to a copy of it (same file id, restored from a backup) reproduces the
/// partition page for page. Log shipping sends these. Layout on the wire: a later issue.
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
    public var fileID: [UInt8]
    /// The partition's page count after the commit.
    public var pageCount: UInt32
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
    public func changes(after lsn: LSN) throws -> [ChangeSet] {
        try exclusively {
            let pager = self.pager
            let latest = pager.latestSnapshot.header.lastLSN
            guard lsn < latest else { return [] }
            let commits = pager.retainedCommits()
            // A commit that wrote pages straight into the partition file (`Options.directWritePages`)
            // has no complete change set: the stream restarts after it, as after a log restart.
            let direct = pager.stateLockedNewestDirectCommit()
            let complete = commits.drop { commit in direct.map { commit.lsn <= $0 } ?? false }
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
            let current = pager.latestSnapshot.header
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
            try pager.commit(
                pages.map { ($0.key, $0.value) }, header: header, durability: durability ?? options.durability)
            checkpointIfNeeded(pager)
        }
    }
}

extension Pager {
    func retainedCommits() -> [(lsn: LSN, endFrame: Int)] {
        stateLockedCommits()
    }
}
