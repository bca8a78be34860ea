/// Values too large for a leaf cell live in a chain of overflow pages.
/// Layout: spec/file-format.md#overflow-page
enum OverflowLayout {
    static let nextOffset = 8
    static let lengthOffset = 12
    static let dataOffset = 16

    static func capacity(pageSize: Int) -> Int { pageSize - dataOffset }

    static func structureProblem(_ page: Page) -> String? {
        Int(page.u32(lengthOffset)) <= capacity(pageSize: page.size) ? nil : "overflow length exceeds the page"
    }

    static func pageCount(length: Int, pageSize: Int) -> Int {
        (length + capacity(pageSize: pageSize) - 1) / capacity(pageSize: pageSize)
    }
}

extension WriteContext {
    /// Writes `value` into a new chain and returns its first page.
    func writeOverflow(_ value: UnsafeRawBufferPointer) throws -> PageNumber {
        let capacity = OverflowLayout.capacity(pageSize: pageSize)
        let count = OverflowLayout.pageCount(length: value.count, pageSize: pageSize)
        var numbers: [PageNumber] = []
        numbers.reserveCapacity(count)
        for _ in 0..<count { numbers.append(try allocate()) }
        for (i, number) in numbers.enumerated() {
            var page = Page(size: pageSize)
            page.setU8(4, PageKind.overflow.rawValue)
            page.setU32(OverflowLayout.nextOffset, i + 1 < count ? numbers[i + 1].rawValue : 0)
            let start = i * capacity
            let end = min(value.count, start + capacity)
            page.setU32(OverflowLayout.lengthOffset, UInt32(end - start))
            page.setBytes(at: OverflowLayout.dataOffset, UnsafeRawBufferPointer(rebasing: value[start..<end]))
            put(number, page)
        }
        return numbers[0]
    }

    func freeOverflow(first: PageNumber, length: Int) throws {
        try PageContext.walkOverflow(first: first, length: length, context: self) { number, _ in try free(number) }
    }
}

extension PageContext {
    func readOverflow(first: PageNumber, length: Int) throws -> [UInt8] {
        var value: [UInt8] = []
        value.reserveCapacity(length)
        try PageContext.walkOverflow(first: first, length: length, context: self) { _, page in
            let count = Int(page.u32(OverflowLayout.lengthOffset))
            value.append(contentsOf: page.bytes[OverflowLayout.dataOffset..<(OverflowLayout.dataOffset + count)])
        }
        guard value.count == length else {
            throw PartitionDBError.corruptPage(
                file: path, page: first.rawValue, reason: "overflow chain holds \(value.count) of \(length) bytes")
        }
        return value
    }

    /// Visits the pages of a chain, at most as many as `length` needs, so a damaged link cannot
    /// loop, and each page once: a chain that comes back to one of its pages is damage (read, it
    /// would return other bytes than were written; freed, it would free a page twice).
    static func walkOverflow(
        first: PageNumber, length: Int, context: PageContext, _ visit: (PageNumber, Page) throws -> Void
    ) throws {
        var number = first
        let expected = OverflowLayout.pageCount(length: length, pageSize: context.header.pageSize)
        // The length comes from disk: a chain longer than the partition cannot exist.
        guard expected <= Int(context.header.pageCount) else {
            throw PartitionDBError.corruptPage(
                file: context.path, page: first.rawValue,
                reason: "overflow length \(length) needs more pages than the partition has")
        }
        var visited: Set<UInt32> = []
        for i in 0..<expected {
            guard visited.insert(number.rawValue).inserted else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "overflow chain loops")
            }
            let page = try context.page(number)
            guard page.kind == PageKind.overflow.rawValue else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: number.rawValue, reason: "expected an overflow page")
            }
            try visit(number, page)
            let next = PageNumber(page.u32(OverflowLayout.nextOffset))
            if i + 1 < expected {
                guard next != .none else {
                    throw PartitionDBError.corruptPage(
                        file: context.path, page: number.rawValue, reason: "overflow chain ends early")
                }
                number = next
            }
        }
    }
}
