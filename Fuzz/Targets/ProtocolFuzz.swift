import CPartitionSupport
import PartitionDB

@testable import Residency

/// Fuzz target `protocol`: the input is a byte stream from a peer (spec/replication.md#frames).
/// It is fed to `FrameDecoder` in pieces whose sizes the input's first byte picks; every batch
/// decoded is unpacked into change sets, and every snapshot chunk into pages. The same input runs
/// a second time as one frame with its length and checksum made right, so that mutations reach
/// the payload decoders. The input is
/// also read as a retained-log segment file (spec/replication.md#retained-segments), as found
/// and behind a valid header with one record whose length and checksum are made right. A
/// `ResidencyError` is a correct answer; a crash, a hang or another error type is a bug.
/// Method: spec/testing.md#fuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    decodeStream(bytes)
    if bytes.count >= 9 {
        // type, epoch and payload from the input; length and CRC-32C made valid.
        let body = Array(bytes.prefix(Frame.maxLength - 4))
        var frame = withUnsafeBytes(of: UInt32(body.count + 4).bigEndian) { Array($0) } + body
        let crc = body.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress!, $0.count) }
        frame += withUnsafeBytes(of: crc.bigEndian) { Array($0) }
        decodeStream(frame)
    }
    readSegment(bytes)
    if bytes.count >= 20 {
        var record = withUnsafeBytes(of: UInt32(bytes.count + 4).bigEndian) { Array($0) } + bytes
        let crc = record.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress!, $0.count) }
        record += withUnsafeBytes(of: crc.bigEndian) { Array($0) }
        let fileID = Array(repeating: UInt8(7), count: 16)
        let lsn = max(1, bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        readSegment(SegmentFormat.header(fileID: fileID, firstLSN: lsn) + record)
    }
    return 0
}

/// Scans the bytes as a segment file and decodes every record the scan accepts, as a restart of
/// `pdb serve` and `pdb check` do.
func readSegment(_ bytes: [UInt8]) {
    let scan = SegmentFormat.scan(bytes)
    precondition(scan.end <= bytes.count, "a scan past the end of the file")
    guard let header = scan.header else { return }
    for (record, offset) in scan.records {
        precondition(offset + record.size <= bytes.count, "a record past the end of the file")
        do {
            let changes = try SegmentFormat.changes(
                ofRecord: Array(bytes[offset..<offset + record.size]), fileID: header.fileID)
            precondition(changes.lsn.rawValue == record.lsn, "a record that decodes to another LSN")
        } catch is ResidencyError {
            continue
        } catch {
            fatalError("an error that is not a ResidencyError: \(error)")
        }
    }
}

func decodeStream(_ bytes: [UInt8]) {
    var decoder = FrameDecoder()
    let piece = max(1, Int(bytes.first ?? 1) % 64)
    var offset = 0
    do {
        while offset < bytes.count {
            let end = min(bytes.count, offset + piece)
            decoder.append(bytes[offset..<end])
            offset = end
            while let frame = try decoder.next() {
                // A decoded frame encodes back to the bytes it came from.
                let again = try Frame.decode(frame.encoded())
                precondition(again == frame, "a frame that does not round-trip")
                if case .batch(let fileID, let first, let count, let length, let compressed) = frame.message {
                    let changes = try ChangeBatch.changes(
                        fileID: fileID, firstLSN: first, count: count, uncompressedLength: length,
                        compressed: compressed)
                    precondition(changes.count == Int(count), "a batch with another number of commits")
                }
                if case .snapshotChunk(_, let count, let bytes) = frame.message {
                    // As either encoding, at the smallest page size: what a replica decodes.
                    for encoding in [SnapshotEncoding.pages, .zstd] {
                        if let pages = try? SnapshotChunk.pages(bytes, pages: count, pageSize: 4096, encoding: encoding)
                        {
                            precondition(pages.count == Int(count) * 4096, "a chunk with another number of pages")
                        }
                    }
                }
            }
        }
    } catch is ResidencyError {
        return
    } catch {
        fatalError("an error that is not a ResidencyError: \(error)")
    }
}
