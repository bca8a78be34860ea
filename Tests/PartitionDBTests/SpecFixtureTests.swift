import Foundation
import XCTest

@testable import PartitionDB

/// `spec/` and the code cannot disagree silently: a database of the current format, made by the
/// current code, is kept in `Tests/Fixtures/format-2`; it must open, read and check clean, the
/// code must still write exactly it, and the hex example of the header page in
/// `spec/file-format.md` must be its first bytes.
///
/// `PDB_WRITE_FIXTURES=1 swift test --filter SpecFixtureTests` rewrites the fixture (after a
/// format change, which bumps the format version: keep the old fixture then, for the backward
/// compatibility test of the new version) and prints the hex block to paste into the spec.
final class SpecFixtureTests: XCTestCase {
    /// The package root (this file is `Tests/PartitionDBTests/SpecFixtureTests.swift`).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixture = packageRoot.appendingPathComponent("Tests/Fixtures/format-\(PartitionHeader.formatVersion)")
        .path
    static let spec = packageRoot.appendingPathComponent("spec/file-format.md").path
    static let files = ["PARTITIONDB", "global.pdb", "users.pdb"]
    static let pageSize = 4096

    static let photo = [UInt8](repeating: 0xA5, count: 6000)
    static let records: [(key: String, value: [UInt8])] = [
        ("alice", bytes("Alice Example")), ("alice/email", bytes("alice@example.org")), ("alice/photo", photo),
    ]

    /// Makes the fixture database at `path`: a partition `users` in region `eu` with one table of
    /// three records of subject `alice`, one of them in an overflow chain; closed, so the logs are
    /// empty and only the files in `files` matter.
    static func makeFixture(at path: String) throws {
        let db = try Database.create(at: path, region: eu)
        let resolver = FixedResolver()
        resolver.set("alice", eu)
        db.setResolver(resolver)
        let users = try db.createPartition("users")
        try users.write { tx in
            for record in records { try tx.put("people", bytes(record.key), record.value, owner: SubjectID("alice")) }
        }
        try db.close()
    }

    func data(_ directory: String, _ file: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
    }

    func testCurrentCodeWritesTheFixture() throws {
        let fresh = try temporaryDirectory(self)
        try SpecFixtureTests.makeFixture(at: fresh)
        if ProcessInfo.processInfo.environment["PDB_WRITE_FIXTURES"] == "1" {
            let fixture = SpecFixtureTests.fixture
            try? FileManager.default.removeItem(atPath: fixture)
            try FileManager.default.createDirectory(atPath: fixture, withIntermediateDirectories: true)
            for file in SpecFixtureTests.files {
                try data(fresh, file).write(to: URL(fileURLWithPath: fixture + "/" + file))
            }
            print("fixture written to \(fixture); its header for spec/file-format.md:")
            print(SpecFixtureTests.hexExample(try data(fixture, "users.pdb")))
        }
        // Every byte equal, except what each creation draws at random: page 0's file id, and so
        // its checksum.
        for file in SpecFixtureTests.files {
            let stored = try data(SpecFixtureTests.fixture, file)
            let written = try data(fresh, file)
            XCTAssertEqual(stored.count, written.count, file)
            guard file.hasSuffix(".pdb") else {
                XCTAssertEqual(stored, written, file)
                continue
            }
            XCTAssertEqual(stored.count % SpecFixtureTests.pageSize, 0, file)
            let random = Set(0..<4).union(24..<40)
            for offset in 0..<min(stored.count, written.count) where stored[offset] != written[offset] {
                XCTAssertTrue(random.contains(offset), "\(file) differs at byte \(offset): the format changed")
                if !random.contains(offset) { break }
            }
        }
    }

    func testFixtureOpensReadsAndChecksClean() throws {
        let copy = try temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for file in SpecFixtureTests.files {
            try data(SpecFixtureTests.fixture, file).write(to: URL(fileURLWithPath: copy + "/" + file))
        }
        let db = try Database.open(at: copy, region: eu)
        defer { try? db.close() }
        XCTAssertEqual(try db.partitionNames().sorted(), ["global", "users"])
        let users = try db.partition("users")
        XCTAssertEqual(users.lastLSN, LSN(1))
        try users.read { tx in
            XCTAssertEqual(try tx.tables(), ["people"])
            XCTAssertEqual(try tx.count("people"), SpecFixtureTests.records.count)
            for record in SpecFixtureTests.records {
                XCTAssertEqual(try tx.get("people", bytes(record.key)), record.value, record.key)
            }
            XCTAssertEqual(try tx.keys(ownedBy: SubjectID("alice")).map(\.table), ["people", "people", "people"])
        }
        for partition in [users, try db.globalPartition()] {
            let report = try partition.check()
            XCTAssertTrue(report.isClean, "\(partition.name): \(report.problems)")
        }
    }

    func testSpecHexExampleIsTheFixturesHeader() throws {
        let spec = try String(contentsOfFile: SpecFixtureTests.spec, encoding: .utf8)
        let example = try SpecFixtureTests.parseHexExample(spec)
        XCTAssertEqual(example.count, 48)
        let fixture = try data(SpecFixtureTests.fixture, "users.pdb")
        XCTAssertEqual(example, Array(fixture.prefix(48)), "spec/file-format.md's header example is not the fixture's")

        // A header written now says the same, but for its random checksum and file id.
        let fresh = try temporaryDirectory(self)
        try SpecFixtureTests.makeFixture(at: fresh)
        let written = Array(try data(fresh, "users.pdb").prefix(48))
        for offset in 0..<48 where !(0..<4).contains(offset) && !(24..<40).contains(offset) {
            XCTAssertEqual(written[offset], example[offset], "byte \(offset) of a new header differs from the spec")
        }
        // The header table and the prose name the version the code writes (lines rewrapped).
        let version = PartitionHeader.formatVersion
        let flat = spec.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(flat.contains("| 16 | 4 | format version | \(version). |"), "header table")
        XCTAssertTrue(flat.contains("the magic, version \(version) and a valid page size"), "probePageSize")
        XCTAssertTrue(flat.contains("the magic, version \(version) (`badFormat` otherwise)"), "decode")
    }

    /// The bytes of the code block after "Example: the first 48 bytes" in the header-page section:
    /// on each line, the two-digit hex tokens before the first other token.
    static func parseHexExample(_ spec: String) throws -> [UInt8] {
        let marker = try XCTUnwrap(spec.range(of: "Example: the first 48 bytes"), "no header example in the spec")
        let rest = spec[marker.upperBound...]
        let open = try XCTUnwrap(rest.range(of: "```\n"))
        let close = try XCTUnwrap(rest[open.upperBound...].range(of: "```"))
        var result: [UInt8] = []
        for line in rest[open.upperBound..<close.lowerBound].split(separator: "\n") {
            for token in line.split(separator: " ") {
                guard token.count == 2, let byte = UInt8(token, radix: 16) else { break }
                result.append(byte)
            }
        }
        return result
    }

    /// The spec's hex block for the first 48 bytes of `file`.
    static func hexExample(_ file: Data) -> String {
        let notes = [
            "checksum, kind 1, \"PDBPART\\0\"", "version \(PartitionHeader.formatVersion), page size 4096, file id...",
            "...file id, region length 2, \"eu\"",
        ]
        var lines: [String] = []
        for row in 0..<3 {
            let start = file.startIndex + row * 16
            let hex: [String] = file[start..<(start + 16)].map { String(format: "%02x", $0) }
            lines.append(hex.joined(separator: " ") + "   " + notes[row])
        }
        return lines.joined(separator: "\n")
    }
}
