/// The pages of a partition as one transaction sees them.
class PageContext {
    let pager: Pager
    let snapshot: Pager.Snapshot
    /// The header as of this transaction; a write transaction changes its copy.
    var header: PartitionHeader
    var path: String { pager.mainFile.path }

    init(pager: Pager, snapshot: Pager.Snapshot) {
        self.pager = pager
        self.snapshot = snapshot
        self.header = snapshot.header
    }

    func page(_ number: PageNumber) throws -> Page {
        guard number.rawValue < header.pageCount, number != .header else {
            throw PartitionDBError.corruptPage(
                file: path, page: number.rawValue, reason: "a link points to page \(number), outside the tree area")
        }
        return try pager.page(number, in: snapshot)
    }

    /// A page that must be a leaf or a branch.
    func node(_ number: PageNumber) throws -> Page {
        try checkedNode(self.page(number), number)
    }

    func checkedNode(_ page: Page, _ number: PageNumber) throws -> Page {
        // The header and the first slots together: the search that follows reads the slots, and
        // asking for all three cache lines at once overlaps their misses instead of queuing them.
        page.prefetchHeaderAndSlots()
        guard page.kind == PageKind.leaf.rawValue || page.kind == PageKind.branch.rawValue else {
            throw PartitionDBError.corruptPage(
                file: path, page: number.rawValue, reason: "expected a leaf or branch page")
        }
        return page
    }
}

/// The pages of a write transaction: its own changed copies over the snapshot it started from.
///
/// The properties every insert and removal touches are `@exclusivity(unchecked)`: the runtime's
/// dynamic exclusivity checks on them (a thread-local access set, twice per B+tree level) cost
/// about a tenth of a bulk load. No check guards them now, so the rule holds by construction: a
/// write context belongs to one transaction on one thread (the partition's writer lock), and no
/// access to these properties overlaps another. `modify` holds `dirty` only while its closure
/// changes the one page it is given; no closure passed to it reaches back into the context.
final class WriteContext: PageContext {
    @exclusivity(unchecked) private(set) var dirty: ChangedPages
    /// An emptied path array kept for the next descent (`BTree.locate`).
    @exclusivity(unchecked) private var sparePath: BTree.Path = []
    /// Grows with every change, so cursors know to find their place again.
    @exclusivity(unchecked) private(set) var changeCount = 0
    /// One bit per page of the snapshot, set when the page may be in `dirty`, made once `dirty`
    /// holds `summaryThreshold` pages: a descent through pages the transaction has not changed
    /// (most levels of a large removal) then skips the map's probe, a cache miss of its own in
    /// a map of tens of thousands of pages. Bits are never cleared (a stale bit costs a probe),
    /// and pages beyond the snapshot's end are always looked up.
    @exclusivity(unchecked) private var mayBeChanged: [UInt64] = []
    private static let summaryThreshold = 1024

    override init(pager: Pager, snapshot: Pager.Snapshot) {
        dirty = ChangedPages(firstAdded: snapshot.header.pageCount)
        super.init(pager: pager, snapshot: snapshot)
    }

    override func page(_ number: PageNumber) throws -> Page {
        if !isSurelyUnchanged(number), let page = dirty[number.rawValue] { return page }
        return try super.page(number)
    }

    @inline(__always) private func isSurelyUnchanged(_ number: PageNumber) -> Bool {
        let bit = Int(number.rawValue)
        guard bit >> 6 < mayBeChanged.count else { return false }
        return mayBeChanged[bit >> 6] & (1 << UInt64(bit & 63)) == 0
    }

    /// The one way pages enter `dirty`, so that `mayBeChanged` covers each.
    private func store(_ number: PageNumber, _ page: Page) {
        dirty[number.rawValue] = page
        if !mayBeChanged.isEmpty {
            markMaybeChanged(number)
        } else if dirty.count >= WriteContext.summaryThreshold {
            mayBeChanged = [UInt64](repeating: 0, count: (Int(snapshot.header.pageCount) + 63) / 64)
            for key in dirty.allNumbers { markMaybeChanged(PageNumber(key)) }
        }
    }

    private func markMaybeChanged(_ number: PageNumber) {
        let bit = Int(number.rawValue)
        if bit >> 6 < mayBeChanged.count { mayBeChanged[bit >> 6] |= 1 << UInt64(bit & 63) }
    }

    /// An empty path array with room for a descent, reused from the last one.
    func takeSparePath() -> BTree.Path {
        var path: BTree.Path = []
        swap(&path, &sparePath)
        path.removeAll(keepingCapacity: true)
        if path.capacity == 0 { path.reserveCapacity(16) }
        return path
    }

    /// Keeps `path`'s storage for the next descent.
    func recyclePath(_ path: consuming BTree.Path) {
        sparePath = path
    }

    /// Node `number` for reading only, without copying or retaining a page the transaction
    /// changed: a borrowed view (`Page.borrowed`), valid only until the transaction's next change.
    /// Descents use it, so a level costs no reference count (a cache miss of its own).
    func borrowedNode(_ number: PageNumber) throws -> Page {
        if !isSurelyUnchanged(number), let view = dirty.borrowedPage(number.rawValue) {
            return try checkedNode(view, number)
        }
        // Not changed by this transaction: the snapshot's page (without looking in `dirty` again).
        return try checkedNode(super.page(number), number)
    }

    /// Changes page `number` in place, copying it into the transaction first.
    func modify<T>(_ number: PageNumber, _ body: (inout Page) throws -> T) throws -> T {
        changeCount += 1
        if !isSurelyUnchanged(number), let result = try dirty.modify(number.rawValue, body) { return result }
        store(number, try super.page(number))
        return try dirty.modify(number.rawValue, body)!
    }

    func put(_ number: PageNumber, _ page: Page) {
        precondition(number != .header, "the header page is written from `header`")
        changeCount += 1
        store(number, page)
    }

    /// Gives changed page `number` the number `target`, which holds no page of this transaction.
    func renumber(_ number: PageNumber, to target: PageNumber) {
        precondition(dirty[target.rawValue] == nil, "renumbering onto a changed page")
        guard let page = dirty[number.rawValue] else { preconditionFailure("renumbering an unchanged page") }
        dirty[number.rawValue] = nil
        store(target, page)
        changeCount += 1
    }

    /// Drops this transaction's copy of page `number`, if any.
    func discard(_ number: PageNumber) {
        changeCount += 1
        dirty[number.rawValue] = nil
    }

    /// The kind of page `number` if this transaction changed it, else nil.
    func changedKind(_ number: PageNumber) -> UInt8? {
        isSurelyUnchanged(number) ? nil : dirty.borrowedPage(number.rawValue)?.kind
    }

    /// How many pages of its snapshot (numbers below the snapshot's page count) this
    /// transaction changed. O(1): no list of the changed pages is built.
    var changedSnapshotPageCount: Int { dirty.existingCount }

    var pageSize: Int { header.pageSize }

    /// All changed pages, the header included, handed over: the context lets go of them, so
    /// the commit seals each page in place instead of copying it (a bulk load's pages would
    /// otherwise be in memory twice).
    func takePagesForCommit() -> [(PageNumber, Page)] {
        var pages = dirty.takePages()
        mayBeChanged = []
        pages.append((.header, header.encode()))
        return pages
    }
}
