import Foundation
import PartitionDB
import XCTest

@testable import Residency

final class CountryRegionPolicyTests: XCTestCase {
    let eu = try! Region("eu")
    let us = try! Region("us")
    let ap = try! Region("ap")

    func testCountryCodesAreISO3166() {
        XCTAssertEqual(CountryCode("de")?.code, "DE")
        XCTAssertEqual(CountryCode("US-CA")?.code, "US-CA")
        XCTAssertEqual(CountryCode("us-ca")?.country, CountryCode("US"))
        XCTAssertEqual(CountryCode.assigned.count, 249)
        for text in ["", "D", "DEU", "UK", "EU", "XX", "ZZ", "US-", "US-CALI", "US-C@", "-CA", "DE-1-2", "ÜS"] {
            XCTAssertNil(CountryCode(text), text)
        }
    }

    func testTheMostSpecificRuleWinsThenTheDefault() throws {
        let policy = try CountryRegionPolicy(
            defaultRegion: us,
            regions: [eu: [CountryCode("DE")!, CountryCode("US-PR")!], ap: [CountryCode("JP")!]])
        XCTAssertEqual(policy.region(for: CountryCode("DE")!), eu)
        XCTAssertEqual(policy.region(for: CountryCode("DE-BY")!), eu, "a subdivision without a rule: its country's")
        XCTAssertEqual(policy.region(for: CountryCode("US-PR")!), eu, "the subdivision's rule beats the default")
        XCTAssertEqual(policy.region(for: CountryCode("US-CA")!), us)
        XCTAssertEqual(policy.region(for: CountryCode("JP")!), ap)
        XCTAssertEqual(policy.region(for: CountryCode("BR")!), us, "no rule: the default")
        XCTAssertEqual(policy.regions, [eu, us, ap])
        XCTAssertThrowsError(
            try CountryRegionPolicy(defaultRegion: us, regions: [eu: [CountryCode("DE")!], ap: [CountryCode("DE")!]]))
        XCTAssertThrowsError(try CountryRegionPolicy(defaultRegion: .global, regions: [:]))
    }

    func testTheSamplePolicyShipsAndLoads() throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("samples/residency-policy.json").path
        let policy = try CountryRegionPolicy.load(sample)
        XCTAssertEqual(policy.region(for: CountryCode("FR")!), eu)
        XCTAssertEqual(policy.region(for: CountryCode("NO")!), eu)
        XCTAssertEqual(policy.region(for: CountryCode("SG")!), ap)
        XCTAssertEqual(policy.region(for: CountryCode("US")!), us)
        XCTAssertEqual(policy.regions, [eu, us, ap])
    }

    func testBadPolicyFilesAreRefusedNamingTheKey() throws {
        let cases: [(String, String)] = [
            ("not json", "(file)"),
            (#"{"version": 1, "default": "us", "regions": {}, "extra": 1}"#, "extra"),
            (#"{"version": 2, "default": "us", "regions": {}}"#, "version"),
            (#"{"version": 1, "regions": {}}"#, "default"),
            (#"{"version": 1, "default": "global", "regions": {}}"#, "default"),
            (#"{"version": 1, "default": "us", "regions": {"EU!": ["DE"]}}"#, "regions.EU!"),
            (#"{"version": 1, "default": "us", "regions": {"eu": "DE"}}"#, "regions.eu"),
            (#"{"version": 1, "default": "us", "regions": {"eu": ["DE", "XX"]}}"#, "regions.eu[1]"),
            (#"{"version": 1, "default": "us", "regions": {"eu": ["DE", 7]}}"#, "regions.eu[1]"),
            (#"{"version": 1, "default": "us", "regions": {"eu": ["DE"], "us": ["de"]}}"#, "regions.us[0]"),
        ]
        let file = FileManager.default.temporaryDirectory.path + "/policy-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        for (text, key) in cases {
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            XCTAssertThrowsError(try CountryRegionPolicy.load(file), text) { error in
                guard case .configuration(let named, let badKey, _) = error as? ResidencyError else {
                    return XCTFail("\(text): \(error)")
                }
                XCTAssertEqual(named, file)
                XCTAssertEqual(badKey, key, text)
            }
        }
        XCTAssertThrowsError(try CountryRegionPolicy.load(file + ".missing"))
    }
}
