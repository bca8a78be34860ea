import Foundation
import PartitionDB
import XCTest

@testable import Residency

/// The `auth` section of a host's configuration (spec/config.md#auth): read with its defaults,
/// written back the same, every bad value refused naming its key; and the built-in sample
/// policy that `pdb cluster init` restricts to the cluster's regions.
final class AuthSettingsTests: XCTestCase {
    private var folder = ""

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.path + "/auth-settings-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(#"{"version": 1, "default": "us", "regions": {"eu": ["DE"]}}"#.utf8)
            .write(to: URL(fileURLWithPath: folder + "/policy.json"))
        try Data(#"{"version": 1, "default": "us", "regions": {"ap": ["JP"]}}"#.utf8)
            .write(to: URL(fileURLWithPath: folder + "/ap-policy.json"))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// eu-1's configuration with the section `auth`.
    private func configuration(auth: [String: Any]) -> [String: Any] {
        [
            "version": 1, "host": "eu-1", "region": "eu", "data_directory": "data", "tls_directory": "tls",
            "listen": "127.0.0.1:7100",
            "hosts": [
                "eu-1": ["region": "eu", "address": "127.0.0.1:7100"],
                "us-1": ["region": "us", "address": "127.0.0.1:7102"],
            ],
            "partitions": [
                "global": ["primary": "eu-1", "replicas": ["us-1"]], "users": ["primary": "eu-1", "replicas": []],
            ],
            "auth": auth,
        ]
    }

    private let minimal: [String: Any] = [
        "subject_key_file": "subject-key", "policy_file": "policy.json", "issuer_base": "https://auth.example.com",
        "audience": "pdb-api",
    ]

    private func parse(_ auth: [String: Any]) throws -> HostConfiguration {
        try HostConfiguration.parse(configuration(auth: auth), file: folder + "/config.json")
    }

    func testASectionReadsWithItsDefaultsAndWritesBackTheSame() throws {
        let parsed = try XCTUnwrap(try parse(minimal).auth)
        XCTAssertEqual(parsed.subjectKeyFile, "subject-key")
        XCTAssertEqual(parsed.policy.region(for: CountryCode("DE")!), try Region("eu"))
        XCTAssertEqual(parsed.partition, "users")
        XCTAssertEqual(parsed.accessLifetimeSeconds, 900)
        XCTAssertEqual(parsed.refreshLifetimeSeconds, 2_592_000)
        XCTAssertEqual(
            [parsed.passwordMemoryKiB, parsed.passwordIterations, parsed.passwordParallelism], [19_456, 2, 1],
            "OWASP's Argon2id parameters")
        XCTAssertEqual([parsed.hashingConcurrency, parsed.hashingQueue], [2, 256])
        XCTAssertEqual(try parse(minimal).resolve(parsed.subjectKeyFile), folder + "/subject-key")

        var changed = minimal
        changed["access_lifetime_seconds"] = 300
        changed["password"] = ["memory_kib": 65_536, "iterations": 3, "parallelism": 4]
        changed["hashing"] = ["concurrency": 4, "queue": 0]
        let configuration = try parse(changed)
        let json = configuration.json(dataDirectory: "data", tlsDirectory: "tls")
        let reread = try HostConfiguration.parse(
            try JSONSerialization.jsonObject(with: Data(json.utf8)), file: folder + "/config.json")
        XCTAssertEqual(reread.auth, configuration.auth)
        XCTAssertEqual(reread.auth?.passwordMemoryKiB, 65_536)
        XCTAssertEqual(reread.auth?.hashingQueue, 0)
        let withoutAuth = self.configuration(auth: minimal).filter { $0.key != "auth" }
        XCTAssertNil(try HostConfiguration.parse(withoutAuth, file: folder + "/config.json").auth)
    }

    func testEveryBadValueIsRefusedNamingItsKey() throws {
        let cases: [(String, Any?, String)] = [
            ("bogus", 1, "auth.bogus"),
            ("issuer_base", nil, "auth.issuer_base"),
            ("issuer_base", "http://auth.example.com", "auth.issuer_base"),
            ("issuer_base", "https://auth.example.com/", "auth.issuer_base"),
            ("issuer_base", "https://auth.example.com?x=1", "auth.issuer_base"),
            ("issuer_base", "ftp://auth.example.com", "auth.issuer_base"),
            ("audience", "two words", "auth.audience"),
            ("audience", "", "auth.audience"),
            ("subject_key_file", 7, "auth.subject_key_file"),
            ("policy_file", "missing.json", "auth.policy_file"),
            ("policy_file", "ap-policy.json", "auth.policy_file"),
            ("partition", "global", "auth.partition"),
            ("partition", "orders", "auth.partition"),
            ("access_lifetime_seconds", 10, "auth.access_lifetime_seconds"),
            ("access_lifetime_seconds", true, "auth.access_lifetime_seconds"),
            ("refresh_lifetime_seconds", 31_536_001, "auth.refresh_lifetime_seconds"),
            ("password", ["memory_kib": 4], "auth.password.memory_kib"),
            ("password", ["iterations": 0], "auth.password.iterations"),
            ("password", ["parallelism": 9], "auth.password.parallelism"),
            ("password", ["salt": 1], "auth.password.salt"),
            ("password", "strong", "auth.password"),
            ("hashing", ["concurrency": 0], "auth.hashing.concurrency"),
            ("hashing", ["queue": -1], "auth.hashing.queue"),
        ]
        for (key, value, named) in cases {
            var auth = minimal
            auth[key] = value
            do {
                _ = try parse(auth)
                XCTFail("\(key) = \(String(describing: value)) was taken")
            } catch ResidencyError.configuration(let file, let badKey, let reason) {
                XCTAssertEqual(file, folder + "/config.json")
                XCTAssertEqual(badKey, named, "\(key) = \(String(describing: value)): \(reason)")
            }
        }
    }

    func testTheBuiltInSampleIsTheShippedFileAndShrinksToTheClustersRegions() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("samples/residency-policy.json")
        XCTAssertEqual(
            String(decoding: try Data(contentsOf: file), as: UTF8.self), CountryRegionPolicy.sampleJSON + "\n")
        XCTAssertEqual(CountryRegionPolicy.sample, try CountryRegionPolicy.load(file.path))
        let eu = try Region("eu")
        let us = try Region("us")
        let two = try CountryRegionPolicy.sample.restricted(to: [eu, us], fallback: eu)
        XCTAssertEqual(two.regions, [eu, us])
        XCTAssertEqual(two.region(for: CountryCode("DE")!), eu)
        XCTAssertEqual(two.region(for: CountryCode("JP")!), us, "ap's countries go to the default")
        let one = try CountryRegionPolicy.sample.restricted(to: [eu], fallback: eu)
        XCTAssertEqual(one.regions, [eu])
        XCTAssertEqual(one.region(for: CountryCode("US")!), eu, "a default outside the cluster becomes the fallback")
        // The file form reads back as the same policy.
        let written = folder + "/written.json"
        try Data(two.json.utf8).write(to: URL(fileURLWithPath: written))
        XCTAssertEqual(try CountryRegionPolicy.load(written), two)
    }
}
