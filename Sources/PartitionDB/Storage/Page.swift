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

/// One page of a partition file: `pageSize` bytes whose first four hold a CRC-32C of the rest,
/// mixed with the page number so that a page written to the wrong place fails its check too.
///
/// This file and `Node.swift` are the only code that reads or writes page bytes; every access is
/// bounds-checked, and a page read from disk is validated before any offset inside it is trusted.
struct Page {
    var bytes: [UInt8]

    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    init(bytes: [UInt8]) { self.bytes = bytes }

    var size: Int { bytes.count }

    @inline(__always) func u8(_ offset: Int) -> UInt8 { bytes[offset] }
    @inline(__always) mutating func setU8(_ offset: Int, _ value: UInt8) { bytes[offset] = value }

    @inline(__always) func u16(_ offset: Int) -> UInt16 {
        precondition(offset >= 0 && offset + 2 <= bytes.count, "u16 read outside the page")
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }.littleEndian
    }
    @inline(__always) func u32(_ offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= bytes.count, "u32 read outside the page")
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }.littleEndian
    }
    @inline(__always) func u64(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= bytes.count, "u64 read outside the page")
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }.littleEndian
    }
    @inline(__always) mutating func setU16(_ offset: Int, _ value: UInt16) {
        precondition(offset >= 0 && offset + 2 <= bytes.count, "u16 write outside the page")
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self) }
    }
    @inline(__always) mutating func setU32(_ offset: Int, _ value: UInt32) {
        precondition(offset >= 0 && offset + 4 <= bytes.count, "u32 write outside the page")
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self) }
    }
    @inline(__always) mutating func setU64(_ offset: Int, _ value: UInt64) {
        precondition(offset >= 0 && offset + 8 <= bytes.count, "u64 write outside the page")
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self) }
    }

    func copyBytes(at offset: Int, count: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= bytes.count, "slice outside the page")
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func setBytes<C: Collection<UInt8>>(at offset: Int, _ source: C) {
        precondition(offset >= 0 && offset + source.count <= bytes.count, "copy outside the page")
        bytes.withUnsafeMutableBytes { raw in
            var i = offset
            for b in source {
                raw[i] = b
                i += 1
            }
        }
    }

    mutating func setBytes(at offset: Int, _ source: [UInt8]) {
        precondition(offset >= 0 && offset + source.count <= bytes.count, "copy outside the page")
        source.withUnsafeBytes { src in
            bytes.withUnsafeMutableBytes { dst in
                if src.count > 0 {
                    (dst.baseAddress! + offset).copyMemory(from: src.baseAddress!, byteCount: src.count)
                }
            }
        }
    }

    /// Moves `count` bytes inside the page (the ranges may overlap).
    mutating func moveBytes(from source: Int, to destination: Int, count: Int) {
        precondition(source >= 0 && destination >= 0 && count >= 0, "negative move")
        precondition(source + count <= bytes.count && destination + count <= bytes.count, "move outside the page")
        bytes.withUnsafeMutableBytes { raw in
            if count > 0 { memmove(raw.baseAddress! + destination, raw.baseAddress! + source, count) }
        }
    }

    /// Compares `key` with the `count` bytes at `offset`, bytewise, shorter first on a tie.
    @inline(__always) func compare(_ key: UnsafeRawBufferPointer, withBytesAt offset: Int, count: Int) -> Int {
        precondition(offset >= 0 && offset + count <= bytes.count, "compare outside the page")
        return bytes.withUnsafeBytes { raw in
            let common = min(key.count, count)
            let r = common == 0 ? 0 : memcmp(key.baseAddress!, raw.baseAddress! + offset, common)
            if r != 0 { return Int(r) }
            return key.count - count
        }
    }

    var kind: UInt8 { bytes[4] }

    func computeChecksum(number: PageNumber) -> UInt32 {
        let body = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[4...])) }
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
