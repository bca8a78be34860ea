import CPartitionSupport
import Foundation
import PartitionDB
import XCTest

@testable import Residency

/// The wire protocol's frames and batches (spec/replication.md#frames): every message round-trips,
/// and damaged, cut or hostile bytes are refused with `malformedMessage`, never a trap.
final class ProtocolTests: XCTestCase {
    private let samples: [Message] = [
        .hello(protocolVersion: 1, partition: "users", fileID: Array(repeating: 7, count: 16), durableLSN: 42),
        .streamStart(fileID: [1, 2, 3], region: "eu", after: 9),
        .snapshotBegin(fileID: [4], region: "global", lsn: 3, pageSize: 4096, pageCount: 1 << 31, encoding: .zstd),
        .snapshotChunk(firstPage: 256, pages: 2, bytes: [0, 1, 2, 255]),
        .snapshotEnd,
        .acknowledgement(durableLSN: 77),
        .refusal(code: "border", message: "no"),
        .request(arguments: ["get", "pdb://x:1", "users", "t", "k"], input: Array("line\n".utf8)),
        .output(stream: 2, bytes: Array("error: x\n".utf8)),
        .exit(status: 64),
        .heartbeat(lastLSN: 5, sentMilliseconds: 1_700_000_000_000),
        .committed(lsn: 1 << 40),
        .assignHome(subject: "subject-1", region: "eu"),
        .homeAssigned(created: true, home: "us", lsn: 12),
        .fence(partition: "users", primary: "eu-2"),
        .fenced(fileID: [9, 9], durableLSN: 31, copyEpoch: 2),
        .newerEpoch(partition: "global", primary: "us-1"),
        .cut(commonLSN: 17),
        .publishKey(kid: "k1", region: "eu", entry: Array(#"{"v":1,"region":"eu"}"#.utf8)),
        .keyPublished(lsn: 99),
    ]

    func testEveryMessageRoundTrips() throws {
        for message in samples + [try ChangeBatch.message([change(1), change(2)])] {
            let frame = Frame(epoch: 3, message)
            var decoder = FrameDecoder()
            let bytes = frame.encoded()
            // Byte by byte: a frame is never taken before its last byte.
            for byte in bytes.dropLast() {
                decoder.append([byte])
                XCTAssertNil(try decoder.next())
            }
            decoder.append([bytes.last!])
            XCTAssertEqual(try decoder.next(), frame)
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
    }

    func testTheSpecTableNamesEveryTypeWithItsNumber() throws {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("spec/replication.md")
        let text = try String(contentsOf: spec, encoding: .utf8)
        let rows = text.split(separator: "\n").compactMap { line -> (Int, String)? in
            guard let match = line.wholeMatch(of: /\| (\d+) \| ([a-z ]+) \| .*/) else { return nil }
            return (Int(match.1)!, String(match.2))
        }
        let names: [MessageType: String] = [
            .hello: "hello", .streamStart: "stream start", .snapshotBegin: "snapshot begin",
            .snapshotChunk: "snapshot chunk", .snapshotEnd: "snapshot end", .batch: "batch",
            .acknowledgement: "acknowledgement", .refusal: "refusal", .request: "request", .output: "output",
            .exit: "exit", .heartbeat: "heartbeat", .committed: "committed",
            .assignHome: "assign home", .homeAssigned: "home assigned", .fence: "fence", .fenced: "fenced",
            .newerEpoch: "newer epoch", .cut: "cut", .publishKey: "publish key", .keyPublished: "key published",
        ]
        XCTAssertEqual(rows.count, MessageType.allCases.count)
        for (number, name) in rows {
            let type = try XCTUnwrap(MessageType(rawValue: UInt8(number)), "spec row \(number)")
            XCTAssertEqual(names[type], name)
        }
    }

    func testDamagedFramesAreRefused() throws {
        let bytes = Frame(epoch: 1, .acknowledgement(durableLSN: 1)).encoded()
        for i in bytes.indices {
            var flipped = bytes
            flipped[i] ^= 0x10
            XCTAssertThrowsError(try Frame.decode(flipped), "flip at \(i)")
        }
        // A hostile length is refused before anything is buffered for it.
        var decoder = FrameDecoder()
        decoder.append([0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try decoder.next())
        // Epoch 0, an unknown type, trailing payload bytes: each with a correct checksum.
        XCTAssertThrowsError(try Frame.decode(resealed(bytes) { $0[5...12] = [0, 0, 0, 0, 0, 0, 0, 0] }))
        XCTAssertThrowsError(try Frame.decode(resealed(bytes) { $0[4] = 200 }))
        XCTAssertThrowsError(try Frame.decode(resealed(bytes) { $0.insert(9, at: 21) }))
    }

    func testALongRefusalIsCutAtACharacterBoundary() throws {
        let long = String(repeating: "é", count: 40_000)
        let frame = try Frame.decode(Frame(epoch: 1, .refusal(code: "x", message: long)).encoded())
        guard case .refusal(_, let message) = frame.message else { return XCTFail("not a refusal") }
        XCTAssertEqual(message, String(repeating: "é", count: 32_768))
        // Bytes that are not UTF-8 in a refusal are refused, not repaired.
        var payload = ByteWriter()
        payload.short([0xE5, 0xE5])
        payload.long([])
        var body = [MessageType.refusal.rawValue] + withUnsafeBytes(of: UInt64(1).bigEndian) { Array($0) }
        body += payload.bytes
        let bytes =
            withUnsafeBytes(of: UInt32(body.count + 4).bigEndian) { Array($0) } + body
            + withUnsafeBytes(of: CRCForTests.crc32c(body).bigEndian) { Array($0) }
        XCTAssertThrowsError(try Frame.decode(bytes))
    }

    func testBatchesAreCheckedWhole() throws {
        let good = try ChangeBatch.message([change(5), change(6)])
        guard case .batch(let fileID, let first, let count, let length, let compressed) = good else {
            return XCTFail("not a batch")
        }
        let changes = try ChangeBatch.changes(
            fileID: fileID, firstLSN: first, count: count, uncompressedLength: length, compressed: compressed)
        XCTAssertEqual(changes, [change(5), change(6)])
        // A wrong first LSN, count, length, or damaged compressed bytes.
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: 4, count: count, uncompressedLength: length, compressed: compressed))
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: first, count: 3, uncompressedLength: length, compressed: compressed))
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: first, count: count, uncompressedLength: length - 1, compressed: compressed))
        var damaged = compressed
        damaged[damaged.count / 2] ^= 0xFF
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: first, count: count, uncompressedLength: length, compressed: damaged))
    }

    /// A primary ships the retained records' frames (one per commit) concatenated: they decode to
    /// the same change sets as one frame of the whole batch; a frame too few, bytes after the
    /// last, or a frame whose header was altered is refused.
    func testABatchOfOneFramePerCommitDecodesAsOne() throws {
        func frame(_ lsn: UInt64) throws -> (length: UInt32, bytes: [UInt8]) {
            guard case .batch(_, _, _, let length, let compressed) = try ChangeBatch.message([change(lsn)], level: 1)
            else { throw ResidencyError.malformedMessage(reason: "not a batch") }
            return (length, compressed)
        }
        let frames = try [5, 6, 7].map { try frame($0) }
        let fileID = change(5).fileID
        let length = frames.reduce(0) { $0 + $1.length }
        let message = ChangeBatch.message(
            fileID: fileID, firstLSN: 5, count: 3, uncompressedLength: Int(length),
            frames: frames.flatMap(\.bytes))
        guard case .batch(_, let first, let count, let stated, let compressed) = message else {
            return XCTFail("not a batch")
        }
        XCTAssertEqual(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: first, count: count, uncompressedLength: stated, compressed: compressed),
            [change(5), change(6), change(7)])
        let two = frames[0].bytes + frames[1].bytes
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: 5, count: 3, uncompressedLength: length, compressed: two))
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: 5, count: 3, uncompressedLength: length, compressed: compressed + [0x28]))
        // A frame whose header's content-size field was altered.
        var unsized = frames[0].bytes
        unsized[4] &= ~0xC0
        XCTAssertThrowsError(
            try ChangeBatch.changes(
                fileID: fileID, firstLSN: 5, count: 1, uncompressedLength: frames[0].length, compressed: unsized))
    }

    func testSnapshotChunksCarryExactlyTheirPages() throws {
        var random = SystemRandomNumberGenerator()
        let pages = (0..<3 * 4096).map { i in i % 7 == 0 ? UInt8.random(in: 0...255, using: &random) : 0 }
        for encoding in [SnapshotEncoding.pages, .zstd] {
            for level: Int32 in [1, -5] {
                let message = try SnapshotChunk.message(
                    firstPage: 9, pages: pages, pageSize: 4096, encoding: encoding, level: level)
                guard case .snapshotChunk(let first, let count, let bytes) = message else {
                    return XCTFail("\(message)")
                }
                XCTAssertEqual(first, 9)
                XCTAssertEqual(count, 3)
                XCTAssertEqual(try SnapshotChunk.pages(bytes, pages: 3, pageSize: 4096, encoding: encoding), pages)
                // Another count than the bytes hold, a cut or lengthened frame: refused.
                for wrong in [2, 4] as [UInt32] {
                    XCTAssertThrowsError(
                        try SnapshotChunk.pages(bytes, pages: wrong, pageSize: 4096, encoding: encoding))
                }
                XCTAssertThrowsError(
                    try SnapshotChunk.pages(Array(bytes.dropLast()), pages: 3, pageSize: 4096, encoding: encoding))
                XCTAssertThrowsError(try SnapshotChunk.pages(bytes + [0], pages: 3, pageSize: 4096, encoding: encoding))
            }
        }
        // A count that would need more than the limit is refused before anything is allocated.
        XCTAssertThrowsError(try SnapshotChunk.pages([], pages: UInt32.max, pageSize: 65_536, encoding: .zstd))
        // No pages, a run past page 2^32, an unknown encoding: refused by the decoder.
        let chunk = Frame(epoch: 1, .snapshotChunk(firstPage: 0, pages: 1, bytes: [1])).encoded()
        XCTAssertThrowsError(try Frame.decode(resealed(chunk) { $0[13...20] = [0, 0, 0, 0, 0, 0, 0, 0] }))
        XCTAssertThrowsError(try Frame.decode(resealed(chunk) { $0[13...20] = [255, 255, 255, 255, 0, 0, 0, 1] }))
        let begin = Frame(
            epoch: 1,
            .snapshotBegin(fileID: [1], region: "eu", lsn: 1, pageSize: 4096, pageCount: 3, encoding: .pages)
        ).encoded()
        XCTAssertThrowsError(try Frame.decode(resealed(begin) { $0[$0.count - 1] = 7 }))
    }

    private func change(_ lsn: UInt64) -> ChangeSet {
        ChangeSet(
            lsn: LSN(lsn), fileID: Array(repeating: 9, count: 16), pageCount: 3,
            pages: [.init(number: 0, bytes: Array(repeating: UInt8(lsn), count: 4096))])
    }

    /// `bytes` changed by `edit`, with its length and checksum made right again.
    private func resealed(_ bytes: [UInt8], _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
        var body = Array(bytes[4..<bytes.count - 4])
        var whole = [UInt8](repeating: 0, count: 4) + body
        edit(&whole)
        body = Array(whole[4...])
        var frame = withUnsafeBytes(of: UInt32(body.count + 4).bigEndian) { Array($0) } + body
        let crc = CRCForTests.crc32c(body)
        frame += withUnsafeBytes(of: crc.bigEndian) { Array($0) }
        return frame
    }
}

enum CRCForTests {
    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress!, $0.count) }
    }
}
