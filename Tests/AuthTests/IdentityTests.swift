import PartitionDB
import XCTest

@testable import Auth

final class IdentityTests: XCTestCase {
    func testLoginsAreTrimmedNFCAndTheDomainLowerCased() throws {
        XCTAssertEqual(try LoginIdentifier("  Ana@Example.COM \n").normalized, "Ana@example.com")
        // The local part keeps its case: RFC 5321 leaves it to the receiving host.
        XCTAssertNotEqual(try LoginIdentifier("Ana@example.com"), try LoginIdentifier("ana@example.com"))
        // NFC: a decomposed é (e + U+0301) and a precomposed é are one login.
        let decomposed = try LoginIdentifier("jose\u{301}@e\u{301}xample.org")
        let composed = try LoginIdentifier("jos\u{E9}@\u{E9}xample.org")
        XCTAssertEqual(decomposed, composed)
        XCTAssertEqual(decomposed.normalized.unicodeScalars.count, "jos\u{E9}@\u{E9}xample.org".unicodeScalars.count)
        // A non-ASCII domain is lower-cased too.
        XCTAssertEqual(try LoginIdentifier("x@ÄRZTE.DE").normalized, "x@ärzte.de")
    }

    func testMalformedLoginsAreRefusedWithAReason() {
        let cases = [
            "", "   ", "no-at-sign", "two@@example.com", "a@b@c", "@example.com", "ana@", "ana@.example.com",
            "ana@example..com", "ana@example.com.", "an a@example.com", "ana\u{0}@example.com", "ana\u{202E}@x.com",
            String(repeating: "a", count: 65) + "@example.com", "a@" + String(repeating: "b", count: 260),
            String(repeating: "x", count: 2000),
        ]
        for text in cases {
            XCTAssertThrowsError(try LoginIdentifier(text), String(reflecting: text)) { error in
                guard case .invalidLogin(let reason) = error as? AuthError else {
                    return XCTFail("\(String(reflecting: text)): \(error)")
                }
                XCTAssertFalse(reason.isEmpty)
            }
        }
    }

    func testSubjectIdsAreHMACSHA256OfTheNormalizedLogin() throws {
        // The derivation of spec/auth.md#subject-ids, checked against Python's hmac module:
        // hmac.new(b"\x07" * 32, b"pdb subject id v1\x00ana@example.com", "sha256").hexdigest()
        let subject = testKey.subject(of: try LoginIdentifier(" ana@EXAMPLE.com"))
        XCTAssertEqual(subject.rawValue, "eaffa5ac936d73728a2e71ff6b2e33448d0fa3e1c31aba8947dca2ab50955767")
    }

    func testSubjectIdsDependOnTheKeyAndShortKeysAreRefused() throws {
        let login = try LoginIdentifier("ana@example.com")
        let other = try SubjectKey(bytes: Array(repeating: 8, count: 32))
        XCTAssertNotEqual(testKey.subject(of: login), other.subject(of: login))
        XCTAssertEqual(testKey.subject(of: login), testKey.subject(of: login))
        XCTAssertEqual(testKey.subject(of: login).rawValue.count, 64)
        XCTAssertThrowsError(try SubjectKey(bytes: Array(repeating: 1, count: 31))) {
            guard case .badSecret = $0 as? AuthError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(String(describing: testKey).contains("7"), "the key is never printed")
    }
}
