import XCTest

@testable import PartitionDB

final class PartitionTests: XCTestCase {
    func makeDatabase() throws -> (Database, FixedResolver, String) {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let resolver = FixedResolver()
        db.setResolver(resolver)
        return (db, resolver, path)
    }

    func testPutGetDeleteAcrossReopen() throws {
        let (db, resolver, path) = try makeDatabase()
        resolver.set("alice", eu)
        let users = try db.createPartition("users")
        let lsn = try users.write { tx in
            try tx.put("profiles", bytes("k1"), bytes("v1"), owner: try SubjectID("alice"))
            try tx.put("profiles", bytes("k2"), bytes("v2"), owner: try SubjectID("alice"))
            return tx.lsn
        }
        XCTAssertEqual(lsn, LSN(1))
        try users.read { tx in
            XCTAssertEqual(try tx.get("profiles", bytes("k1")), bytes("v1"))
            XCTAssertEqual(try tx.count("profiles"), 2)
            XCTAssertEqual(try tx.keys(ownedBy: try SubjectID("alice")).map { $0.key }, [bytes("k1"), bytes("k2")])
        }
        try users.write { tx in XCTAssertTrue(try tx.delete("profiles", bytes("k1"))) }
        try db.close()
        let reopened = try Database.open(at: path, region: eu)
        let again = try reopened.partition("users")
        try again.read { tx in
            XCTAssertNil(try tx.get("profiles", bytes("k1")))
            XCTAssertEqual(try tx.get("profiles", bytes("k2")), bytes("v2"))
            XCTAssertEqual(try tx.count("profiles"), 1)
        }
        XCTAssertEqual(again.lastLSN, LSN(2))
        try reopened.close()
    }

    func testManyRecordsSplitAndMerge() throws {
        let (db, resolver, _) = try makeDatabase()
        resolver.set("s", eu)
        let p = try db.createPartition("p")
        let owner = try SubjectID("s")
        let n = 20000
        try p.write { tx in
            for i in 0..<n {
                try tx.put(
                    "t", bytes(String(format: "key%08d", (i * 7919) % n)),
                    bytes(String(repeating: "v", count: i % 300)), owner: owner)
            }
        }
        try p.read { tx in
            XCTAssertEqual(try tx.count("t"), n)
            var previous: [UInt8]? = nil
            var seen = 0
            try tx.scan("t") { record in
                if let previous { XCTAssertLessThan(compareBytes(previous, record.key), 0) }
                previous = record.key
                seen += 1
                return true
            }
            XCTAssertEqual(seen, n)
        }
        XCTAssertTrue(try p.check().isClean)
        try p.write { tx in
            for i in 0..<n where i % 10 != 0 { XCTAssertTrue(try tx.delete("t", bytes(String(format: "key%08d", i)))) }
        }
        let report = try p.check()
        XCTAssertTrue(report.isClean, "\(report.problems)")
        try p.read { tx in XCTAssertEqual(try tx.count("t"), n / 10) }
        try db.close()
    }

    /// A durable commit of more new pages than one writeback step (8 MiB) goes straight into the
    /// partition file, the disk starting on each step while the next is copied; every record is
    /// there after a reopen, and the file checks clean.
    func testALargeDirectCommitSurvivesReopen() throws {
        let (db, _, path) = try makeDatabase()
        let p = try db.globalPartition()
        let n = 3000
        func value(_ i: Int) -> [UInt8] { (0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
        try p.write { tx in
            for i in 0..<n { try tx.put("t", bytes(String(format: "key%06d", i)), value(i)) }
        }
        let fileSize = try XCTUnwrap(
            try FileManager.default.attributesOfItem(atPath: path + "/global.pdb")[.size] as? Int)
        XCTAssertGreaterThan(fileSize, 8 << 20, "the commit did not write its pages into the partition file")
        try db.close()
        let reopened = try Database.open(at: path, region: eu)
        let again = try reopened.globalPartition()
        try again.read { tx in
            XCTAssertEqual(try tx.count("t"), n)
            for i in stride(from: 0, to: n, by: 7) {
                XCTAssertEqual(try tx.get("t", bytes(String(format: "key%06d", i))), value(i))
            }
        }
        XCTAssertTrue(try again.check().isClean)
        try reopened.close()
    }

    /// A durable commit that rewrites many existing leaves moves them to new pages and frees the
    /// old ones (`relocationPages`, spec/file-format.md#relocated-commits); with relocation off
    /// the same commit changes the leaves in place and frees nothing. Both keep every record.
    func testACommitChangingManyExistingPagesMovesThem() throws {
        for relocates in [true, false] {
            let path = try temporaryDirectory(self)
            var options = Options()
            options.relocationPages = relocates ? 8 : nil
            options.directWritePages = relocates ? 1024 : nil
            let db = try Database.create(at: path, region: eu, options: options)
            let p = try db.globalPartition()
            let n = 2000
            func value(_ i: Int, _ round: Int) -> [UInt8] { bytes(String(format: "%06d-%06d", round, i)) }
            try p.write(durability: .durable) { tx in
                for i in 0..<n { try tx.put("t", bytes(String(format: "key%06d", i)), value(i, 0)) }
            }
            let before = try p.info()
            // Same-size values: no leaf splits, so only a relocation can free pages.
            try p.write(durability: .durable) { tx in
                for i in 0..<n { try tx.put("t", bytes(String(format: "key%06d", i)), value(i, 1)) }
            }
            let after = try p.info()
            if relocates {
                XCTAssertGreaterThan(after.freePages, before.freePages, "the changed leaves were not moved")
                XCTAssertGreaterThan(after.pageCount, before.pageCount)
            } else {
                XCTAssertEqual(after.freePages, before.freePages)
                XCTAssertEqual(after.pageCount, before.pageCount)
            }
            try p.read { tx in
                XCTAssertEqual(try tx.count("t"), n)
                for i in stride(from: 0, to: n, by: 13) {
                    XCTAssertEqual(try tx.get("t", bytes(String(format: "key%06d", i))), value(i, 1))
                }
            }
            XCTAssertTrue(try p.check().isClean)
            try db.close()
        }
    }

    /// Lookups with the key in a caller's buffer find what the array forms find, for keys that
    /// differ in their first eight bytes, only after them, and by length (a prefix of another).
    func testLookupsWithKeyBuffersMatchArrayKeys() throws {
        let (db, _, _) = try makeDatabase()
        let p = try db.globalPartition()
        var keys: [[UInt8]] = []
        for i in 0..<3000 {
            keys.append(bytes(String(format: "%08d", i % 50) + String(format: "-%06d", i)))
            keys.append(bytes(String(format: "%08d", i)))
            keys.append(bytes(String(i % 7)))
        }
        try p.write { tx in for key in keys { try tx.put("t", key, key + key) } }
        try p.read { tx in
            for key in keys + [bytes("absent"), bytes("00000049-9"), [], bytes("0000004")] {
                let expected = try tx.get("t", key)
                let viaBuffer: [UInt8]? = try key.withUnsafeBytes { buffer in
                    try tx.withValue("t", buffer) { $0.map { Array($0) } }
                }
                XCTAssertEqual(viaBuffer, expected, "key \(String(decoding: key, as: UTF8.self))")
                let cursor = try tx.cursor("t")
                try key.withUnsafeBytes { try cursor.seek($0) }
                let arrayCursor = try tx.cursor("t")
                try arrayCursor.seek(key)
                XCTAssertEqual(cursor.isValid ? cursor.key : nil, arrayCursor.isValid ? arrayCursor.key : nil)
                if expected != nil { XCTAssertEqual(cursor.key, key) }
            }
        }
        try db.close()
    }

    /// `put` and `delete` with buffers do what the array forms do: two tables written the two
    /// ways (inline and overflow values, replacements, deletions of present and absent keys,
    /// an empty key refused) end with the same records and counts.
    func testWritesWithBuffersMatchArrayWrites() throws {
        let (db, _, _) = try makeDatabase()
        let p = try db.globalPartition()
        var random = SeededGenerator(seed: 77)
        try p.write { tx in
            for i in 0..<4000 {
                let key = bytes(String(format: "%06d", Int.random(in: 0..<1500, using: &random)))
                let value = [UInt8](repeating: UInt8(i & 0xFF), count: i % 97 == 0 ? 9_000 : i % 200)
                if i % 5 == 4 {
                    let viaArray = try tx.delete("arrays", key)
                    let viaBuffer = try key.withUnsafeBytes { try tx.delete("buffers", $0) }
                    XCTAssertEqual(viaArray, viaBuffer)
                } else {
                    try tx.put("arrays", key, value)
                    try key.withUnsafeBytes { key in
                        try value.withUnsafeBytes { value in try tx.put("buffers", key, value) }
                    }
                }
            }
            XCTAssertThrowsError(try [UInt8]().withUnsafeBytes { try tx.put("buffers", $0, $0) }) {
                XCTAssertEqual($0 as? PartitionDBError, .keyEmpty)
            }
        }
        try p.read { tx in
            var arrays: [Record] = []
            var buffers: [Record] = []
            try tx.scan("arrays") {
                arrays.append($0); return true
            }
            try tx.scan("buffers") {
                buffers.append($0); return true
            }
            XCTAssertEqual(arrays, buffers)
            XCTAssertEqual(try tx.count("arrays"), try tx.count("buffers"))
        }
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }
}

final class HandleTests: XCTestCase {
    func testClosedPartitionRefusesUseAndReopensFresh() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let global = try db.globalPartition()
        try global.write { try $0.put("t", bytes("k"), bytes("v")) }
        try global.close()
        XCTAssertFalse(global.isOpen)
        XCTAssertThrowsError(try global.read { _ in }) {
            XCTAssertEqual($0 as? PartitionDBError, .closed(partition: "global"))
        }
        XCTAssertThrowsError(try global.write { _ in }) {
            XCTAssertEqual($0 as? PartitionDBError, .closed(partition: "global"))
        }
        let reopened = try db.globalPartition()
        XCTAssertTrue(reopened.isOpen)
        try reopened.read { XCTAssertEqual(try $0.get("t", bytes("k")), bytes("v")) }
        try db.close()
        XCTAssertThrowsError(try db.globalPartition())
    }
}

final class ChecksumTests: XCTestCase {
    func testCRC32CKnownAnswers() {
        // The check value of CRC-32C, and a continuation that must equal one pass.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(data)
        let split = data.withUnsafeBytes {
            CRC32C.update(
                CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<333])),
                UnsafeRawBufferPointer(rebasing: $0[333...]))
        }
        XCTAssertEqual(whole, split)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    /// The CPU path (three lanes at once, combined by tables) agrees with the bitwise definition
    /// at every length around its block size, from any starting checksum.
    func testCRC32CMatchesTheBitwiseDefinition() {
        func reference(_ crc: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
            var c = ~crc
            for byte in bytes {
                c ^= UInt32(byte)
                for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            }
            return ~c
        }
        var random = SystemRandomNumberGenerator()
        let data = (0..<5_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        for length in [0, 1, 7, 8, 255, 767, 768, 769, 1_535, 1_536, 1_537, 4_096, 4_999]
            + (0..<40).map({ _ in
                Int.random(in: 0...5_000, using: &random)
            })
        {
            let start = UInt32.random(in: 0...UInt32.max, using: &random)
            let offset = Int.random(in: 0...(5_000 - length), using: &random)
            let slice = data[offset..<(offset + length)]
            let fast = slice.withUnsafeBytes { CRC32C.update(start, $0) }
            XCTAssertEqual(fast, reference(start, slice), "length \(length)")
        }
    }
}

final class UnmappedReadTests: XCTestCase {
    /// The `pread` path (mapPartitionFiles = false) reads the same data, and damage is a typed error.
    func testReadsWithoutTheMappingAndTypedDamage() throws {
        let path = try temporaryDirectory(self)
        var options = Options()
        options.mapPartitionFiles = false
        options.cachePages = 64
        let db = try Database.create(at: path, region: eu, options: options)
        let global = try db.globalPartition()
        try global.write { tx in
            for i in 0..<3000 {
                try tx.put("t", bytes(String(format: "k%05d", i)), [UInt8](repeating: UInt8(i & 0xFF), count: 150))
            }
        }
        try global.checkpoint()
        try global.read { tx in
            for i in stride(from: 0, to: 3000, by: 7) {
                XCTAssertEqual(
                    try tx.get("t", bytes(String(format: "k%05d", i))), [UInt8](repeating: UInt8(i & 0xFF), count: 150))
            }
        }
        try db.close()
        // Damage a leaf and read through pread: a typed error, not data.
        let file = path + "/global.pdb"
        var data = try Data(contentsOf: URL(fileURLWithPath: file))
        data[5 * 4096 + 200] ^= 0x40
        try data.write(to: URL(fileURLWithPath: file))
        let reopened = try Database.open(at: path, region: eu, options: options)
        let partition = try reopened.globalPartition()
        XCTAssertThrowsError(try partition.pager.page(PageNumber(5), in: partition.pager.latestSnapshot)) {
            guard case .corruptPage(_, 5, _) = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(try partition.check().damagedPages, [5])
        try reopened.close()
    }
}
