#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The records of the benchmark: redb's workload of random 24-byte keys and 150-byte values from
/// a fixed seed.
///
/// Nothing is stored: record `i`'s key is words `3i ..< 3i + 3` of a SplitMix64 stream, which can
/// be computed directly (the state after `k` steps is `seed + k * gamma`), and its value is a
/// second SplitMix64 stream seeded from the key. So any thread can make any record without a
/// shared list, the harness adds no memory of its own to an engine's peak, and every value a read
/// returns (even one found by a range read, whose index is unknown) can be checked against its key.
struct Workload: Sendable {
    static let keySize = 24
    static let valueSize = 150
    static let defaultSeed: UInt64 = 3
    static let defaultRecords = 1_000_000
    /// The durable commits of one insert each, after the bulk load.
    static let individualWrites = 1_000
    /// The transactions of `batchSize` inserts each, after the individual writes.
    static let batchWrites = 100
    static let batchSize = 1_000
    /// Entries read forward from each seek of the range reads.
    static let rangeLength = 10

    /// Records in the bulk load; also the number of point reads per pass.
    let records: Int
    let seed: UInt64

    /// Every record the workload inserts: the bulk load, then the individual writes, then the batches.
    var insertedRecords: Int { records + Workload.individualWrites + Workload.batchWrites * Workload.batchSize }
    var individualRange: Range<Int> { records..<(records + Workload.individualWrites) }
    func batchRange(_ batch: Int) -> Range<Int> {
        let start = records + Workload.individualWrites + batch * Workload.batchSize
        return start..<(start + Workload.batchSize)
    }

    // MARK: Keys

    /// Writes the 24 bytes of record `index`'s key to `out`.
    @inline(__always)
    func writeKey(_ index: Int, to out: UnsafeMutableRawPointer) {
        let base = UInt64(index) &* 3
        for word in 0..<3 {
            out.storeBytes(
                of: SplitMix64.word(seed: seed, at: base &+ UInt64(word)).littleEndian, toByteOffset: word * 8,
                as: UInt64.self)
        }
    }

    /// Record `index`'s key as an array, for APIs that take one.
    func key(_ index: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Workload.keySize) { buffer, count in
            writeKey(index, to: buffer.baseAddress!)
            count = Workload.keySize
        }
    }

    // MARK: Values

    /// The seed of the value stream of `key` (24 bytes).
    @inline(__always)
    private func valueSeed(_ key: UnsafeRawPointer) -> UInt64 {
        let a = UInt64(littleEndian: key.loadUnaligned(as: UInt64.self))
        let b = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let c = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        return SplitMix64.mix(a ^ SplitMix64.mix(b ^ SplitMix64.mix(c ^ ~seed)))
    }

    /// Writes the 150 bytes of the value that belongs to `key` (24 bytes) to `out`.
    @inline(__always)
    func writeValue(forKey key: UnsafeRawPointer, to out: UnsafeMutableRawPointer) {
        var stream = SplitMix64(state: valueSeed(key))
        var offset = 0
        while offset + 8 <= Workload.valueSize {
            out.storeBytes(of: stream.next().littleEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        var last = stream.next()
        while offset < Workload.valueSize {
            out.storeBytes(of: UInt8(truncatingIfNeeded: last), toByteOffset: offset, as: UInt8.self)
            last >>= 8
            offset += 1
        }
    }

    /// The value that belongs to `key` as an array, for APIs that take one.
    func value(forKey key: [UInt8]) -> [UInt8] {
        precondition(key.count == Workload.keySize, "a workload key has 24 bytes")
        return [UInt8](unsafeUninitializedCapacity: Workload.valueSize) { buffer, count in
            key.withUnsafeBytes { writeValue(forKey: $0.baseAddress!, to: buffer.baseAddress!) }
            count = Workload.valueSize
        }
    }

    /// Whether `value` is the value that belongs to `key`: the check every read makes.
    @inline(__always)
    func matches(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        guard key.count == Workload.keySize, value.count == Workload.valueSize else { return false }
        var stream = SplitMix64(state: valueSeed(key.baseAddress!))
        let bytes = value.baseAddress!
        var offset = 0
        while offset + 8 <= Workload.valueSize {
            let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            guard stored == stream.next() else { return false }
            offset += 8
        }
        var last = stream.next()
        while offset < Workload.valueSize {
            guard bytes.load(fromByteOffset: offset, as: UInt8.self) == UInt8(truncatingIfNeeded: last) else {
                return false
            }
            last >>= 8
            offset += 1
        }
        return true
    }

    /// Whether `key` is record `index`'s key.
    @inline(__always)
    func isKey(_ index: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        guard key.count == Workload.keySize else { return false }
        let base = UInt64(index) &* 3
        for word in 0..<3 {
            let stored = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: word * 8, as: UInt64.self))
            guard stored == SplitMix64.word(seed: seed, at: base &+ UInt64(word)) else { return false }
        }
        return true
    }
}

/// Steele, Lea and Flood's SplitMix64: a tiny, fast, well-mixed generator whose k-th output can
/// be computed without the k - 1 before it.
struct SplitMix64 {
    static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15
    var state: UInt64

    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The output number `index` (from 0) of the stream that starts at `seed`.
    @inline(__always)
    static func word(seed: UInt64, at index: UInt64) -> UInt64 {
        mix(seed &+ (index &+ 1) &* gamma)
    }

    @inline(__always)
    mutating func next() -> UInt64 {
        state &+= SplitMix64.gamma
        return SplitMix64.mix(state)
    }
}

/// What a read phase saw; the runner fails the run unless every read found its record with the
/// right value.
struct ReadTally: Sendable {
    /// Point reads or range seeks made.
    var reads = 0
    /// Records returned (one per point read; up to `rangeLength` per range read).
    var entries = 0
    /// Reads whose key was not there (or, for a range read, did not come first).
    var missing = 0
    /// Entries whose value was not the value of their key, or that came out of key order.
    var mismatches = 0

    static func + (a: ReadTally, b: ReadTally) -> ReadTally {
        ReadTally(
            reads: a.reads + b.reads, entries: a.entries + b.entries, missing: a.missing + b.missing,
            mismatches: a.mismatches + b.mismatches)
    }
}

extension ReadTally {
    /// Counts entry `position` (from 0) of a range read that sought record `index`'s key: the
    /// first entry must be that key, each later one must follow `previous` in key order, and every
    /// value must be its key's.
    @inline(__always)
    mutating func countRangeEntry(
        _ position: Int, seeking index: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        previous: UnsafeRawBufferPointer, workload: Workload
    ) {
        entries += 1
        if position == 0 {
            if !workload.isKey(index, key) { missing += 1 }
        } else if !bytesPrecede(previous, key) {
            mismatches += 1
        }
        if !workload.matches(key: key, value: value) { mismatches += 1 }
    }
}

/// Whether `a` sorts strictly before `b` bytewise, the key order of all three engines.
@inline(__always)
func bytesPrecede(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    let common = min(a.count, b.count)
    if common > 0 {
        let order = memcmp(a.baseAddress!, b.baseAddress!, common)
        if order != 0 { return order < 0 }
    }
    return a.count < b.count
}
