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

    func testARotationThroughAnyHostIsWrittenOnThePrimariesAndPublishedEverywhere() throws {
        try layOut()
        for host in ["eu-1", "eu-2", "us-1"] { try start(host) }

        // us-1: us's primary, a replica of the directory: the publication is forwarded.
        let us = try remote("keys rotate", "us-1", "--json")
        assertExit(us, 0)
        let usKid = try XCTUnwrap(try us.object()["kid"] as? String)
        XCTAssertTrue(try published(on: "us-1").contains(usKid), "read back on the host that rotated")

        // eu-2: a replica of eu's users and of the directory: both writes are forwarded.
        let eu = try remote("keys rotate", "eu-2", "--json", "--algorithm", "EdDSA")
        assertExit(eu, 0)
        let euKid = try XCTUnwrap(try eu.object()["kid"] as? String)
        let onReplica = try remote("keys list", "eu-2", "--json")
        assertExit(onReplica, 0)
        XCTAssertEqual(
            try (onReplica.object()["keys"] as? [[String: Any]])?.map { $0["kid"] as? String }, [euKid],
            "the replica reads the key it rotated at once")
        let onPrimary = try remote("keys list", "eu-1", "--json")
        assertExit(onPrimary, 0)
        XCTAssertEqual(try (onPrimary.object()["keys"] as? [[String: Any]])?.map { $0["kid"] as? String }, [euKid])
        XCTAssertEqual(
            try (onPrimary.object()["keys"] as? [[String: Any]])?.first?["algorithm"] as? String, "EdDSA")

        // A second rotation through eu-2 retires the first key on the primary.
        let again = try remote("keys rotate", "eu-2", "--json")
        assertExit(again, 0)
        let second = try remote("keys list", "eu-1", "--json")
        let keys = try XCTUnwrap(try second.object()["keys"] as? [[String: Any]])
        XCTAssertEqual(keys.count, 2)
        XCTAssertEqual(keys.first?["signing"] as? Bool, true)
        XCTAssertEqual(keys.last?["kid"] as? String, euKid)
        XCTAssertNotNil(keys.last?["verifies_until"] as? Int, "the rotated-out key verifies until its tokens expire")

        // Every copy of the directory ends with the three public keys; us's private key is in
        // us's partition, the only record of its table there.
        let deadline = Date().addingTimeInterval(30)
        for host in ["eu-1", "eu-2", "us-1"] {
            var kids: [String] = []
            repeat {
                kids = try published(on: host)
                if kids.count == 3 { break }
                usleep(100_000)
            } while Date() < deadline
            XCTAssertEqual(kids.count, 3, "\(host): \(kids)")
            XCTAssertTrue(kids.contains(usKid) && kids.contains(euKid), "\(host): \(kids)")
        }
        let usKeys = try remote("scan", "us-1", "users", "auth.signing_keys", "--json")
        assertExit(usKeys, 0)
        XCTAssertEqual(try usKeys.objects().compactMap { $0["key"] as? String }, [usKid])
    }

    /// The directory's primary stores a publication only from a replica of the directory, of
    /// the sender's own region, and only a public key's entry; anything else is refused and
    /// stores nothing.
    func testAPublicationIsRefusedUnlessItIsAPublicKeyOfTheSendersRegion() async throws {
        try layOut()
        // eu-2 too: the directory's commits wait for one replica (quorum 1).
        for host in ["eu-1", "eu-2"] { try start(host) }
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
        XCTAssertEqual(try published(on: "eu-1"), [], "nothing refused was stored")
        let accepted = try await publish(us1, kid: "k1", region: "us", entry: entry())
        XCTAssertEqual(accepted, "published")
        XCTAssertEqual(try published(on: "eu-1"), ["k1"])
    }
}
