/// A hash map from page numbers to values: open addressing with linear probing and a
/// multiplicative hash. Page lookups sit on every hot path, and this avoids the general
/// `Hasher` (SipHash) that `Dictionary` uses, which cost more than the lookup itself.
///
/// Keys and values share one array of slots, so a lookup in a map larger than the caches misses
/// one cache line, not one in a key array and another in a value array.
struct PageMap<Value> {
    private static var emptyKey: UInt32 { UInt32.max }
    private struct Slot {
        var key: UInt32
        var value: Value?
    }
    private var slots: [Slot]
    private(set) var count = 0
    private var mask: Int
    private var shift: UInt32

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Slot](repeating: Slot(key: PageMap.emptyKey, value: nil), count: size)
        mask = size - 1
        shift = UInt32(32 - size.trailingZeroBitCount)
    }

    @inline(__always) private func slot(_ key: UInt32) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B1) >> shift) & mask
    }

    /// The slot holding `key`, or nil.
    @inline(__always) private func find(_ key: UInt32) -> Int? {
        precondition(key != PageMap.emptyKey, "page number 2^32-1 is never used")
        var i = slot(key)
        while true {
            let k = slots[i].key
            if k == key { return i }
            if k == PageMap.emptyKey { return nil }
            i = (i + 1) & mask
        }
    }

    subscript(key: UInt32) -> Value? {
        get {
            guard let i = find(key) else { return nil }
            return slots[i].value
        }
        set {
            precondition(key != PageMap.emptyKey, "page number 2^32-1 is never used")
            guard let newValue else {
                remove(key)
                return
            }
            var i = slot(key)
            while true {
                let k = slots[i].key
                if k == key {
                    slots[i].value = newValue
                    return
                }
                if k == PageMap.emptyKey { break }
                i = (i + 1) & mask
            }
            slots[i] = Slot(key: key, value: newValue)
            count += 1
            if count * 2 > slots.count { grow() }
        }
    }

    /// Changes the value under `key` in place (no copy of the value), if there is one.
    @inline(__always)
    mutating func modify<T>(_ key: UInt32, _ body: (inout Value) throws -> T) rethrows -> T? {
        guard let i = find(key) else { return nil }
        return try body(&slots[i].value!)
    }

    private mutating func remove(_ key: UInt32) {
        guard var i = find(key) else { return }
        slots[i] = Slot(key: PageMap.emptyKey, value: nil)
        count -= 1
        // Re-insert the rest of the cluster so no lookup stops early at the hole.
        i = (i + 1) & mask
        while slots[i].key != PageMap.emptyKey {
            let moved = slots[i]
            slots[i] = Slot(key: PageMap.emptyKey, value: nil)
            count -= 1
            self[moved.key] = moved.value
            i = (i + 1) & mask
        }
    }

    private mutating func grow() {
        var bigger = PageMap(capacity: slots.count)
        drain { bigger[$0] = $1 }
        self = bigger
    }

    /// Empties the map, handing each (key, value) to `body` in no particular order. The values
    /// are moved out one by one: no reference counting on the way.
    private mutating func drain(_ body: (UInt32, Value) -> Void) {
        var old: [Slot] = []
        swap(&old, &slots)
        while let slot = old.popLast() {
            if slot.key != PageMap.emptyKey { body(slot.key, slot.value!) }
        }
        self = PageMap()
    }

    var allKeys: [UInt32] { slots.compactMap { $0.key == PageMap.emptyKey ? nil : $0.key } }
}

extension PageMap where Value == Page {
    /// Every (page number, page), in no particular order, moved out: the map is left empty and
    /// no page is retained on the way (a large commit hands over tens of thousands).
    mutating func takePages() -> [(PageNumber, Page)] {
        var result: [(PageNumber, Page)] = []
        result.reserveCapacity(count)
        drain { result.append((PageNumber($0), $1)) }
        return result
    }

    /// The page under `key` as a borrowed view (`Page.borrowed`): no reference counting, valid
    /// only until the map or the page changes.
    @inline(__always)
    func borrowedPage(_ key: UInt32) -> Page? {
        guard let i = find(key) else { return nil }
        return slots.withUnsafeBufferPointer { $0[i].value?.borrowed }
    }
}
