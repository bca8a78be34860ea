/// The pages a write transaction changed, by page number. Pages of the snapshot it started from
/// are in a hash map; pages it added past the snapshot's end are numbered densely from that end,
/// so they are in an array indexed by number: a bulk load's lookups (every page of its tree is
/// new) then cost one read of an array entry, not a probe into a map of tens of thousands of
/// pages, a cache miss of its own.
struct ChangedPages {
    private var existing = PageMap<Page>()
    /// Entry `i` holds page `firstAdded + i`, or nil.
    private var added: [Page?] = []
    private var addedCount = 0
    /// The snapshot's page count: pages from here on are added by the transaction.
    let firstAdded: UInt32

    init(firstAdded: UInt32) { self.firstAdded = firstAdded }

    var count: Int { existing.count + addedCount }
    /// How many of the pages are the snapshot's (numbers below `firstAdded`).
    var existingCount: Int { existing.count }

    subscript(number: UInt32) -> Page? {
        get {
            guard number >= firstAdded else { return existing[number] }
            let index = Int(number - firstAdded)
            return index < added.count ? added[index] : nil
        }
        set {
            guard number >= firstAdded else {
                existing[number] = newValue
                return
            }
            let index = Int(number - firstAdded)
            if index >= added.count {
                guard newValue != nil else { return }
                // `append` grows the array geometrically: a bulk load's appends are amortized O(1).
                added.append(contentsOf: repeatElement(nil, count: index + 1 - added.count))
            }
            addedCount += (newValue == nil ? 0 : 1) - (added[index] == nil ? 0 : 1)
            added[index] = newValue
        }
    }

    /// Changes the page under `number` in place (no copy of the page), if there is one.
    @inline(__always)
    mutating func modify<T>(_ number: UInt32, _ body: (inout Page) throws -> T) rethrows -> T? {
        guard number >= firstAdded else { return try existing.modify(number, body) }
        let index = Int(number - firstAdded)
        guard index < added.count, added[index] != nil else { return nil }
        return try body(&added[index]!)
    }

    /// The page under `number` as a borrowed view (`Page.borrowed`): no reference counting,
    /// valid only until the pages or that page change.
    @inline(__always)
    func borrowedPage(_ number: UInt32) -> Page? {
        guard number >= firstAdded else { return existing.borrowedPage(number) }
        let index = Int(number - firstAdded)
        return added.withUnsafeBufferPointer { index < $0.count ? $0[index]?.borrowed : nil }
    }

    var allNumbers: [UInt32] {
        existing.allKeys + added.indices.compactMap { added[$0] == nil ? nil : firstAdded + UInt32($0) }
    }

    /// Every (page number, page), moved out: the pages are left empty and no page is retained on
    /// the way (a large commit hands over tens of thousands). In no particular order.
    mutating func takePages() -> [(PageNumber, Page)] {
        var result = existing.takePages()
        result.reserveCapacity(result.count + addedCount)
        var pages: [Page?] = []
        swap(&pages, &added)
        while let page = pages.popLast() {
            if let page { result.append((PageNumber(firstAdded + UInt32(pages.count)), page)) }
        }
        addedCount = 0
        return result
    }
}
