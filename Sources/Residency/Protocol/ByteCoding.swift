/// Big-endian writing and bounds-checked reading of the protocol's fields (spec/replication.md).
/// A reader never traps on short or hostile input: every read past the end throws.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { append(value) }
    mutating func u32(_ value: UInt32) { append(value) }
    mutating func u64(_ value: UInt64) { append(value) }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// A field of at most 255 bytes, after its length in one byte.
    mutating func short(_ field: [UInt8]) {
        precondition(field.count <= 255, "a short field is at most 255 bytes")
        u8(UInt8(field.count))
        bytes.append(contentsOf: field)
    }

    /// A field after its length in four bytes.
    mutating func long(_ field: [UInt8]) {
        u32(UInt32(field.count))
        bytes.append(contentsOf: field)
    }
}

struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset: Int
    let end: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    var remaining: Int { end - offset }

    mutating func u8() throws -> UInt8 { try integer() }
    mutating func u16() throws -> UInt16 { try integer() }
    mutating func u32() throws -> UInt32 { try integer() }
    mutating func u64() throws -> UInt64 { try integer() }

    private mutating func integer<T: FixedWidthInteger>() throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else {
            throw ResidencyError.malformedMessage(reason: "a field runs past the end of its frame")
        }
        var value: T = 0
        for i in 0..<size { value = value << 8 | T(bytes[offset + i]) }
        offset += size
        return value
    }

    mutating func take(_ count: Int) throws -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw ResidencyError.malformedMessage(reason: "a field runs past the end of its frame")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func short() throws -> [UInt8] { try take(Int(try u8())) }
    mutating func long() throws -> [UInt8] { try take(Int(try u32())) }

    /// A short field holding UTF-8 text.
    mutating func text() throws -> String {
        let field = try short()
        guard let text = String(validating: field, as: UTF8.self) else {
            throw ResidencyError.malformedMessage(reason: "a text field is not UTF-8")
        }
        return text
    }

    /// Requires that the payload is used up: no trailing bytes are ignored.
    func finish() throws {
        guard remaining == 0 else {
            throw ResidencyError.malformedMessage(reason: "\(remaining) unexpected bytes end the frame")
        }
    }
}
