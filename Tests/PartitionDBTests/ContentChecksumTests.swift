import Foundation
import XCTest

@testable import PartitionDB

/// `Partition.contentChecksum()` and the SHA-256 under it (spec/file-format.md#content-checksum).
final class ContentChecksumTests: XCTestCase {
    func sha256(_ bytes: [UInt8], pieces: Int = 1) -> String {
        var hash = SHA256()
        let size = max(1, bytes.count / pieces)
        var start = 0
        while start < bytes.count {
            hash.update(Array(bytes[start..<min(bytes.count, start + size)]))
            start += size
        }
        return hash.finalHex()
    }

    /// FIPS 180-2's test vectors, fed whole and in pieces that cross block boundaries.
    func testSHA256MatchesTheStandardVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ]
        for (text, digest) in vectors {
            for pieces in [1, 3, 7] { XCTAssertEqual(sha256(Array(text.utf8), pieces: pieces), digest, text) }
        }
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        XCTAssertEqual(sha256(million), expected)
        XCTAssertEqual(sha256(million, pieces: 999), expected)
    }

    /// The worked example of the spec: one table `t` with one record, key `k`, owner `alice`,
    /// value `v`; an empty partition sums to SHA-256 of nothing.
    func testTheEncodingIsTheSpecs() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        defer { try? db.close() }
        let resolver = FixedResolver()
        resolver.set("alice", eu)
        db.setResolver(resolver)
        let p = try db.createPartition("users")
        XCTAssertEqual(
            try p.contentChecksum(),
            ContentChecksum(
                lsn: .zero, tables: 0, records: 0,
                sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        try p.write { tx in try tx.put("t", bytes("k"), bytes("v"), owner: SubjectID("alice")) }
        XCTAssertEqual(
            try p.contentChecksum(),
            ContentChecksum(
                lsn: LSN(1), tables: 1, records: 1,
                sha256: "d926643c6e724e92c9f357f298ca44719a972b4ded870ec5c8fff453116ec5eb"))
    }

    /// The checksum follows the content, not the layout: compaction and a restored backup keep
    /// it; any change of a key, value or owner changes it.
    func testTheChecksumFollowsContentNotLayout() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        defer { try? db.close() }
        db.setResolver(RandomWorkload.resolver())
        let p = try db.createPartition("p")
        for round in 0..<4 {
            try p.write { tx in
                for i in 0..<300 {
                    let value = [UInt8](repeating: UInt8(i % 251), count: i % 7 == 0 ? 5000 : 40 + round)
                    try tx.put("t\(i % 3)", bytes("k\(i)"), value, owner: SubjectID("s\(i % 3)"))
                }
            }
        }
        try p.write { tx in for i in stride(from: 0, to: 300, by: 2) { _ = try tx.delete("t\(i % 3)", bytes("k\(i)")) }
        }
        let before = try p.contentChecksum()
        XCTAssertEqual(before.records, 150)
        XCTAssertEqual(before.tables, 3)

        _ = try p.compact()
        XCTAssertEqual(try p.contentChecksum(), before, "compaction moves pages, not content")

        let backup = path + "/p.backup"
        _ = try p.backup(to: backup)
        let other = try temporaryDirectory(self, "other")
        let copy = try Database.create(at: other, region: eu)
        defer { try? copy.close() }
        try copy.restore(from: backup)
        XCTAssertEqual(try copy.partition("p").contentChecksum(), before)

        try p.write { tx in try tx.put("t1", bytes("k1"), [1], owner: SubjectID("s1")) }
        let changed = try p.contentChecksum()
        XCTAssertNotEqual(changed.sha256, before.sha256)
        XCTAssertEqual(changed.lsn, before.lsn.next)
        // The same key and value under another owner is other content.
        try p.write { tx in try tx.put("t1", bytes("k1"), [1], owner: SubjectID("s2")) }
        XCTAssertNotEqual(try p.contentChecksum().sha256, changed.sha256)
    }
}
