import Foundation
import NIOPosix
import Residency
import XCTest

/// `pdb keys` on running hosts (spec/auth.md#pdb-keys): a rotation through any host of a
/// region writes the keys on the region's primary and publishes the public key on the
/// directory's primary, and every host's copy of the directory then holds it.
final class KeysOnHostsTests: ClusterTestCase {
    /// The published key ids in `host`'s copy of the directory.
    func published(on host: String) throws -> [String] {
        let scan = try remote("scan", host, "global", "pdb.jwks", "--json")
        if scan.status == 1, try scan.errorCode() == "no_such_table" { return [] }
        assertExit(scan, 0)
        return try scan.objects().compactMap { $0["key"] as? String }
    }

    /// The region's keys as `keys list --json` on `host` shows them (signing first).
    func keys(on host: String) throws -> [[String: Any]] {
        let list = try remote("keys list", host, "--json")
        assertExit(list, 0)
        return try XCTUnwrap(try list.object()["keys"] as? [[String: Any]])
    }

    /// Waits until `host`'s copy holds `count` keys of its region; returns them.
    func awaitKeys(on host: String, count: Int) throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(30)
        var found: [[String: Any]] = []
        repeat {
            found = try keys(on: host)
            if found.count >= count { break }
            usleep(100_000)
        } while Date() < deadline
        XCTAssertEqual(found.count, count, "\(host): \(found)")
        return found
    }

    func testKeysAreMadeAtFirstStartAndARotationThroughAnyHostIsWrittenOnThePrimaries() throws {
        try layOut()
        for host in ["eu-1", "eu-2", "us-1"] { try start(host) }

        // Each region's primary makes the region's first key when it first starts, and
        // publishes it; eu-2 receives eu's with its copy.
        let euFirst = try XCTUnwrap(try awaitKeys(on: "eu-1", count: 1).first?["kid"] as? String)
        let usFirst = try XCTUnwrap(try awaitKeys(on: "us-1", count: 1).first?["kid"] as? String)
        XCTAssertEqual(try awaitKeys(on: "eu-2", count: 1).first?["kid"] as? String, euFirst)

        // us-1: us's primary, a replica of the directory: the publication is forwarded.
        let us = try remote("keys rotate", "us-1", "--json")
        assertExit(us, 0)
        let usKid = try XCTUnwrap(try us.object()["kid"] as? String)
        XCTAssertTrue(try published(on: "us-1").contains(usKid), "read back on the host that rotated")

        // eu-2: a replica of eu's users and of the directory: both writes are forwarded.
        let eu = try remote("keys rotate", "eu-2", "--json", "--algorithm", "EdDSA")
        assertExit(eu, 0)
        let euKid = try XCTUnwrap(try eu.object()["kid"] as? String)
        XCTAssertEqual(
            try keys(on: "eu-2").map { $0["kid"] as? String }, [euKid, euFirst],
            "the replica reads the key it rotated at once, signing first")
        let onPrimary = try keys(on: "eu-1")
        XCTAssertEqual(onPrimary.map { $0["kid"] as? String }, [euKid, euFirst])
        XCTAssertEqual(onPrimary.first?["algorithm"] as? String, "EdDSA")
        XCTAssertEqual(onPrimary.map { $0["signing"] as? Bool }, [true, false])
        XCTAssertNotNil(
            onPrimary.last?["verifies_until"] as? Int, "the rotated-out key verifies until its tokens expire")

        // A second rotation through eu-2 retires the EdDSA key on the primary.
        assertExit(try remote("keys rotate", "eu-2", "--json"), 0)
        let third = try keys(on: "eu-1")
        XCTAssertEqual(third.count, 3)
        XCTAssertEqual(third.map { $0["signing"] as? Bool }, [true, false, false])
        XCTAssertEqual(third[1]["kid"] as? String, euKid)

        // Every copy of the directory ends with the five public keys; us's private keys are in
        // us's partition, the only records of its table there.
        let deadline = Date().addingTimeInterval(30)
        for host in ["eu-1", "eu-2", "us-1"] {
            var kids: [String] = []
            repeat {
                kids = try published(on: host)
                if kids.count == 5 { break }
                usleep(100_000)
            } while Date() < deadline
            XCTAssertEqual(kids.count, 5, "\(host): \(kids)")
            XCTAssertTrue(Set([usFirst, usKid, euFirst, euKid]).isSubset(of: kids), "\(host): \(kids)")
        }
        let usKeys = try remote("scan", "us-1", "users", "auth.signing_keys", "--json")
        assertExit(usKeys, 0)
        XCTAssertEqual(Set(try usKeys.objects().compactMap { $0["key"] as? String }), [usFirst, usKid])
    }

    func testAHostWithAnUnusableSubjectKeyDoesNotStart() throws {
        try layOut()
        try Data("too short\n".utf8).write(to: URL(fileURLWithPath: cluster + "/auth/subject-key"))
        let serve = try run(["serve", "--config", cluster + "/hosts/eu-1/config.json"], timeout: 30)
        assertExit(serve, 1)
        XCTAssertTrue(serve.stderr.contains("auth.subject_key_file cannot be used"), serve.stderr)
        XCTAssertFalse(serve.stderr.contains("too short"), "the secret is never printed")
    }

    /// The directory's primary stores a publication only from a replica of the directory, of
    /// the sender's own region, and only a public key's entry; anything else is refused and
    /// stores nothing.
    func testAPublicationIsRefusedUnlessItIsAPublicKeyOfTheSendersRegion() async throws {
        try layOut()
        // eu-2 too: the directory's commits wait for one replica (quorum 1).
        for host in ["eu-1", "eu-2"] { try start(host) }
        // eu's first key, made at start, is published before it shows.
        _ = try awaitKeys(on: "eu-1", count: 1)
        let address = try HostConfiguration.load("\(cluster)/hosts/eu-1/config.json").listen
        func publish(_ tls: String, kid: String, region: String, entry: String) async throws -> String {
            let connection = try await FrameTransport.connect(
                to: address, tls: try TLSFiles(directory: tls), group: MultiThreadedEventLoopGroup.singleton)
            return try await connection.run { inbound, outbound in
                try await outbound.write(
                    Frame(epoch: 1, .publishKey(kid: kid, region: region, entry: Array(entry.utf8))))
                for try await frame in inbound {
                    switch frame.message {
                    case .refusal(let code, _): return code
                    case .keyPublished: return "published"
                    default: return "\(frame.message.type)"
                    }
                }
                return "closed"
            }
        }
        func entry(region: String = "us", privatePart: Bool = false) -> String {
            let d = privatePart ? #","d":"c2VjcmV0""# : ""
            return
                #"{"v":1,"region":"\#(region)","verifies_until":0,"jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"\#(d)}}"#
        }
        let us1 = "\(cluster)/hosts/us-1/tls"
        let refusals = [
            try await publish(us1, kid: "k1", region: "eu", entry: entry(region: "eu")),
            try await publish(us1, kid: "k1", region: "us", entry: entry(region: "eu")),
            try await publish(us1, kid: "k1", region: "us", entry: entry(privatePart: true)),
            try await publish(us1, kid: "not a kid!", region: "us", entry: entry()),
            try await publish(us1, kid: "k1", region: "us", entry: "[1]"),
            try await publish(us1, kid: "k1", region: "us", entry: String(repeating: " ", count: 9000) + entry()),
            try await publish(operatorTLS, kid: "k1", region: "us", entry: entry()),
        ]
        XCTAssertEqual(
            refusals,
            [
                "cross_region_key", "invalid_key_entry", "invalid_key_entry", "invalid_key_entry", "invalid_key_entry",
                "invalid_key_entry", "not_a_replica",
            ])
        // eu's primary published its own first key at start; nothing refused is stored.
        let before = try published(on: "eu-1").filter { $0 != "k1" }
        XCTAssertFalse(try published(on: "eu-1").contains("k1"), "nothing refused was stored")
        let accepted = try await publish(us1, kid: "k1", region: "us", entry: entry())
        XCTAssertEqual(accepted, "published")
        XCTAssertEqual(try published(on: "eu-1"), (before + ["k1"]).sorted())
    }
}
