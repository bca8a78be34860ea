import CPartitionSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Leaf and branch pages: slotted pages with a header, an array of slots growing up from the
/// header, and cells growing down from the end of the page. A slot holds its cell's offset and
/// the first four bytes of its key (the key's head), so a binary search reads the slot array,
/// a few adjacent cache lines, and touches a cell only when two heads are equal.
/// Layout: spec/file-format.md#leaf-and-branch-pages
enum NodeLayout {
    static let headerSize = 20
    /// A slot: the cell's offset (u16), then the key's head (4 bytes).
    static let slotSize = 6
    static let slotHeadOffset = 2
    static let kindOffset = 4
    static let cellCountOffset = 6
    static let contentStartOffset = 8
    /// Branch pages: the rightmost child. Unused (0) in leaves.
    static let linkOffset = 12
    /// Bytes inside the content area that belong to removed cells.
    static let fragmentedOffset = 16

    static let leafCellHeader = 8
    static let branchCellHeader = 6

    /// The largest cell a node may hold, so that any full node plus one cell splits into two nodes.
    static func maxCell(pageSize: Int) -> Int { (pageSize - headerSize) / 3 - slotSize }

    @inline(__always) static func slot(_ index: Int) -> Int { headerSize + slotSize * index }

    /// The head of `key`: its first four bytes, zero-padded, read big-endian, so that heads
    /// order as the keys do whenever two heads differ (equal heads say nothing).
    @inline(__always) static func head(of key: UnsafeRawBufferPointer) -> UInt32 {
        if key.count >= 4 { return UInt32(bigEndian: key.loadUnaligned(as: UInt32.self)) }
        var head: UInt32 = 0
        for i in 0..<4 { head = head << 8 | UInt32(i < key.count ? key[i] : 0) }
        return head
    }

    /// The key of a leaf (`isLeaf`) or branch cell.
    @inline(__always) static func key(ofCell cell: UnsafeRawBufferPointer, isLeaf: Bool) -> UnsafeRawBufferPointer {
        let lengthAt = isLeaf ? 0 : 4
        let start = isLeaf ? leafCellHeader : branchCellHeader
        precondition(cell.count >= start, "cell shorter than its header")
        let length = Int(UInt16(littleEndian: cell.loadUnaligned(fromByteOffset: lengthAt, as: UInt16.self)))
        precondition(start + length <= cell.count, "key outside its cell")
        return UnsafeRawBufferPointer(rebasing: cell[start..<start + length])
    }
}

/// Where a leaf cell keeps its value.
enum LeafValue {
    case inline(offset: Int, length: Int)
    case overflow(firstPage: PageNumber, length: Int)

    var length: Int {
        switch self {
        case .inline(_, let length), .overflow(_, let length): return length
        }
    }
}

extension Page {
    static func emptyNode(kind: PageKind, size: Int) -> Page {
        var page = Page(size: size)
        page.setU8(NodeLayout.kindOffset, kind.rawValue)
        page.setU32(NodeLayout.contentStartOffset, UInt32(size))
        return page
    }

    var isLeaf: Bool { kind == PageKind.leaf.rawValue }
    var cellCount: Int { Int(u16(NodeLayout.cellCountOffset)) }
    var contentStart: Int { Int(u32(NodeLayout.contentStartOffset)) }
    var fragmentedBytes: Int { Int(u32(NodeLayout.fragmentedOffset)) }
    var contiguousFree: Int { contentStart - NodeLayout.slot(cellCount) }
    var totalFree: Int { contiguousFree + fragmentedBytes }
    var usedBytes: Int { size - NodeLayout.headerSize - totalFree }

    @inline(__always) func cellOffset(_ index: Int) -> Int {
        precondition(index >= 0 && index < cellCount, "cell index out of range")
        return Int(u16(NodeLayout.slot(index)))
    }

    /// The head stored in slot `index` (`NodeLayout.head(of:)` of the cell's key).
    func slotHead(_ index: Int) -> UInt32 {
        precondition(index >= 0 && index < cellCount, "cell index out of range")
        // The head's bytes are the key's, in key order: big-endian.
        return u32(NodeLayout.slot(index) + NodeLayout.slotHeadOffset).byteSwapped
    }

    /// Writes slot `index`: the offset of `cell`, stored at `offset`, and its key's head.
    private mutating func setSlot(_ index: Int, offset: Int, cell: UnsafeRawBufferPointer, isLeaf: Bool) {
        let slot = NodeLayout.slot(index)
        setU16(slot, UInt16(offset))
        let head = NodeLayout.head(of: NodeLayout.key(ofCell: cell, isLeaf: isLeaf))
        setU32(slot + NodeLayout.slotHeadOffset, head.byteSwapped)
    }

    // MARK: Leaf cells: keyLength u16, ownerLength u8, valueKind u8, valueLength u32, key, owner, value or page.

    @inline(__always) func leafKeyLength(at offset: Int) -> Int { Int(u16(offset)) }

    func leafCellSize(at offset: Int) -> Int {
        let key = Int(u16(offset))
        let owner = Int(u8(offset + 2))
        let isOverflow = u8(offset + 3) != 0
        let value = isOverflow ? 4 : Int(u32(offset + 4))
        return NodeLayout.leafCellHeader + key + owner + value
    }

    func leafKey(_ index: Int) -> [UInt8] {
        let offset = cellOffset(index)
        return copyBytes(at: offset + NodeLayout.leafCellHeader, count: Int(u16(offset)))
    }

    func leafOwner(_ index: Int) -> [UInt8] {
        let offset = cellOffset(index)
        let keyLength = Int(u16(offset))
        return copyBytes(at: offset + NodeLayout.leafCellHeader + keyLength, count: Int(u8(offset + 2)))
    }

    func leafValue(_ index: Int) -> LeafValue {
        let offset = cellOffset(index)
        let start = offset + NodeLayout.leafCellHeader + Int(u16(offset)) + Int(u8(offset + 2))
        let length = Int(u32(offset + 4))
        if u8(offset + 3) != 0 { return .overflow(firstPage: PageNumber(u32(start)), length: length) }
        return .inline(offset: start, length: length)
    }

    static func leafCell(key: [UInt8], owner: [UInt8], value: [UInt8]?, overflow: (PageNumber, Int)?) -> [UInt8] {
        key.withUnsafeBytes { key in
            owner.withUnsafeBytes { owner in
                (value ?? []).withUnsafeBytes { value in
                    withLeafCell(key: key, owner: owner, value: value, overflow: overflow) { Array($0) }
                }
            }
        }
    }

    /// Builds the leaf cell for `key` in temporary memory (on the stack when small) and lends it
    /// to `body`: the write path's cells need no heap allocation. With `overflow`, `value` is
    /// ignored and the cell points at the chain.
    @inline(__always)
    static func withLeafCell<T>(
        key: UnsafeRawBufferPointer, owner: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        overflow: (PageNumber, Int)?, _ body: (UnsafeRawBufferPointer) throws -> T
    ) rethrows -> T {
        let valueBytes = overflow == nil ? value.count : 4
        let size = NodeLayout.leafCellHeader + key.count + owner.count + valueBytes
        return try withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { cell in
            let length = UInt32(overflow?.1 ?? value.count)
            cell.storeBytes(of: UInt16(key.count).littleEndian, toByteOffset: 0, as: UInt16.self)
            cell.storeBytes(of: UInt8(owner.count), toByteOffset: 2, as: UInt8.self)
            cell.storeBytes(of: overflow == nil ? 0 : 1, toByteOffset: 3, as: UInt8.self)
            cell.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
            var offset = NodeLayout.leafCellHeader
            if key.count > 0 { (cell.baseAddress! + offset).copyMemory(from: key.baseAddress!, byteCount: key.count) }
            offset += key.count
            if owner.count > 0 {
                (cell.baseAddress! + offset).copyMemory(from: owner.baseAddress!, byteCount: owner.count)
            }
            offset += owner.count
            if let (page, _) = overflow {
                cell.storeBytes(of: page.rawValue.littleEndian, toByteOffset: offset, as: UInt32.self)
            } else if value.count > 0 {
                (cell.baseAddress! + offset).copyMemory(from: value.baseAddress!, byteCount: value.count)
            }
            return try body(UnsafeRawBufferPointer(cell))
        }
    }

    // MARK: Branch cells: child u32, keyLength u16, key. Child i holds keys below key i.

    func branchChild(_ index: Int) -> PageNumber {
        if index == cellCount { return PageNumber(u32(NodeLayout.linkOffset)) }
        return PageNumber(u32(cellOffset(index)))
    }

    mutating func setBranchChild(_ index: Int, _ child: PageNumber) {
        if index == cellCount {
            setU32(NodeLayout.linkOffset, child.rawValue)
        } else {
            setU32(cellOffset(index), child.rawValue)
        }
    }

    func branchKey(_ index: Int) -> [UInt8] {
        let offset = cellOffset(index)
        return copyBytes(at: offset + NodeLayout.branchCellHeader, count: Int(u16(offset + 4)))
    }

    static func branchCell(child: PageNumber, key: [UInt8]) -> [UInt8] {
        var cell: [UInt8] = []
        cell.reserveCapacity(NodeLayout.branchCellHeader + key.count)
        Swift.withUnsafeBytes(of: child.rawValue.littleEndian) { cell.append(contentsOf: $0) }
        cell.append(UInt8(key.count & 0xFF))
        cell.append(UInt8(key.count >> 8))
        cell.append(contentsOf: key)
        return cell
    }

    func cellSize(at offset: Int) -> Int {
        isLeaf ? leafCellSize(at: offset) : NodeLayout.branchCellHeader + Int(u16(offset + 4))
    }

    func cellBytes(_ index: Int) -> [UInt8] {
        let offset = cellOffset(index)
        return copyBytes(at: offset, count: cellSize(at: offset))
    }

    /// Starts loading cell `index` (if there is one) into the CPU's caches without waiting for
    /// it: a cursor calls it for the next cell while its caller works on the current one, so a
    /// scan's next step does not wait for memory. Up to 256 bytes from the cell's start, within
    /// the page; only the slot (near the header, already cached) is read now.
    func prefetchCell(_ index: Int) {
        guard index >= 0 && index < cellCount else { return }
        let offset = cellOffset(index)
        guard offset < size else { return }
        pdb_prefetch(base + offset, min(256, size - offset))
    }

    /// Starts loading the node's header and its first slots (192 bytes, a leaf's whole slot
    /// array with the default page size and small records) into the CPU's caches.
    @inline(__always) func prefetchHeaderAndSlots() {
        pdb_prefetch(base, min(192, size))
    }

    /// Starts loading, for writing, the `count` bytes just below the cell area, where
    /// `insertCell` writes its cell when the node has room: the lines are requested while the
    /// search runs instead of when the copy stores into them.
    @inline(__always) func prefetchInsertionArea(count: Int) {
        let start = contentStart - count
        guard start >= NodeLayout.headerSize, count > 0 else { return }
        pdb_prefetch_for_write(base + start, count)
    }

    // MARK: Search

    /// Leaves: the first cell whose key is >= `key`, and whether it is equal.
    func leafSearch(_ key: [UInt8]) -> (index: Int, found: Bool) {
        key.withUnsafeBytes { leafSearch($0) }
    }

    func leafSearch(_ key: UnsafeRawBufferPointer) -> (index: Int, found: Bool) {
        withUnsafeBytes { page in
            Page.search(key, in: page, keyHeader: NodeLayout.leafCellHeader, lengthAt: 0, stopAtEqual: true)
        }
    }

    /// Branches: the index of the child whose range holds `key` (the number of separators <= key).
    func childIndex(for key: [UInt8]) -> Int {
        key.withUnsafeBytes { childIndex(for: $0) }
    }

    func childIndex(for key: UnsafeRawBufferPointer) -> Int {
        withUnsafeBytes { page in
            Page.search(key, in: page, keyHeader: NodeLayout.branchCellHeader, lengthAt: 4, stopAtEqual: false).index
        }
    }

    /// Binary search over the cells of a node: the first cell whose key is > `key` (or, with
    /// `stopAtEqual`, the cell whose key equals it, or else the first greater). The hot loop of
    /// every lookup, so it reads the slots and keys directly, with one bounds check per key in
    /// place of the accessors' checks per field; a damaged slot still stops at a precondition.
    /// Each step compares heads first and reads the cell's key only when they are equal.
    @inline(__always)
    private static func search(
        _ key: UnsafeRawBufferPointer, in page: UnsafeRawBufferPointer, keyHeader: Int, lengthAt: Int,
        stopAtEqual: Bool
    ) -> (index: Int, found: Bool) {
        let base = page.baseAddress!
        let size = page.count
        let count = Int(
            UInt16(littleEndian: base.loadUnaligned(fromByteOffset: NodeLayout.cellCountOffset, as: UInt16.self)))
        precondition(NodeLayout.slot(count) <= size, "cell slots outside the page")
        let keyHead = NodeLayout.head(of: key)
        let keyCount = key.count
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) >> 1
            let slot = base + NodeLayout.slot(mid)
            let cellHead = UInt32(
                bigEndian: slot.loadUnaligned(fromByteOffset: NodeLayout.slotHeadOffset, as: UInt32.self))
            var order = keyHead < cellHead ? -1 : (keyHead > cellHead ? 1 : 0)
            if order == 0 {
                let offset = Int(UInt16(littleEndian: slot.loadUnaligned(as: UInt16.self)))
                precondition(offset + keyHeader <= size, "cell outside the page")
                let length = Int(
                    UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset + lengthAt, as: UInt16.self)))
                let start = offset + keyHeader
                precondition(start + length <= size, "key outside the page")
                let common = min(keyCount, length)
                order = common == 0 ? 0 : Int(memcmp(key.baseAddress!, base + start, common))
                if order == 0 { order = keyCount - length }
            }
            if order < 0 {
                high = mid
            } else if order > 0 || !stopAtEqual {
                low = mid + 1
            } else {
                return (mid, true)
            }
        }
        return (low, false)
    }

    // MARK: Changes

    /// Inserts `cell` as cell `index`; returns false when it does not fit (the caller splits).
    mutating func insertCell(_ cell: [UInt8], at index: Int) -> Bool {
        cell.withUnsafeBytes { insertCell($0, at: index) }
    }

    mutating func insertCell(_ cell: UnsafeRawBufferPointer, at index: Int) -> Bool {
        precondition(index >= 0 && index <= cellCount, "insert index out of range")
        let needed = cell.count + NodeLayout.slotSize
        if contiguousFree < needed {
            guard totalFree >= needed else { return false }
            defragment()
        }
        let count = cellCount
        let start = contentStart - cell.count
        setBytes(at: start, cell)
        setU32(NodeLayout.contentStartOffset, UInt32(start))
        let slot = NodeLayout.slot(index)
        moveBytes(from: slot, to: slot + NodeLayout.slotSize, count: NodeLayout.slotSize * (count - index))
        setSlot(index, offset: start, cell: cell, isLeaf: isLeaf)
        setU16(NodeLayout.cellCountOffset, UInt16(count + 1))
        return true
    }

    mutating func removeCell(at index: Int) {
        let count = cellCount
        let offset = cellOffset(index)
        let size = cellSize(at: offset)
        let slot = NodeLayout.slot(index)
        moveBytes(from: slot + NodeLayout.slotSize, to: slot, count: NodeLayout.slotSize * (count - index - 1))
        setU16(NodeLayout.cellCountOffset, UInt16(count - 1))
        if offset == contentStart {
            setU32(NodeLayout.contentStartOffset, UInt32(offset + size))
        } else {
            setU32(NodeLayout.fragmentedOffset, UInt32(fragmentedBytes + size))
        }
    }

    /// Rewrites the node with `cells` in order, keeping its kind and setting its link.
    mutating func rebuild(cells: [[UInt8]], link: PageNumber) {
        self = Page.node(kind: kind, size: size, count: cells.count, link: link) { cells[$0].withUnsafeBytes($1) }
    }

    /// A new node of `kind` holding `cells` in order, its unused bytes zero.
    static func node(kind: PageKind, size: Int, cells: [[UInt8]], link: PageNumber) -> Page {
        node(kind: kind.rawValue, size: size, count: cells.count, link: link) { cells[$0].withUnsafeBytes($1) }
    }

    /// A new node of `kind` holding `count` cells in order, cell `i` lent by `withCell(i, write)`
    /// (so a split copies cells straight from the page they are in); its unused bytes zero.
    static func node(
        kind: UInt8, size: Int, count: Int, link: PageNumber,
        withCell: (Int, (UnsafeRawBufferPointer) -> Void) -> Void
    ) -> Page {
        var page = Page(size: size)
        page.setU8(NodeLayout.kindOffset, kind)
        page.setU32(NodeLayout.linkOffset, link.rawValue)
        let isLeaf = kind == PageKind.leaf.rawValue
        var end = size
        for i in 0..<count {
            withCell(i) { cell in
                precondition(end - cell.count >= NodeLayout.slot(i + 1), "rebuilt node overflows its page")
                end -= cell.count
                page.setBytes(at: end, cell)
                page.setSlot(i, offset: end, cell: cell, isLeaf: isLeaf)
            }
        }
        page.setU16(NodeLayout.cellCountOffset, UInt16(count))
        page.setU32(NodeLayout.contentStartOffset, UInt32(end))
        return page
    }

    mutating func defragment() {
        let cells = (0..<cellCount).map { cellBytes($0) }
        rebuild(cells: cells, link: PageNumber(u32(NodeLayout.linkOffset)))
    }

    var allCells: [[UInt8]] { (0..<cellCount).map { cellBytes($0) } }

    // MARK: Validation of pages read from disk

    /// Checks that every offset and length in a leaf or branch page stays inside the page, so the
    /// accessors above can trust them. Returns a reason when it does not.
    func nodeStructureProblem() -> String? {
        let count = cellCount
        let start = contentStart
        guard start <= size, NodeLayout.slot(count) <= start else { return "cell area overlaps header" }
        guard fragmentedBytes <= size else { return "impossible fragmented size" }
        for i in 0..<count {
            let offset = Int(u16(NodeLayout.slot(i)))
            guard offset >= start, offset + (isLeaf ? NodeLayout.leafCellHeader : NodeLayout.branchCellHeader) <= size
            else { return "cell \(i) starts outside the content area" }
            let cellSize = cellSize(at: offset)
            guard offset + cellSize <= size else { return "cell \(i) ends outside the page" }
            if isLeaf && u8(offset + 3) > 1 { return "cell \(i) has an unknown value kind" }
            // A wrong head would send searches the wrong way without any check noticing.
            let head = withBytes(at: offset, count: cellSize) {
                NodeLayout.head(of: NodeLayout.key(ofCell: $0, isLeaf: isLeaf))
            }
            guard head == slotHead(i) else { return "slot \(i) holds a head that is not its key's" }
        }
        return nil
    }
}
