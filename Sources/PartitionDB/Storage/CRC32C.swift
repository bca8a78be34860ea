import CPartitionSupport

/// CRC-32C (Castagnoli), with the CPU's CRC32 instruction where there is one. Used for page,
/// frame and backup checksums. Where each checksum lives: spec/file-format.md#checksums
enum CRC32C {
    /// Continues a checksum `crc` (start with 0) over `bytes`.
    @inline(__always)
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return pdb_crc32c(crc, base, bytes.count)
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }
}
