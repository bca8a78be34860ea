/// Copy-on-write for large commits (spec/file-format.md#relocated-commits). A commit that
/// changes many existing nodes would write each of them twice: into the log, and again into the
/// partition file at the next checkpoint. Given new numbers beyond the committed end, the same
/// nodes become pages no snapshot can see, which a direct commit writes once, straight into
/// the partition file (LMDB writes every changed page this way). Their old numbers go to the
/// free list, where later commits reuse them through the log.
extension WriteContext {
    /// Moves every changed node below the committed end (the snapshot's page count) to a new
    /// page at the end of the file, and with it every branch on its path up to the root (their
    /// links change), then frees the old pages. Only when at least `threshold` changed pages lie
    /// below the committed end and they are at least 1/64 of the partition's pages (the walk
    /// reads every branch page of the trees, about one page in fanout, so its cost stays a
    /// fraction of the commit's), and only while the pages free before the commit plus those it
    /// moves would be at most half the file: new pages are never taken from the free list (a free
    /// page may still be read by an older snapshot, or have frames in the log), so the bound
    /// keeps repeated large commits from growing the file without end; past it they go through
    /// the log, whose commits reuse the free pages. Roots never move (`BTree`): they are changed
    /// in place and go through the log. Returns how many pages moved.
    @discardableResult
    func relocateChangedNodes(roots: [PageNumber], threshold: Int) throws -> Int {
        let committedEnd = snapshot.header.pageCount
        let changed = UInt64(changedSnapshotPageCount)
        let pages = UInt64(snapshot.header.pageCount)
        guard changed >= threshold, 64 * changed >= pages,
            2 * (UInt64(snapshot.header.freeCount) + changed) <= pages + changed
        else { return 0 }
        var relocation = Relocation(committedEnd: committedEnd)
        var seen = Set<PageNumber>()
        for root in roots where seen.insert(root).inserted {
            // Every leaf of a B+tree is at the same depth: only branches are read.
            var height = 0
            var page = try node(root)
            while !page.isLeaf {
                height += 1
                guard height < 64 else {
                    throw PartitionDBError.corruptPage(file: path, page: root.rawValue, reason: "tree deeper than 64")
                }
                page = try node(page.branchChild(0))
            }
            _ = try relocation.visit(root, height: height, isRoot: true, in: self)
        }
        // Freed only now: a freed page can become a free-list trunk, so it must be unlinked first.
        for number in relocation.moved { try free(number) }
        return relocation.moved.count
    }
}

private struct Relocation {
    let committedEnd: UInt32
    var moved: [PageNumber] = []

    /// Relocates the subtree under `number` (`height` levels of branches above its leaves).
    /// Returns the node's new number when it moved, so the parent can relink it.
    mutating func visit(_ number: PageNumber, height: Int, isRoot: Bool, in context: WriteContext) throws
        -> PageNumber?
    {
        if height > 0 {
            // Read before any change: a copy alive during `modify` would be copied again.
            let children: [PageNumber] = try {
                let page = try context.node(number)
                guard !page.isLeaf else {
                    throw PartitionDBError.corruptPage(
                        file: context.path, page: number.rawValue, reason: "a leaf above the leaf level")
                }
                return (0...page.cellCount).map { page.branchChild($0) }
            }()
            var relinked: [(index: Int, child: PageNumber)] = []
            for (index, child) in children.enumerated() {
                if let moved = try visit(child, height: height - 1, isRoot: false, in: context) {
                    relinked.append((index, moved))
                }
            }
            if !relinked.isEmpty {
                try context.modify(number) { page in
                    for (index, child) in relinked { page.setBranchChild(index, child) }
                }
            }
        }
        guard !isRoot, number.rawValue < committedEnd, let kind = context.changedKind(number) else { return nil }
        guard kind == (height == 0 ? PageKind.leaf : PageKind.branch).rawValue else {
            throw PartitionDBError.corruptPage(
                file: context.path, page: number.rawValue, reason: "a node of the wrong kind for its depth")
        }
        precondition(context.header.pageCount < UInt32.max, "partition is full: 2^32 pages")
        let target = PageNumber(context.header.pageCount)
        context.header.pageCount += 1
        context.renumber(number, to: target)
        moved.append(number)
        return target
    }
}
