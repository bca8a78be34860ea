import Foundation
import XCTest

/// `pdb keys list|rotate DIR` (spec/auth.md#pdb-keys).
final class KeysCommandTests: PDBTestCase {
    func testRotateAddsASigningKeyAndListShowsTheRetiredOne() throws {
        try makeDatabase()
        let empty = try pdb("keys", "list", db)
        assertExit(empty, 0)
        XCTAssertEqual(empty.lines, ["no signing keys yet (the first token issued makes one)"])

        let first = try pdb("keys", "rotate", "--json", db)
        assertExit(first, 0)
        let firstKid = try XCTUnwrap(try first.object()["kid"] as? String)
        XCTAssertEqual(try first.object()["algorithm"] as? String, "ES256")
        let second = try pdb("keys", "rotate", "--json", db, "--algorithm", "EdDSA", "--access-lifetime", "600")
        assertExit(second, 0)
        let secondKid = try XCTUnwrap(try second.object()["kid"] as? String)

        let listed = try pdb("keys", "list", "--json", db)
        assertExit(listed, 0)
        let keys = try XCTUnwrap(try listed.object()["keys"] as? [[String: Any]])
        XCTAssertEqual(keys.map { $0["kid"] as? String }, [secondKid, firstKid])
        XCTAssertEqual(keys.map { $0["signing"] as? Bool }, [true, false])
        let retired = try XCTUnwrap(keys[1]["retired"] as? Int)
        XCTAssertEqual(keys[1]["verifies_until"] as? Int, retired + 630, "lifetime + leeway after the rotation")
        XCTAssertNil(keys[0]["private_key"], "no private part is shown")
        // The public halves are in the directory; the private keys only in the region's partition.
        assertExit(try pdb("check", db), 0)
        XCTAssertFalse(try Self.filesContain(db + "/global.pdb", "private_key"))

        assertExit(try pdb("keys", "rotate", db, "--algorithm", "RS256"), 64)
        assertExit(try pdb("keys", "rotate", db, "--access-lifetime", "5"), 64)
        let missing = try pdb("keys", "list", "--json", db, "--partition", "nope")
        assertExit(missing, 1)
        XCTAssertEqual(try missing.errorCode(), "no_such_partition")
    }
}
