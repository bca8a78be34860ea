import CPartitionSupport
import PartitionDB

/// The bytes of a retained shipped-log segment (spec/replication.md#retained-segments): a header
/// naming the partition file and the first LSN, then one record per commit, each the commit's
/// change set compressed as a one-commit batch, checksummed with CRC-32C. No I/O here.
enum SegmentFormat {
    static let magic: [UInt8] = Array("PDBSEGMT".utf8)
    static let version: UInt16 = 1
    /// magic, version, reserved u16, file id (short field of 16 bytes), first LSN, CRC-32C.
    static let headerBytes = 8 + 2 + 2 + 1 + 16 + 8 + 4
    /// length u32, LSN u64, committed u64, uncompressed length u32, ..., CRC-32C u32.
    static let recordOverhead = 4 + 8 + 8 + 4 + 4
    /// The largest record accepted when reading: a batch's uncompressed limit, compressed.
    static let maxRecordBytes = ChangeBatch.maxUncompressedBytes + (1 << 20)
    static let suffix = ".segment"

    /// `NAME.pdb-shipped`, beside the partition file in the database directory.
    static func directory(database: String, partition: String) -> String {
        "\(database)/\(partition).pdb-shipped"
    }

    /// The file of the segment whose first commit is `lsn`: 20 decimal digits, so names sort.
    static func fileName(firstLSN lsn: UInt64) -> String {
        let digits = String(lsn)
        return String(repeating: "0", count: 20 - digits.count) + digits + suffix
    }

    static func header(fileID: [UInt8], firstLSN: UInt64) -> [UInt8] {
        precondition(fileID.count == 16, "a partition's file id is 16 bytes")
        precondition(firstLSN >= 1, "LSNs start at 1")
        var writer = ByteWriter()
        writer.bytes.append(contentsOf: magic)
        writer.u16(version)
        writer.u16(0)
        writer.short(fileID)
        writer.u64(firstLSN)
        writer.u32(crc(writer.bytes[...]))
        return writer.bytes
    }

    struct Header: Equatable {
        var fileID: [UInt8]
        var firstLSN: UInt64
    }

    /// The header at the start of `bytes`, checked whole; nil when it is not one.
    static func parseHeader(_ bytes: [UInt8]) -> Header? {
        guard bytes.count >= headerBytes, Array(bytes[0..<8]) == magic,
            crc(bytes[0..<headerBytes - 4]) == readU32(bytes, at: headerBytes - 4)
        else { return nil }
        var reader = ByteReader(bytes, from: 8, to: headerBytes - 4)
        guard (try? reader.u16()) == version, (try? reader.u16()) == 0, let fileID = try? reader.short(),
            fileID.count == 16, let first = try? reader.u64(), first >= 1
        else { return nil }
        return Header(fileID: fileID, firstLSN: first)
    }

    /// One commit's record. `committed` is the commit's wall-clock time in Unix milliseconds (the
    /// age bound of retention survives restarts).
    static func record(_ changes: ChangeSet, committed: UInt64) throws -> [UInt8] {
        guard case .batch(_, _, _, let length, let compressed) = try ChangeBatch.message([changes], level: 1) else {
            preconditionFailure("ChangeBatch.message makes a batch")
        }
        var writer = ByteWriter()
        writer.bytes.reserveCapacity(recordOverhead + compressed.count)
        writer.u32(UInt32(recordOverhead - 4 + compressed.count))
        writer.u64(changes.lsn.rawValue)
        writer.u64(committed)
        writer.u32(length)
        writer.bytes.append(contentsOf: compressed)
        writer.u32(crc(writer.bytes[...]))
        return writer.bytes
    }

    /// What a record's fixed fields say, once its checksum matched.
    struct Record: Equatable {
        var lsn: UInt64
        var committed: UInt64
        var uncompressedLength: UInt32
        /// The whole record's size in the file.
        var size: Int
    }

    enum Parsed: Equatable {
        case record(Record)
        /// The bytes end inside the record: the file ends here, or a write was cut short.
        case incomplete
        /// A complete record whose checksum or length is wrong.
        case damaged(String)
    }

    /// The record at `offset` of `bytes`, its checksum verified (not its compressed contents:
    /// `changes(of:)` decodes those).
    static func parseRecord(_ bytes: [UInt8], at offset: Int) -> Parsed {
        guard bytes.count - offset >= 4 else { return .incomplete }
        let rest = Int(readU32(bytes, at: offset))
        guard rest >= recordOverhead - 4, rest <= maxRecordBytes else {
            return .damaged("a record states a length of \(rest) bytes")
        }
        guard bytes.count - offset - 4 >= rest else { return .incomplete }
        let end = offset + 4 + rest
        guard crc(bytes[offset..<end - 4]) == readU32(bytes, at: end - 4) else {
            return .damaged("a record fails its checksum")
        }
        var reader = ByteReader(bytes, from: offset + 4, to: end - 4)
        guard let lsn = try? reader.u64(), let committed = try? reader.u64(), let length = try? reader.u32() else {
            return .damaged("a record is too short")
        }
        return .record(Record(lsn: lsn, committed: committed, uncompressedLength: length, size: 4 + rest))
    }

    /// Whether the record at `offset` states a length that ends exactly at the end of `bytes`:
    /// the last record of the file, whatever its checksum says (a write cut short or in progress).
    static func recordIsLast(_ bytes: [UInt8], at offset: Int) -> Bool {
        bytes.count - offset >= 4 && Int(readU32(bytes, at: offset)) == bytes.count - offset - 4
    }

    /// Where a record's zstd frame starts: after its length, LSN, time and uncompressed length.
    static let frameOffset = 4 + 8 + 8 + 4

    /// The zstd frame of a record made by `record(_:committed:)`, which holds the commit as a
    /// one-commit batch: a batch message of several commits is their frames concatenated.
    static func frame(ofRecord bytes: [UInt8]) -> ArraySlice<UInt8> {
        bytes[frameOffset..<(bytes.count - 4)]
    }

    /// A whole record (as `parseRecord` finds it) and its zstd frame, its checksum verified.
    static func checkedFrame(ofRecord bytes: [UInt8]) throws -> (record: Record, frame: ArraySlice<UInt8>) {
        guard case .record(let record) = parseRecord(bytes, at: 0), record.size == bytes.count else {
            throw ResidencyError.malformedMessage(reason: "a retained record is damaged")
        }
        return (record, frame(ofRecord: bytes))
    }

    /// The change set a whole record holds, every field checked.
    static func changes(ofRecord bytes: [UInt8], fileID: [UInt8]) throws -> ChangeSet {
        let (record, frame) = try checkedFrame(ofRecord: bytes)
        let changes = try ChangeBatch.changes(
            fileID: fileID, firstLSN: record.lsn, count: 1, uncompressedLength: record.uncompressedLength,
            compressed: Array(frame))
        return changes[0]
    }

    /// What a segment file's bytes hold: its header, its records in order while they are whole,
    /// checksummed and consecutive from the header's first LSN, and where and why reading stopped.
    struct Scan {
        var header: Header?
        var records: [(record: Record, offset: Int)] = []
        /// The offset after the last good record (the header's end when there is none).
        var end: Int
        /// Why the bytes after `end` are not records; nil when the file ends at `end`.
        var stop: Parsed?
    }

    static func scan(_ bytes: [UInt8]) -> Scan {
        guard let header = parseHeader(bytes) else {
            return Scan(
                header: nil, end: 0, stop: bytes.count < headerBytes ? .incomplete : .damaged("no segment header"))
        }
        var scan = Scan(header: header, end: headerBytes)
        var expected = header.firstLSN
        while scan.end < bytes.count {
            let parsed = parseRecord(bytes, at: scan.end)
            guard case .record(let record) = parsed else {
                scan.stop = parsed
                break
            }
            guard record.lsn == expected else {
                scan.stop = .damaged("a record holds LSN \(record.lsn) where \(expected) follows")
                break
            }
            scan.records.append((record, scan.end))
            scan.end += record.size
            guard expected < UInt64.max else {
                scan.stop = scan.end < bytes.count ? .damaged("records past the largest LSN") : nil
                break
            }
            expected += 1
        }
        return scan
    }

    private static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress, $0.count) }
    }

    private static func readU32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (offset..<offset + 4).reduce(0) { $0 << 8 | UInt32(bytes[$1]) }
    }
}
