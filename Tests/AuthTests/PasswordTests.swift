import XCTest

@testable import Auth

final class PasswordTests: XCTestCase {
    /// The Argon2id vectors of the reference implementation's src/test.c (phc-winner-argon2).
    static let referenceVectors = [
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
    ]

    func testTheReferenceVectorsHashAndVerify() throws {
        for phc in Self.referenceVectors {
            let hash = try PasswordHash(phc: phc)
            let made = try Argon2id.hash(
                password: Array("password".utf8), salt: Array("somesalt".utf8), parameters: hash.parameters)
            XCTAssertEqual(made, phc)
            XCTAssertTrue(try Argon2id.verify(password: Array("password".utf8), hash: hash))
            XCTAssertFalse(try Argon2id.verify(password: Array("passwore".utf8), hash: hash))
        }
    }

    func testTheHasherMakesOWASPHashesWithFreshSalts() async throws {
        let hasher = try PasswordHasher()
        let first = try await hasher.hash("correct horse battery")
        let second = try await hasher.hash("correct horse battery")
        XCTAssertTrue(first.phc.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"), first.phc)
        XCTAssertNotEqual(first.phc, second.phc, "every hash has its own salt")
        let verified = try await hasher.verify("correct horse battery", against: first)
        XCTAssertTrue(verified)
        let wrong = try await hasher.verify("correct horse batterz", against: first)
        XCTAssertFalse(wrong)
        XCTAssertFalse(hasher.needsRehash(first))
        XCTAssertTrue(hasher.needsRehash(try PasswordHash(phc: Self.referenceVectors[1])))
        XCTAssertFalse(first.description.contains(first.phc.suffix(10)), "the salt and hash are not printed")
        await hasher.shutdown()
    }

    func testThePasswordRulesAreCheckedBeforeHashing() async throws {
        let hasher = try PasswordHasher(parameters: cheapParameters)
        for password in ["1234567", String(repeating: "x", count: 1025), "äöü1"] {
            do {
                _ = try await hasher.hash(password)
                XCTFail("\(password.utf8.count) bytes were hashed")
            } catch let error as AuthError {
                guard case .invalidPassword = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertEqual(hasher.load.completed, 0, "nothing was hashed")
        _ = try await hasher.hash("12345678")
        _ = try await hasher.hash(String(repeating: "ü", count: 512))
        XCTAssertEqual(hasher.load.completed, 2)
        await hasher.shutdown()
    }

    func testStoredHashesAreParsedStrictly() {
        let good = Self.referenceVectors[1]
        let bad = [
            "", "argon2id", "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            good.replacingOccurrences(of: "v=19", with: "v=16"),
            good.replacingOccurrences(of: "m=256", with: "m=4194304"),  // 4 GiB: refused before libargon2
            good.replacingOccurrences(of: "t=2", with: "t=0"),
            good.replacingOccurrences(of: "p=1", with: "p=99"),
            good.replacingOccurrences(of: "m=256,t=2,p=1", with: "m=256,t=2"),
            good.replacingOccurrences(of: "m=256,t=2,p=1", with: "m=256,m=256,t=2,p=1"),
            good.replacingOccurrences(of: "m=256", with: "m=-256"),
            good.replacingOccurrences(of: "m=256", with: "m=99999999999"),
            good.replacingOccurrences(of: "c29tZXNhbHQ", with: "c29t*XNhbHQ"),
            good.replacingOccurrences(of: "c29tZXNhbHQ", with: "c2"),
            good + "$extra", good + String(repeating: "A", count: 300),
        ]
        for phc in bad {
            XCTAssertThrowsError(try PasswordHash(phc: phc), phc) {
                guard case .badPasswordHash = $0 as? AuthError else { return XCTFail("\(phc): \($0)") }
            }
        }
        XCTAssertNoThrow(try PasswordHash(phc: good))
    }

    func testAFloodOfHashesQueuesBoundedAndTheRestIsRefused() async throws {
        // Slow enough (4 MiB, 8 passes) that all twelve arrive while the first two run.
        let slow = PasswordParameters(memoryKiB: 4096, iterations: 8, parallelism: 1)
        let hasher = try PasswordHasher(parameters: slow, concurrency: 2, maxQueued: 3)
        let outcomes = await withTaskGroup(of: String.self) { group in
            for index in 0..<12 {
                group.addTask {
                    do {
                        _ = try await hasher.hash("password \(index)")
                        return "hashed"
                    } catch AuthError.busy {
                        return "busy"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            var outcomes: [String] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        let load = hasher.load
        XCTAssertEqual(outcomes.filter { $0 != "hashed" && $0 != "busy" }, [])
        XCTAssertEqual(load.peakRunning, 2, "never more than `concurrency` hashes hold memory at once")
        XCTAssertLessThanOrEqual(load.peakWaiting, 3)
        XCTAssertEqual(outcomes.filter { $0 == "busy" }.count, load.refused)
        XCTAssertGreaterThan(load.refused, 0, "a full queue refuses at once")
        XCTAssertEqual(load.completed, outcomes.filter { $0 == "hashed" }.count)
        XCTAssertEqual(load.running, 0)
        XCTAssertEqual(load.waiting, 0)
        await hasher.shutdown()
    }
}
