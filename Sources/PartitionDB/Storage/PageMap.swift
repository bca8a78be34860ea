/// A hash map from page numbers to values: open addressing with linear probing and a
/// multiplicative hash. Page lookups sit on every hot path, and this avoids the general
/// `Hasher` (SipHash) that `Dictionary` uses, which cost more than the lookup itself.
struct PageMap<Value> {
    private static var emptyKey: UInt32 { UInt32.max }
    private var keys: [UInt32]
    private var values: [Value?]
    private(set) var count = 0
    private var mask: Int
    private var shift: UInt32

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt32](repeating: PageMap.emptyKey, count: size)
        values = [Value?](repeating: nil, count: size)
        mask = size - 1
        shift = UInt32(32 - size.trailingZeroBitCount)
    }

    @inline(__always) private func slot(_ key: UInt32) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B1) >> shift) & mask
    }

    subscript(key: UInt32) -> Value? {
        get {
            precondition(key != PageMap.emptyKey, "page number 2^32-1 is never used")
            var i = slot(key)
            while true {
                let k = keys[i]
                if k == key { return values[i] }
                if k == PageMap.emptyKey { return nil }
                i = (i + 1) & mask
            }
        }
        set {
            precondition(key != PageMap.emptyKey, "page number 2^32-1 is never used")
            guard let newValue else {
                remove(key)
                return
            }
            var i = slot(key)
            while true {
                let k = keys[i]
                if k == key {
                    values[i] = newValue
                    return
                }
                if k == PageMap.emptyKey { break }
                i = (i + 1) & mask
            }
            keys[i] = key
            values[i] = newValue
            count += 1
            if count * 2 > keys.count { grow() }
        }
    }

    /// Changes the value under `key` in place (no copy of the value), if there is one.
    @inline(__always)
    mutating func modify<T>(_ key: UInt32, _ body: (inout Value) throws -> T) rethrows -> T? {
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return try body(&values[i]!) }
            if k == PageMap.emptyKey { return nil }
            i = (i + 1) & mask
        }
    }

    private mutating func remove(_ key: UInt32) {
        var i = slot(key)
        while keys[i] != key {
            if keys[i] == PageMap.emptyKey { return }
            i = (i + 1) & mask
        }
        keys[i] = PageMap.emptyKey
        values[i] = nil
        count -= 1
        // Re-insert the rest of the cluster so no lookup stops early at the hole.
        var j = (i + 1) & mask
        while keys[j] != PageMap.emptyKey {
            let k = keys[j]
            let v = values[j]
            keys[j] = PageMap.emptyKey
            values[j] = nil
            count -= 1
            self[k] = v
            j = (j + 1) & mask
        }
    }

    private mutating func grow() {
        var bigger = PageMap(capacity: keys.count)
        for i in keys.indices where keys[i] != PageMap.emptyKey { bigger[keys[i]] = values[i] }
        self = bigger
    }

    /// Every (key, value), in no particular order.
    var entries: [(UInt32, Value)] {
        var result: [(UInt32, Value)] = []
        result.reserveCapacity(count)
        for i in keys.indices where keys[i] != PageMap.emptyKey { result.append((keys[i], values[i]!)) }
        return result
    }

    var allKeys: [UInt32] { keys.filter { $0 != PageMap.emptyKey } }
}
