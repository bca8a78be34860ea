import CZstd

/// How the chunks of one snapshot carry their pages (spec/replication.md#snapshots).
public enum SnapshotEncoding: UInt8, Sendable {
    /// The pages' bytes as they are.
    case pages = 0
    /// One zstd frame per chunk, whose content is the chunk's pages.
    case zstd = 1
}

/// The pages of one `snapshot chunk` message: a run of whole pages of the partition file from
/// its first page number, as they are or as one zstd frame (spec/replication.md#snapshots). Like
/// `ChangeBatch`, no networking; decoding checks every length before it allocates or decompresses,
/// and the engine then checks every page (`IncomingPartition`).
public enum SnapshotChunk {
    /// The most page bytes of one chunk, so a hostile chunk cannot make the replica allocate more.
    public static let maxBytes = 16 << 20

    /// The chunk message for `pages` (whole pages of `pageSize` bytes from page `firstPage`).
    /// `level` is zstd's compression level for `.zstd` (negative levels trade ratio for speed).
    public static func message(
        firstPage: UInt32, pages: [UInt8], pageSize: Int, encoding: SnapshotEncoding, level: Int32 = 1
    ) throws -> Message {
        precondition(!pages.isEmpty && pages.count % pageSize == 0, "a chunk holds whole pages")
        precondition(pages.count <= maxBytes, "a chunk larger than the protocol allows")
        let count = UInt32(pages.count / pageSize)
        switch encoding {
        case .pages:
            return .snapshotChunk(firstPage: firstPage, pages: count, bytes: pages)
        case .zstd:
            return .snapshotChunk(
                firstPage: firstPage, pages: count, bytes: try ChangeBatch.compress(pages, level: level))
        }
    }

    /// The page bytes of a chunk of `pages` pages of `pageSize` bytes, checked: exactly that many
    /// bytes, decompressed from exactly one frame for `.zstd`. (Each page's own checksum is
    /// verified by the engine as it is written.)
    public static func pages(_ bytes: [UInt8], pages: UInt32, pageSize: Int, encoding: SnapshotEncoding) throws
        -> [UInt8]
    {
        let length = Int(pages) * pageSize
        guard length <= maxBytes else {
            throw ResidencyError.malformedMessage(
                reason: "a snapshot chunk of \(pages) pages of \(pageSize) bytes exceeds the limit")
        }
        switch encoding {
        case .pages:
            guard bytes.count == length else {
                throw ResidencyError.malformedMessage(
                    reason: "a snapshot chunk of \(bytes.count) bytes does not hold \(pages) pages")
            }
            return bytes
        case .zstd:
            return try decompress(bytes, length: length)
        }
    }

    /// Decompresses one zstd frame that must hold exactly `length` bytes.
    static func decompress(_ bytes: [UInt8], length: Int) throws -> [UInt8] {
        let stated = bytes.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard stated == UInt64(length) else {
            throw ResidencyError.malformedMessage(reason: "a snapshot chunk's zstd frame does not hold \(length) bytes")
        }
        let frame = bytes.withUnsafeBytes { ZSTD_findFrameCompressedSize($0.baseAddress, $0.count) }
        guard ZSTD_isError(frame) == 0, frame == bytes.count else {
            throw ResidencyError.malformedMessage(reason: "a snapshot chunk is not exactly one zstd frame")
        }
        var output = [UInt8](repeating: 0, count: length)
        let size = bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { target in
                ZSTD_decompress(target.baseAddress, target.count, source.baseAddress, source.count)
            }
        }
        guard ZSTD_isError(size) == 0, size == length else {
            throw ResidencyError.malformedMessage(reason: "a snapshot chunk's zstd frame does not decompress")
        }
        return output
    }
}
