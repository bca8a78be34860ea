import CZstd
import PartitionDB

/// The change sets of consecutive commits in one `batch` message (spec/replication.md#batches):
/// uncompressed, for each commit its LSN (u64), page count (u32), number of page images (u32)
/// and page size (u32), then each image's page number (u32) and bytes; compressed as zstd frames
/// whose contents, in order, are those bytes: one frame for the whole batch, or, as a primary
/// ships them, one frame per commit (its retained record's, sent without compressing again).
/// Decoding checks everything before a single change set is handed out, so a bad batch is
/// refused whole.
public enum ChangeBatch {
    /// The most uncompressed bytes of one batch; a shipper cuts batches at this size.
    public static let maxUncompressedBytes = 16 << 20
    /// The largest page size a batch carries (the engine's maximum).
    static let maxPageSize = 65_536

    /// Encodes `changes` (consecutive LSNs of one file id, at least one) as a batch message.
    public static func message(_ changes: [ChangeSet], level: Int32 = 3) throws -> Message {
        precondition(!changes.isEmpty, "a batch holds at least one commit")
        var writer = ByteWriter()
        for change in changes {
            precondition(change.fileID == changes[0].fileID, "a batch holds commits of one partition file")
            writer.u64(change.lsn.rawValue)
            writer.u32(change.pageCount)
            writer.u32(UInt32(change.pages.count))
            writer.u32(UInt32(change.pages.first?.bytes.count ?? 0))
            for page in change.pages {
                writer.u32(page.number)
                writer.bytes.append(contentsOf: page.bytes)
            }
        }
        let compressed = try compress(writer.bytes, level: level)
        return .batch(
            fileID: changes[0].fileID, firstLSN: changes[0].lsn.rawValue, count: UInt32(changes.count),
            uncompressedLength: UInt32(writer.bytes.count), compressed: compressed)
    }

    /// The change sets of a batch message, checked: the decompressed length is the stated one,
    /// there are exactly `count` commits with LSNs from `firstLSN` on, and each is well formed.
    /// (Each page's own checksum is verified when the replica applies it.)
    public static func changes(
        fileID: [UInt8], firstLSN: UInt64, count: UInt32, uncompressedLength: UInt32, compressed: [UInt8]
    ) throws -> [ChangeSet] {
        guard Int(uncompressedLength) <= maxUncompressedBytes else {
            throw ResidencyError.malformedMessage(reason: "a batch of \(uncompressedLength) bytes exceeds the limit")
        }
        let bytes = try decompress(compressed, length: Int(uncompressedLength))
        var reader = ByteReader(bytes)
        var result: [ChangeSet] = []
        result.reserveCapacity(Int(min(count, 4096)))
        for i in 0..<UInt64(count) {
            let lsn = try reader.u64()
            guard lsn == firstLSN + i else {
                throw ResidencyError.malformedMessage(
                    reason: "commit \(i) of a batch from LSN \(firstLSN) holds LSN \(lsn)")
            }
            let pageCount = try reader.u32()
            let images = Int(try reader.u32())
            let pageSize = Int(try reader.u32())
            guard images >= 1, pageSize >= 512, pageSize <= maxPageSize, pageSize.nonzeroBitCount == 1,
                images <= reader.remaining / (pageSize + 4)
            else {
                throw ResidencyError.malformedMessage(
                    reason: "commit \(lsn) has \(images) page images of \(pageSize) bytes")
            }
            var pages: [ChangeSet.PageImage] = []
            pages.reserveCapacity(images)
            for _ in 0..<images {
                let number = try reader.u32()
                pages.append(.init(number: number, bytes: try reader.take(pageSize)))
            }
            result.append(ChangeSet(lsn: LSN(lsn), fileID: fileID, pageCount: pageCount, pages: pages))
        }
        try reader.finish()
        return result
    }

    static func compress(_ bytes: [UInt8], level: Int32) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
        let size = bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { target in
                ZSTD_compress(target.baseAddress, target.count, source.baseAddress, source.count, level)
            }
        }
        guard ZSTD_isError(size) == 0 else {
            throw ResidencyError.malformedMessage(reason: "zstd: \(String(cString: ZSTD_getErrorName(size)))")
        }
        output.removeSubrange(size...)
        return output
    }

    /// A batch message of commits already compressed one by one: `frames` is their zstd frames
    /// concatenated (the retained log's records), `uncompressedLength` the sum of their contents.
    static func message(
        fileID: [UInt8], firstLSN: UInt64, count: Int, uncompressedLength: Int, frames: [UInt8]
    ) -> Message {
        precondition(count >= 1 && uncompressedLength <= maxUncompressedBytes, "a batch within the limits")
        return .batch(
            fileID: fileID, firstLSN: firstLSN, count: UInt32(count), uncompressedLength: UInt32(uncompressedLength),
            compressed: frames)
    }

    /// Decompresses zstd frames that must hold exactly `length` bytes together, each stating
    /// its content size (checked before anything is allocated for them).
    static func decompress(_ bytes: [UInt8], length: Int) throws -> [UInt8] {
        let stated: UInt64? = bytes.withUnsafeBytes { all in
            var total: UInt64 = 0
            var offset = 0
            while offset < all.count {
                let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                let content = ZSTD_getFrameContentSize(rest.baseAddress, rest.count)
                let frame = ZSTD_findFrameCompressedSize(rest.baseAddress, rest.count)
                // Unknown or error sizes are the largest values; a frame's size is at least 1.
                guard content <= UInt64(maxUncompressedBytes), ZSTD_isError(frame) == 0, frame > 0 else { return nil }
                total += content
                guard total <= UInt64(maxUncompressedBytes) else { return nil }
                offset += frame
            }
            return total
        }
        guard stated == UInt64(length) else {
            throw ResidencyError.malformedMessage(reason: "a batch's compressed frames do not hold \(length) bytes")
        }
        var output = [UInt8](repeating: 0, count: length)
        let size = bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { target in
                ZSTD_decompress(target.baseAddress, target.count, source.baseAddress, source.count)
            }
        }
        guard ZSTD_isError(size) == 0, size == length else {
            throw ResidencyError.malformedMessage(reason: "a batch's compressed bytes do not decompress")
        }
        return output
    }
}
