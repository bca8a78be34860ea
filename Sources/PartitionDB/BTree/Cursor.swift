/// A position in a tree: the path of pages from the root down to a leaf cell.
struct TreeCursor {
    private(set) var stack: [(number: PageNumber, page: Page, index: Int)] = []
    let root: PageNumber
    /// Whether the cursor is on a leaf cell, and the leaf's cell count: kept up to date by every
    /// move, so the hot calls (`isValid`, `next` within a leaf) need not look at the stack's pages.
    private(set) var isValid = false
    private var leafCount = 0

    init(root: PageNumber) { self.root = root }

    /// Recomputes `isValid` and `leafCount` after a move.
    private mutating func settle() {
        guard let top = stack.last, top.page.isLeaf else {
            isValid = false
            return
        }
        leafCount = top.page.cellCount
        isValid = top.index >= 0 && top.index < leafCount
    }

    var leaf: Page { stack[stack.count - 1].page }
    var index: Int { stack[stack.count - 1].index }

    /// Positions at the first key >= `key`.
    mutating func seek(_ key: [UInt8], in context: PageContext) throws {
        try key.withUnsafeBytes { try seek($0, in: context) }
    }

    mutating func seek(_ key: UnsafeRawBufferPointer, in context: PageContext) throws {
        stack.removeAll(keepingCapacity: true)
        var number = root
        var page = try context.node(number)
        while !page.isLeaf {
            let child = page.childIndex(for: key)
            stack.append((number, page, child))
            number = page.branchChild(child)
            page = try context.node(number)
            try checkDepth(number, context)
        }
        let (index, _) = page.leafSearch(key)
        stack.append((number, page, index))
        settle()
        if index >= page.cellCount { try next(in: context) }
    }

    mutating func first(in context: PageContext) throws {
        stack.removeAll(keepingCapacity: true)
        try descend(from: root, toFirst: true, in: context)
        settle()
        if !isValid { try next(in: context) }
    }

    mutating func last(in context: PageContext) throws {
        stack.removeAll(keepingCapacity: true)
        try descend(from: root, toFirst: false, in: context)
        settle()
        if !isValid { try previous(in: context) }
    }

    private mutating func descend(from start: PageNumber, toFirst: Bool, in context: PageContext) throws {
        var number = start
        var page = try context.node(number)
        while !page.isLeaf {
            let child = toFirst ? 0 : page.cellCount
            stack.append((number, page, child))
            number = page.branchChild(child)
            page = try context.node(number)
            try checkDepth(number, context)
        }
        stack.append((number, page, toFirst ? 0 : page.cellCount - 1))
    }

    private func checkDepth(_ number: PageNumber, _ context: PageContext) throws {
        guard stack.count < 64 else {
            throw PartitionDBError.corruptPage(file: context.path, page: number.rawValue, reason: "tree deeper than 64")
        }
    }

    /// Moves to the next cell; leaves the cursor invalid past the end.
    mutating func next(in context: PageContext) throws {
        guard !stack.isEmpty else { return }
        let top = stack.count - 1
        stack[top].index += 1
        // Within the same leaf (most moves), nothing else changes.
        if isValid && stack[top].index < leafCount { return }
        defer { settle() }
        while true {
            let top = stack[stack.count - 1]
            if top.page.isLeaf && top.index < top.page.cellCount { return }
            if !top.page.isLeaf && top.index <= top.page.cellCount {
                // Enter the next subtree at its first cell.
                try descend(from: top.page.branchChild(top.index), toFirst: true, in: context)
                continue
            }
            // This node is exhausted: go up and step right.
            stack.removeLast()
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].index += 1
        }
    }

    /// Moves to the previous cell; leaves the cursor invalid before the start.
    mutating func previous(in context: PageContext) throws {
        guard !stack.isEmpty else { return }
        defer { settle() }
        stack[stack.count - 1].index -= 1
        while true {
            let top = stack[stack.count - 1]
            if top.page.isLeaf && top.index >= 0 && top.index < top.page.cellCount { return }
            if !top.page.isLeaf && top.index >= 0 {
                try descend(from: top.page.branchChild(top.index), toFirst: false, in: context)
                continue
            }
            stack.removeLast()
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].index -= 1
        }
    }
}
