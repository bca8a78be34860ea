import CPartitionSupport

/// SHA-256 over bytes fed in pieces (the C implementation in `CPartitionSupport/SHA256.c`), for
/// the content checksum: spec/file-format.md#content-checksum
struct SHA256 {
    private var context = pdb_sha256()

    init() { pdb_sha256_init(&context) }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        pdb_sha256_update(&context, base, bytes.count)
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// Feeds `value` as 4 little-endian bytes.
    mutating func update(u32 value: UInt32) { withUnsafeBytes(of: value.littleEndian) { update($0) } }

    /// Feeds `value` as 8 little-endian bytes.
    mutating func update(u64 value: UInt64) { withUnsafeBytes(of: value.littleEndian) { update($0) } }

    /// The digest, as 64 lowercase hex digits. The hash is finished: feed no more.
    mutating func finalHex() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBufferPointer { pdb_sha256_final(&context, $0.baseAddress!) }
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
