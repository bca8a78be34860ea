#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The kinds of page. Layout of each: spec/file-format.md#pages
enum PageKind: UInt8 {
    case header = 1
    case leaf = 2
    case branch = 3
    case overflow = 4
    case freelistTrunk = 5
}

/// Memory that one or more `Page` values share until one of them changes it (copy on write).
/// The bytes are allocated inside the object, right after its header, so the reference count
/// that copy-on-write checks shares a cache line with the page's first bytes (its checksum and
/// kind, which every read touches first): one cache miss per page, not two.
final class PageStorage: ManagedBuffer<Int, UInt8> {
    static func make(size: Int) -> PageStorage {
        // `create` returns the dynamic class it was called on.
        unsafeDowncast(PageStorage.create(minimumCapacity: size) { _ in size }, to: PageStorage.self)
    }

    /// The bytes; they live as long as the object (elements of a `ManagedBuffer` never move).
    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(withUnsafeMutablePointerToElements { $0 }) }
}

/// One page of a partition file: `pageSize` bytes whose first four hold a CRC-32C of the rest,
/// mixed with the page number so that a page written to the wrong place fails its check too.
///
/// A page's bytes are either its own memory (shared copy-on-write between copies of the value)
/// or, for pages read through the partition file's read-only mapping, the mapped file itself:
/// then no bytes are copied at all, and the first change copies them into memory.
///
/// This file and `Node.swift` are the only code that reads or writes page bytes; every access is
/// bounds-checked, and a page read from disk is validated before any offset inside it is trusted.
struct Page {
    /// The owner of the bytes; nil for a mapped page, whose bytes live as long as the mapping
    /// (the pager keeps it until the last transaction that could hold such a page has ended).
    private var storage: PageStorage?
    private(set) var base: UnsafeRawPointer
    let size: Int

    init(size: Int) {
        let storage = PageStorage.make(size: size)
        storage.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        self.storage = storage
        self.base = UnsafeRawPointer(storage.pointer)
        self.size = size
    }

    init(bytes: [UInt8]) {
        let storage = PageStorage.make(size: bytes.count)
        bytes.withUnsafeBytes {
            if $0.count > 0 { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        self.storage = storage
        self.base = UnsafeRawPointer(storage.pointer)
        self.size = bytes.count
    }

    /// A page whose bytes are `size` bytes of a read-only file mapping at `base`. The caller
    /// guarantees the mapping outlives every copy of the value.
    init(mapped base: UnsafeRawPointer, size: Int) {
        self.storage = nil
        self.base = base
        self.size = size
    }

    /// A view of the same bytes that does not own them (no reference counting): valid only while
    /// whatever owns the bytes keeps them unchanged. For reading a page held in a map in place.
    var borrowed: Page { Page(mapped: base, size: size) }

    /// A copy of the bytes.
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: size)) }

    func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(start: base, count: size))
    }

    /// Makes the bytes this value's own before a change.
    @inline(__always) private mutating func makeUnique() -> UnsafeMutableRawPointer {
        if storage != nil && isKnownUniquelyReferenced(&storage) { return storage!.pointer }
        let copy = PageStorage.make(size: size)
        copy.pointer.copyMemory(from: base, byteCount: size)
        storage = copy
        base = UnsafeRawPointer(copy.pointer)
        return copy.pointer
    }

    @inline(__always) private func check(_ offset: Int, _ count: Int, _ what: @autoclosure () -> String) {
        precondition(offset >= 0 && count >= 0 && offset &+ count <= size, what())
    }

    @inline(__always) func u8(_ offset: Int) -> UInt8 {
        check(offset, 1, "u8 read outside the page")
        return base.load(fromByteOffset: offset, as: UInt8.self)
    }
    @inline(__always) mutating func setU8(_ offset: Int, _ value: UInt8) {
        check(offset, 1, "u8 write outside the page")
        makeUnique().storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
    @inline(__always) func u16(_ offset: Int) -> UInt16 {
        check(offset, 2, "u16 read outside the page")
        return base.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian
    }
    @inline(__always) func u32(_ offset: Int) -> UInt32 {
        check(offset, 4, "u32 read outside the page")
        return base.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
    }
    @inline(__always) func u64(_ offset: Int) -> UInt64 {
        check(offset, 8, "u64 read outside the page")
        return base.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
    }
    @inline(__always) mutating func setU16(_ offset: Int, _ value: UInt16) {
        check(offset, 2, "u16 write outside the page")
        makeUnique().storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }
    @inline(__always) mutating func setU32(_ offset: Int, _ value: UInt32) {
        check(offset, 4, "u32 write outside the page")
        makeUnique().storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }
    @inline(__always) mutating func setU64(_ offset: Int, _ value: UInt64) {
        check(offset, 8, "u64 write outside the page")
        makeUnique().storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
    }

    func copyBytes(at offset: Int, count: Int) -> [UInt8] {
        check(offset, count, "slice outside the page")
        return Array(UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    /// The bytes at `offset..<offset+count`, without copying; valid while this value lives.
    func withBytes<T>(at offset: Int, count: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        check(offset, count, "slice outside the page")
        return try body(UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    mutating func setBytes(at offset: Int, _ source: UnsafeRawBufferPointer) {
        check(offset, source.count, "copy outside the page")
        let target = makeUnique()
        if source.count > 0 { (target + offset).copyMemory(from: source.baseAddress!, byteCount: source.count) }
    }

    mutating func setBytes(at offset: Int, _ source: [UInt8]) {
        source.withUnsafeBytes { setBytes(at: offset, $0) }
    }

    /// Moves `count` bytes inside the page (the ranges may overlap).
    mutating func moveBytes(from source: Int, to destination: Int, count: Int) {
        check(source, count, "move outside the page")
        check(destination, count, "move outside the page")
        let target = makeUnique()
        if count > 0 { memmove(target + destination, target + source, count) }
    }

    var kind: UInt8 { u8(4) }

    func computeChecksum(number: PageNumber) -> UInt32 {
        let body = CRC32C.update(0, UnsafeRawBufferPointer(start: base + 4, count: size - 4))
        return body ^ (number.rawValue &* 0x9E37_79B1)
    }

    /// Stores the checksum; called right before the page is written.
    mutating func seal(number: PageNumber) { setU32(0, computeChecksum(number: number)) }

    func hasValidChecksum(number: PageNumber) -> Bool { u32(0) == computeChecksum(number: number) }
}

/// Compares two byte strings bytewise, shorter first on a tie.
@inline(__always) func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            let common = min(x.count, y.count)
            let r = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
            return r != 0 ? Int(r) : x.count - y.count
        }
    }
}
