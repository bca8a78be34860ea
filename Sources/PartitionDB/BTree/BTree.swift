/// B+tree algorithms over leaf and branch pages. A tree is named by its root page, which never
/// moves: a root split moves the root's cells into two new children, and a root with a single
/// child takes that child's cells. So catalog entries never change when a tree grows or shrinks.
enum BTree {
    /// What a replaced or deleted record held, so the caller can free its overflow chain and fix
    /// the owner index.
    struct RemovedRecord {
        var owner: [UInt8]
        var overflow: (first: PageNumber, length: Int)?
    }

    typealias Path = [(page: PageNumber, child: Int)]

    // MARK: Lookup

    /// The leaf that holds or would hold `key`, the index in it, and whether the key is there.
    static func find(_ key: [UInt8], root: PageNumber, in context: PageContext) throws -> (
        leaf: Page, number: PageNumber, index: Int, found: Bool
    ) {
        try key.withUnsafeBytes { try find($0, root: root, in: context) }
    }

    static func find(_ key: UnsafeRawBufferPointer, root: PageNumber, in context: PageContext) throws -> (
        leaf: Page, number: PageNumber, index: Int, found: Bool
    ) {
        var number = root
        var page = try context.node(number)
        var depth = 0
        while !page.isLeaf {
            number = page.branchChild(page.childIndex(for: key))
            page = try context.node(number)
            depth += 1
            guard depth < 64 else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "tree deeper than 64")
            }
        }
        let (index, found) = page.leafSearch(key)
        return (page, number, index, found)
    }

    /// The path to the leaf for `key`, and the leaf as a borrowed view (see
    /// `WriteContext.borrowedNode`): the caller must not keep it across a change.
    private static func descend(_ key: UnsafeRawBufferPointer, root: PageNumber, in context: WriteContext) throws -> (
        Path, PageNumber, Page
    ) {
        // The context's spare array: no allocation (and no generic-metadata lookup) per descent.
        var path = context.takeSparePath()
        var number = root
        var page = try context.borrowedNode(number)
        while !page.isLeaf {
            let child = page.childIndex(for: key)
            path.append((number, child))
            number = page.branchChild(child)
            page = try context.borrowedNode(number)
            guard path.count < 64 else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "tree deeper than 64")
            }
        }
        return (path, number, page)
    }

    /// The path to the leaf for `key`, the leaf, the index for `key` in it, and what the leaf holds
    /// there when the key is present. The leaf's page value does not outlive this call: a copy
    /// kept while the caller modifies the leaf would make every change copy the whole page.
    /// With `insertingBytes`, the leaf's free space for a cell of that size starts loading into
    /// the CPU's caches while the search runs.
    @inline(never)
    private static func locate(
        _ key: UnsafeRawBufferPointer, root: PageNumber, in context: WriteContext, insertingBytes: Int = 0
    ) throws -> (Path, PageNumber, Int, RemovedRecord?) {
        let (path, number, leaf) = try descend(key, root: root, in: context)
        if insertingBytes > 0 { leaf.prefetchInsertionArea(count: insertingBytes) }
        let (index, found) = leaf.leafSearch(key)
        return (path, number, index, found ? removedRecord(leaf, index) : nil)
    }

    static func removedRecord(_ leaf: Page, _ index: Int) -> RemovedRecord {
        var removed = RemovedRecord(owner: leaf.leafOwner(index), overflow: nil)
        if case .overflow(let first, let length) = leaf.leafValue(index) { removed.overflow = (first, length) }
        return removed
    }

    // MARK: Insert

    /// Inserts `cell` (a leaf cell for `key`), replacing an existing record with the same key.
    @discardableResult
    static func insert(_ key: [UInt8], cell: [UInt8], root: PageNumber, in context: WriteContext) throws
        -> RemovedRecord?
    {
        try key.withUnsafeBytes { key in
            try cell.withUnsafeBytes { cell in try insert(key, cell: cell, root: root, in: context) }
        }
    }

    @discardableResult
    static func insert(
        _ key: UnsafeRawBufferPointer, cell: UnsafeRawBufferPointer, root: PageNumber, in context: WriteContext
    ) throws -> RemovedRecord? {
        let (path, number, index, removed) = try locate(key, root: root, in: context, insertingBytes: cell.count)
        defer { context.recyclePath(path) }
        if removed != nil {
            try context.modify(number) { $0.removeCell(at: index) }
        }
        let fits = try context.modify(number) { $0.insertCell(cell, at: index) }
        if !fits {
            try splitLeaf(number, inserting: cell, at: index, path: path, in: context)
        }
        return removed
    }

    /// Splits the full leaf `number` while inserting `cell` at `index`: both halves are built by
    /// copying each cell once, straight from the old page (or `cell`), with no array per cell.
    private static func splitLeaf(
        _ number: PageNumber, inserting cell: UnsafeRawBufferPointer, at index: Int, path: Path,
        in context: WriteContext
    ) throws {
        let page = try context.page(number)
        let count = page.cellCount + 1
        let (left, right, separator) = page.withUnsafeBytes { bytes -> (Page, Page, [UInt8]) in
            // Cell j of the leaf as it would be with `cell` inserted.
            func cellAt(_ j: Int) -> UnsafeRawBufferPointer {
                if j == index { return cell }
                let offset = page.cellOffset(j < index ? j : j - 1)
                return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + page.leafCellSize(at: offset)])
            }
            let sizes = (0..<count).map { cellAt($0).count + NodeLayout.slotSize }
            let middle = splitPoint(
                sizes: sizes, usable: context.pageSize - NodeLayout.headerSize, dropsMiddle: false,
                appending: index == count - 1)
            let kind = PageKind.leaf.rawValue
            let left = Page.node(kind: kind, size: context.pageSize, count: middle, link: .none) { $1(cellAt($0)) }
            let right = Page.node(kind: kind, size: context.pageSize, count: count - middle, link: .none) {
                $1(cellAt(middle + $0))
            }
            return (left, right, Array(NodeLayout.key(ofCell: cellAt(middle), isLeaf: true)))
        }
        try install(number, left: left, right: right, separator: separator, path: path, in: context)
    }

    /// Splits the node `number` whose new contents `cells` do not fit one page, and links the
    /// new node into the parent (splitting upwards as needed).
    private static func split(
        _ number: PageNumber, cells: [[UInt8]], link: PageNumber, path: Path, in context: WriteContext, appending: Bool
    ) throws {
        let page = try context.page(number)
        let isLeaf = page.isLeaf
        let usable = context.pageSize - NodeLayout.headerSize
        let sizes = cells.map { $0.count + NodeLayout.slotSize }
        let middle = splitPoint(sizes: sizes, usable: usable, dropsMiddle: !isLeaf, appending: appending)

        let leftCells: [[UInt8]]
        let rightCells: [[UInt8]]
        let separator: [UInt8]
        let leftLink: PageNumber
        let rightLink: PageNumber
        if isLeaf {
            leftCells = Array(cells[..<middle])
            rightCells = Array(cells[middle...])
            separator = keyOfCell(rightCells[0], isLeaf: true)
            leftLink = .none
            rightLink = .none
        } else {
            leftCells = Array(cells[..<middle])
            rightCells = Array(cells[(middle + 1)...])
            separator = keyOfCell(cells[middle], isLeaf: false)
            leftLink = childOfBranchCell(cells[middle])
            rightLink = link
        }
        let kind: PageKind = isLeaf ? .leaf : .branch
        try install(
            number, left: Page.node(kind: kind, size: context.pageSize, cells: leftCells, link: leftLink),
            right: Page.node(kind: kind, size: context.pageSize, cells: rightCells, link: rightLink),
            separator: separator, path: path, in: context)
    }

    /// Puts the two halves of the split node `number` in place and links the right one into the
    /// parent under `separator` (splitting the parent in turn when it is full). The root stays
    /// where it is: its halves move to two new pages and it becomes their parent.
    private static func install(
        _ number: PageNumber, left leftHalf: Page, right rightHalf: Page, separator: [UInt8], path: Path,
        in context: WriteContext
    ) throws {
        if path.isEmpty {
            let left = try context.allocate()
            let right = try context.allocate()
            context.put(left, leftHalf)
            context.put(right, rightHalf)
            let rootCells = [Page.branchCell(child: left, key: separator)]
            context.put(number, Page.node(kind: .branch, size: context.pageSize, cells: rootCells, link: right))
            return
        }

        context.put(number, leftHalf)
        let right = try context.allocate()
        context.put(right, rightHalf)

        var parentPath = path
        let (parent, child) = parentPath.removeLast()
        let cell = Page.branchCell(child: number, key: separator)
        let fits = try context.modify(parent) { page -> Bool in
            guard page.insertCell(cell, at: child) else { return false }
            page.setBranchChild(child + 1, right)
            return true
        }
        if !fits {
            let parentPage = try context.page(parent)
            var parentCells = parentPage.allCells
            parentCells.insert(cell, at: child)
            // The entry after the new cell pointed at `number`; it now points at the new right half.
            var parentLink = PageNumber(parentPage.u32(NodeLayout.linkOffset))
            if child + 1 < parentCells.count {
                parentCells[child + 1] = withChild(parentCells[child + 1], right)
            } else {
                parentLink = right
            }
            try split(
                parent, cells: parentCells, link: parentLink, path: parentPath, in: context,
                appending: child == parentCells.count - 1)
        }
    }

    /// Where to cut `sizes` (cell sizes with their slots) into two nodes that each fit `usable`.
    /// Sequential appends leave the left node full, so loading keys in order packs pages tightly.
    static func splitPoint(sizes: [Int], usable: Int, dropsMiddle: Bool, appending: Bool) -> Int {
        let total = sizes.reduce(0, +)
        precondition(sizes.count >= 2, "splitting fewer than two cells")
        if appending {
            var left = total - sizes[sizes.count - 1]
            var cut = sizes.count - 1
            if dropsMiddle {
                // The last cell before the cut moves up; keep at least one cell on the right.
                cut = sizes.count - 2
                left -= sizes[cut]
            }
            if left <= usable && cut >= 1 { return cut }
        }
        var best = 1
        var bestWorst = Int.max
        var left = 0
        for cut in 1..<sizes.count {
            left += sizes[cut - 1]
            let right = total - left - (dropsMiddle ? sizes[cut] : 0)
            if dropsMiddle && cut == sizes.count - 1 { break }
            let worst = max(left, right)
            if left <= usable && right <= usable && worst < bestWorst {
                best = cut
                bestWorst = worst
            }
        }
        precondition(bestWorst != Int.max, "no split point fits: cells larger than a third of a page")
        return best
    }

    static func keyOfCell(_ cell: [UInt8], isLeaf: Bool) -> [UInt8] {
        cell.withUnsafeBytes { Array(NodeLayout.key(ofCell: $0, isLeaf: isLeaf)) }
    }

    static func childOfBranchCell(_ cell: [UInt8]) -> PageNumber {
        PageNumber(UInt32(cell[0]) | UInt32(cell[1]) << 8 | UInt32(cell[2]) << 16 | UInt32(cell[3]) << 24)
    }

    static func withChild(_ cell: [UInt8], _ child: PageNumber) -> [UInt8] {
        var cell = cell
        withUnsafeBytes(of: child.rawValue.littleEndian) { for i in 0..<4 { cell[i] = $0[i] } }
        return cell
    }

    // MARK: Delete

    /// Removes `key`; returns what it held, or nil when the key was absent.
    static func delete(_ key: [UInt8], root: PageNumber, in context: WriteContext) throws -> RemovedRecord? {
        try key.withUnsafeBytes { try delete($0, root: root, in: context) }
    }

    static func delete(_ key: UnsafeRawBufferPointer, root: PageNumber, in context: WriteContext) throws
        -> RemovedRecord?
    {
        let (path, number, index, found) = try locate(key, root: root, in: context)
        defer { context.recyclePath(path) }
        guard let removed = found else { return nil }
        try context.modify(number) { $0.removeCell(at: index) }
        try rebalance(number, path: path, root: root, in: context)
        return removed
    }

    /// Merges an underfull node with a sibling when both fit one page, then looks at the parent.
    private static func rebalance(_ number: PageNumber, path: Path, root: PageNumber, in context: WriteContext) throws {
        var page = try context.page(number)
        if path.isEmpty {
            // A root branch left with a single child takes over that child's cells.
            while !page.isLeaf && page.cellCount == 0 {
                let child = page.branchChild(0)
                // A root that is its own only child (a link from disk) would loop here.
                guard child != number else {
                    throw PartitionDBError.corruptPage(
                        file: context.path, page: number.rawValue, reason: "a branch links to itself")
                }
                let childPage = try context.node(child)
                context.put(number, childPage)
                try context.free(child)
                page = childPage
            }
            return
        }
        let usable = context.pageSize - NodeLayout.headerSize
        guard page.usedBytes < usable / 4 else { return }
        var parentPath = path
        let (parent, child) = parentPath.removeLast()
        let parentPage = try context.page(parent)
        guard parentPage.cellCount > 0 else { return }
        let separatorIndex = child > 0 ? child - 1 : 0
        let left = parentPage.branchChild(separatorIndex)
        let right = parentPage.branchChild(separatorIndex + 1)
        let leftPage = try context.node(left)
        let rightPage = try context.node(right)
        guard leftPage.kind == rightPage.kind else {
            throw PartitionDBError.corruptPage(
                file: context.path, page: right.rawValue, reason: "siblings of different kinds")
        }
        var cells = leftPage.allCells
        var link = PageNumber.none
        var extra = 0
        if !leftPage.isLeaf {
            let separator = parentPage.branchKey(separatorIndex)
            cells.append(Page.branchCell(child: PageNumber(leftPage.u32(NodeLayout.linkOffset)), key: separator))
            extra = NodeLayout.branchCellHeader + separator.count + NodeLayout.slotSize
            link = PageNumber(rightPage.u32(NodeLayout.linkOffset))
        }
        guard leftPage.usedBytes + rightPage.usedBytes + extra <= usable else { return }
        cells.append(contentsOf: rightPage.allCells)
        // The headers' counts said the cells fit; a damaged page can say so falsely, and then
        // the cells themselves do not (a fuzzed file found it): a typed error, not a trap.
        let needed = cells.reduce(0) { $0 + $1.count } + cells.count * NodeLayout.slotSize
        guard needed <= usable else {
            throw PartitionDBError.corruptPage(
                file: context.path, page: left.rawValue,
                reason: "its cells and its sibling's take \(needed) bytes, more than their used-bytes counts say")
        }
        try context.modify(left) { $0.rebuild(cells: cells, link: link) }
        try context.free(right)
        try context.modify(parent) {
            $0.removeCell(at: separatorIndex)
            $0.setBranchChild(separatorIndex, left)
        }
        try rebalance(parent, path: parentPath, root: root, in: context)
    }

    // MARK: Whole trees

    /// Frees every page of the tree under `root` except the root, which becomes an empty leaf.
    static func clear(root: PageNumber, in context: WriteContext, freeRoot: Bool) throws {
        // Links come from disk: a page reached twice (a cycle or a shared subtree) would be freed
        // twice, and a cycle would recurse without end.
        var visited: Set<UInt32> = []
        func visit(_ number: PageNumber, depth: Int) throws {
            guard depth < 64 else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "tree deeper than 64")
            }
            guard visited.insert(number.rawValue).inserted else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "a tree links to page \(number) twice")
            }
            let page = try context.node(number)
            if page.isLeaf {
                for i in 0..<page.cellCount {
                    if case .overflow(let first, let length) = page.leafValue(i) {
                        try context.freeOverflow(first: first, length: length)
                    }
                }
            } else {
                for i in 0...page.cellCount { try visit(page.branchChild(i), depth: depth + 1) }
            }
            if number != root || freeRoot { try context.free(number) }
        }
        try visit(root, depth: 0)
        if !freeRoot { context.put(root, Page.emptyNode(kind: .leaf, size: context.pageSize)) }
    }
}
