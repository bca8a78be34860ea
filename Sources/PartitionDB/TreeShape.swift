/// One level of a table's B+tree, for `pdb shell`'s `tree`: how many pages, cells and bytes.
public struct TreeLevel: Equatable, Sendable {
    /// 0 for the root.
    public var depth: Int
    public var pages: Int
    public var cells: Int
    /// Bytes the nodes' cells and slots use, and the bytes the level's pages could hold.
    public var usedBytes: Int
    public var capacityBytes: Int
    public var leaves: Bool

    /// The level's fill factor, 0 to 1.
    public var fill: Double { capacityBytes == 0 ? 0 : Double(usedBytes) / Double(capacityBytes) }
}

extension ReadTransaction {
    /// The levels of `table`'s B+tree, root first, read breadth first. A tree deeper than 64
    /// levels, or one that reaches more pages than the file has (a loop), is damage:
    /// `corruptPage`.
    public func treeLevels(_ table: String) throws -> [TreeLevel] {
        checkOpen()
        var level = [try requireTable(table).root]
        var levels: [TreeLevel] = []
        var visited = 0
        while !level.isEmpty {
            visited += level.count
            guard visited <= Int(context.header.pageCount) else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: level[0].rawValue,
                    reason: "the tree of \(table) reaches more pages than the file has")
            }
            guard levels.count < 64 else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: level[0].rawValue, reason: "the tree of \(table) is deeper than 64 levels"
                )
            }
            var shape = TreeLevel(
                depth: levels.count, pages: 0, cells: 0, usedBytes: 0, capacityBytes: 0, leaves: false)
            var next: [PageNumber] = []
            for number in level {
                let page = try context.node(number)
                shape.pages += 1
                shape.cells += page.cellCount
                shape.usedBytes += page.usedBytes
                shape.capacityBytes += page.size - NodeLayout.headerSize
                if page.isLeaf {
                    shape.leaves = true
                } else {
                    for index in 0...page.cellCount { next.append(page.branchChild(index)) }
                }
            }
            guard !shape.leaves || next.isEmpty else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: level[0].rawValue, reason: "the tree of \(table) has leaves at two depths"
                )
            }
            levels.append(shape)
            level = next
        }
        return levels
    }
}
