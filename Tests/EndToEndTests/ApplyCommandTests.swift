import Foundation
import XCTest

/// `pdb apply`: transactions from JSON lines, aborts, end of input, and copying with scan.
final class ApplyCommandTests: PDBTestCase {
    func put(_ key: String, _ value: String, owner: String = "alice", table: String = "t") -> String {
        #"{"op":"put","table":"\#(table)","key":"\#(key)","value":"\#(value)","owner":"\#(owner)"}"#
    }

    let commit = #"{"op":"commit"}"#

    /// The (key, value) pairs of table `t` in `users`.
    func content(_ database: String? = nil, table: String = "t") throws -> [String] {
        let result = try pdb("scan", database ?? db, "users", table, "--json")
        assertExit(result, 0)
        return try result.objects().map { "\($0["key"] as? String ?? "?")=\($0["value"] as? String ?? "?")" }
    }

    /// Each output line in short: `committed LSN`, `aborted CODE` or `rolled_back N`.
    func summary(_ result: RunResult) throws -> [String] {
        try result.objects().map { line -> String in
            if let lsn = line["committed"] as? Int { return "committed \(lsn)" }
            if line["aborted"] as? Bool == true {
                return "aborted \((line["error"] as? [String: Any])?["code"] as? String ?? "?")"
            }
            if let operations = line["rolled_back"] as? Int { return "rolled_back \(operations)" }
            return "unexpected \(line)"
        }
    }

    func testTransactionsAbortsAndFinalContent() throws {
        try makeDatabase()
        let input = [
            put("a", "1"), put("b", "2"), commit,  // 1-3: committed 1
            put("c", "3"), "this is not json", put("d", "4"), commit,  // 4-7: aborted; c rolled back, d discarded
            "",
            put("e", "5", owner: "bob"), commit,  // 9-10: bob lives in us: aborted; its commit discarded
            #"{"op":"del","table":"t","key":"a"}"#, commit,  // 11-12: committed 2
            put("f", "6", owner: "carol"), commit,  // 13-14: no home: aborted
            #"{"op":"put","table":"t","key":"g"}"#, "{also not json", commit,  // 15-17: no value: aborted
            #"{"op":"put","table":"t","key":"h","value_b64":"***","owner":"alice"}"#,  // 18: bad base64: aborted
            #"{"op":"commit","table":7}"#, put("j", "8"), #"{"op":"commit","note":"x"}"#,  // 19-21: discarded
            #"{"op":"frob"}"#, commit,  // 22-23: unknown op: aborted
            put("i", "7"), commit,  // 24-25: committed 3
        ]
        let result = try pdb("apply", db, "users", stdin: input.joined(separator: "\n") + "\n")
        assertExit(result, 1)  // Some transactions aborted.
        XCTAssertEqual(
            try summary(result),
            [
                "committed 1", "aborted bad_input", "aborted cross_region_write", "committed 2",
                "aborted unknown_home", "aborted bad_input", "aborted bad_input", "aborted bad_input", "committed 3",
            ])
        var numbers: [String] = []
        for line in try result.objects() where line["aborted"] != nil {
            let error = try XCTUnwrap(line["error"] as? [String: Any])
            let message = error["message"] as? String ?? ""
            XCTAssertFalse(message.isEmpty)
            if error["code"] as? String == "bad_input" { numbers.append(String(message.prefix { $0 != ":" })) }
        }
        // Line numbers count every line, the discarded ones included.
        XCTAssertEqual(numbers, ["line 5", "line 15", "line 18", "line 22"])
        // The tail of an aborted transaction is not applied on its own: no d, no j.
        let content = try content()
        XCTAssertFalse(content.contains("d=4"), "\(content)")
        XCTAssertFalse(content.contains("j=8"), "\(content)")
        XCTAssertEqual(content, ["b=2", "i=7"])
        assertExit(try pdb("check", db), 0)
    }

    /// A check line is a compare and set: the transaction commits only if every record it
    /// names holds what the line says (or is absent, without a value).
    func testCheckLinesCommitOnlyWhenTheRecordsAreUnchanged() throws {
        try makeDatabase()
        func check(_ key: String, _ value: String? = nil, table: String = "t") -> String {
            let value = value.map { #","value":"\#($0)""# } ?? ""
            return #"{"op":"check","table":"\#(table)","key":"\#(key)"\#(value)}"#
        }
        let binary = Data([0xFF, 0x00]).base64EncodedString()
        let input = [
            check("a", table: "missing"), put("a", "1"), commit,  // 1-3: absent in a missing table: committed 1
            check("a"), put("a", "2"), commit,  // 4-6: a exists: aborted
            check("a", "1"), put("a", "2"), commit,  // 7-9: a is 1: committed 2
            check("a", "1"), put("b", "9"), commit,  // 10-12: a is 2 now: aborted, no b
            check("z", "1"), put("b", "9"), commit,  // 13-15: z is absent: aborted
            #"{"op":"check","table":"t"}"#, commit,  // 16-17: no key: aborted
            #"{"op":"check","table":"t","key":"a","value":"2","value_b64":"Mg=="}"#, commit,  // 18-19: both
            #"{"op":"put","table":"t","key":"c","value_b64":"\#(binary)","owner":"alice"}"#, commit,  // 20-21: 3
            #"{"op":"check","table":"t","key":"c","value_b64":"\#(binary)"}"#, put("d", "4"), commit,  // 22-24: 4
        ]
        let result = try pdb("apply", db, "users", stdin: input.joined(separator: "\n") + "\n")
        assertExit(result, 1)
        XCTAssertEqual(
            try summary(result),
            [
                "committed 1", "aborted check_failed", "committed 2", "aborted check_failed", "aborted check_failed",
                "aborted bad_input", "aborted bad_input", "committed 3", "committed 4",
            ])
        let messages = try result.objects().compactMap { ($0["error"] as? [String: Any])?["message"] as? String }
        XCTAssertEqual(
            messages.first,
            "line 4: table t key a exists; the check wants it absent; "
                + "nothing of the transaction was applied (read the record again)")
        XCTAssertTrue(messages[1].contains("key a holds another value"), messages[1])
        XCTAssertTrue(messages[2].contains("key z is absent"), messages[2])
        XCTAssertEqual(try content(), ["a=2", "c=?", "d=4"])
    }

    func testEndOfInputRollsBackTheOpenTransaction() throws {
        try makeDatabase()
        let input = [put("a", "1"), commit, put("b", "2"), #"{"op":"del","table":"t","key":"a"}"#]
        let result = try pdb("apply", db, "users", "--no-sync", stdin: input.joined(separator: "\n"))
        assertExit(result, 1)
        XCTAssertEqual(result.lines, [#"{"committed":1}"#, #"{"rolled_back":2}"#])
        XCTAssertEqual(try content(), ["a=1"])

        // Input that ends right after a commit prints nothing more and exits 0.
        let clean = try pdb("apply", db, "users", stdin: put("c", "3") + "\n" + commit + "\n\n")
        assertExit(clean, 0)
        XCTAssertEqual(clean.lines, [#"{"committed":2}"#])
        let empty = try pdb("apply", db, "users", stdin: "")
        assertExit(empty, 0)
        XCTAssertEqual(empty.stdout, "")

        // Input that ends while the rest of an aborted transaction is being discarded prints
        // nothing more: one aborted line, no rolled_back line.
        let cut = try pdb(
            "apply", db, "users", stdin: [put("d", "4"), "[", put("e", "5"), "", "{"].joined(separator: "\n"))
        assertExit(cut, 1)
        XCTAssertEqual(try summary(cut), ["aborted bad_input"])
        XCTAssertEqual(try content(), ["a=1", "c=3"])
    }

    func testScanPipedIntoApplyCopiesATable() throws {
        try makeDatabase()
        let binaryKey = Data([0x00, 0xFF, 0xFE]).base64EncodedString()
        let binaryValue = Data([0x80, 0x81]).base64EncodedString()
        let input = [
            put("k1", "one"), put("k2", "two \\\"quoted\\\" \\n newline"), put("k3", "ünïcødé"),
            #"{"op":"put","table":"t","key_b64":"\#(binaryKey)","value_b64":"\#(binaryValue)","owner":"alice"}"#,
            commit,
        ]
        assertExit(try pdb("apply", db, "users", stdin: input.joined(separator: "\n")), 0)

        let copy = root.appendingPathComponent("copy").path
        assertExit(try pdb("init", copy, "--region", "eu"), 0)
        assertExit(try pdb("create-partition", copy, "users"), 0)
        assertExit(try pdb("home", "set", copy, "alice", "eu"), 0)
        let pipeline = try shell(
            #""$PDB" scan --json --with-commit "\#(db)" users t | "$PDB" apply "\#(copy)" users"#)
        assertExit(pipeline, 0)
        XCTAssertEqual(pipeline.lines, [#"{"committed":1}"#])

        let original = try pdb("scan", db, "users", "t", "--json")
        let copied = try pdb("scan", copy, "users", "t", "--json")
        assertExit(copied, 0)
        XCTAssertEqual(copied.stdout, original.stdout)
        XCTAssertEqual(copied.lines.count, 4)
        XCTAssertTrue(copied.stdout.contains(#""key_b64":"\#(binaryKey)""#), copied.stdout)
    }

    func testGarbageNeverCrashes() throws {
        try makeDatabase()
        let garbage = [
            "{", "}", "[]", "null", "42", #""put""#, #"{"op":null}"#, #"{"op":1}"#, #"{"op":"put","table":7}"#,
            #"{"op":"put","table":"t","key":"","value":"v","owner":"alice"}"#,
            #"{"op":"put","table":"bad table","key":"k","value":"v","owner":"alice"}"#,
            #"{"op":"put","table":"t","key":"k","key_b64":"aw==","value":"v","owner":"alice"}"#,
            #"{"op":"put","table":"t","key":"k","value":"v","owner":""}"#,
            #"{"op":"del","table":"missing","key":"k"}"#,
            String(repeating: "[", count: 10000), "\u{FEFF}\u{0}\u{7F}",
            #"{"op":"put","table":"t","key":"\#(String(repeating: "x", count: 2000))","value":"v","owner":"alice"}"#,
        ]
        // Each line in a transaction of its own: one output line each, only the delete commits.
        let result = try pdb("apply", db, "users", stdin: garbage.flatMap { [$0, commit] }.joined(separator: "\n"))
        assertExit(result, 1)
        let lines = try result.objects()
        XCTAssertEqual(lines.count, garbage.count)
        XCTAssertEqual(lines.filter { $0["committed"] != nil }.count, 1)

        // The same lines in the discarded tail of an aborted transaction: skipped without output.
        let tail = try pdb(
            "apply", db, "users",
            stdin: (["nope"] + garbage + [commit, put("z", "26"), commit]).joined(separator: "\n"))
        assertExit(tail, 1)
        XCTAssertEqual(try summary(tail), ["aborted bad_input", "committed 2"])
        XCTAssertEqual(try content(), ["z=26"])
        assertExit(try pdb("check", db), 0)
    }
}
