/// Free pages are kept in trunk pages: each trunk lists free page numbers and links to the next
/// trunk. Layout: spec/file-format.md#freelist-trunk-page
enum FreelistLayout {
    static let nextOffset = 8
    static let countOffset = 12
    static let entriesOffset = 16

    static func capacity(pageSize: Int) -> Int { (pageSize - entriesOffset) / 4 }

    static func structureProblem(_ page: Page) -> String? {
        Int(page.u32(countOffset)) <= capacity(pageSize: page.size) ? nil : "freelist trunk count exceeds its capacity"
    }
}

extension WriteContext {
    /// A page for new content: the most recently freed one, or a new page at the end of the file.
    /// Reusing a freed page at once is safe: readers of older snapshots find their versions of
    /// it in the log or the partition file, never in this transaction's copy.
    func allocate() throws -> PageNumber {
        let head = header.freelistHead
        if head != .none {
            let trunk = try self.page(head)
            guard trunk.kind == PageKind.freelistTrunk.rawValue else {
                throw PartitionDBError.corruptPage(file: path, page: head.rawValue, reason: "expected a freelist trunk")
            }
            let count = Int(trunk.u32(FreelistLayout.countOffset))
            // Counts come from disk: a free list whose header says nothing is free is damage, not
            // a reason to trap on the subtraction.
            guard header.freeCount > 0 else {
                throw PartitionDBError.corruptPage(
                    file: path, page: PageNumber.header.rawValue, reason: "free count 0 with a non-empty free list")
            }
            header.freeCount -= 1
            if count > 0 {
                let entry = FreelistLayout.entriesOffset + 4 * (count - 1)
                let number = PageNumber(trunk.u32(entry))
                guard number != .none, number.rawValue < header.pageCount else {
                    throw PartitionDBError.corruptPage(
                        file: path, page: head.rawValue, reason: "free page out of range")
                }
                try modify(head) { $0.setU32(FreelistLayout.countOffset, UInt32(count - 1)) }
                return number
            }
            let next = PageNumber(trunk.u32(FreelistLayout.nextOffset))
            // A trunk linking to itself would hand out the same page again at the next call.
            guard next != head else {
                throw PartitionDBError.corruptPage(file: path, page: head.rawValue, reason: "the free list loops")
            }
            header.freelistHead = next
            return head
        }
        let number = PageNumber(header.pageCount)
        precondition(header.pageCount < UInt32.max, "partition is full: 2^32 pages")
        header.pageCount += 1
        return number
    }

    /// Returns `number` to the free list. Its content stays as it was on disk: a page that
    /// exists in the committed state is not written for its changes in this transaction (a leaf
    /// emptied by a merge is not logged); a page added by this transaction keeps its copy, so
    /// that every page below the page count is somewhere on disk.
    func free(_ number: PageNumber) throws {
        precondition(number != .header && number.rawValue < header.pageCount, "freeing an impossible page")
        // Every free page is below the page count, so a larger free count is damage.
        guard header.freeCount < header.pageCount else {
            throw PartitionDBError.corruptPage(
                file: path, page: PageNumber.header.rawValue,
                reason: "free count \(header.freeCount) is not below the page count \(header.pageCount)")
        }
        if number.rawValue < snapshot.header.pageCount { discard(number) }
        let head = header.freelistHead
        if head != .none {
            let trunk = try self.page(head)
            let count = Int(trunk.u32(FreelistLayout.countOffset))
            if count < FreelistLayout.capacity(pageSize: pageSize) {
                try modify(head) {
                    $0.setU32(FreelistLayout.entriesOffset + 4 * count, number.rawValue)
                    $0.setU32(FreelistLayout.countOffset, UInt32(count + 1))
                }
                header.freeCount += 1
                return
            }
        }
        var trunk = Page(size: pageSize)
        trunk.setU8(4, PageKind.freelistTrunk.rawValue)
        trunk.setU32(FreelistLayout.nextOffset, head.rawValue)
        put(number, trunk)
        header.freelistHead = number
        header.freeCount += 1
    }
}
