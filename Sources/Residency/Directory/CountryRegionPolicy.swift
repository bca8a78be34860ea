import Foundation
import PartitionDB

/// Which region a person's data lives in, from where they are: the rule sign-up's default hook
/// applies and the router uses (spec/auth.md#country-policy). The most specific rule wins: a
/// subdivision's (`US-CA`), then its country's (`US`), then the default region. No code may be
/// in two rules.
public struct CountryRegionPolicy: Sendable, Equatable {
    public let defaultRegion: Region
    /// Country and subdivision codes to their region.
    public let rules: [CountryCode: Region]

    /// A policy of `rules` (region -> its codes); throws when a code is given two regions or a
    /// region is `global`.
    public init(defaultRegion: Region, regions: [Region: [CountryCode]]) throws {
        var rules: [CountryCode: Region] = [:]
        for region in ([defaultRegion] + regions.keys.sorted()) where region.isGlobal {
            throw ResidencyError.engine(
                .invalidName(kind: "region", name: region.name, reason: "a home region cannot be global"))
        }
        for (region, codes) in regions.sorted(by: { $0.key < $1.key }) {
            for code in codes {
                if let other = rules[code], other != region {
                    throw ResidencyError.configuration(
                        file: "(policy)", key: "regions.\(region)",
                        reason: "names \(code), which regions.\(other) names too; a code has one region")
                }
                rules[code] = region
            }
        }
        self.defaultRegion = defaultRegion
        self.rules = rules
    }

    /// The region of a person in `country`: its subdivision's rule, else its country's, else
    /// the default.
    public func region(for country: CountryCode) -> Region {
        rules[country] ?? rules[country.country] ?? defaultRegion
    }

    /// Every region the policy can answer.
    public var regions: Set<Region> { Set(rules.values).union([defaultRegion]) }

    /// This policy for a cluster of `regions` only: the rules of other regions are dropped (their
    /// countries fall to the default), and a default that is not among them becomes `fallback`.
    public func restricted(to regions: Set<Region>, fallback: Region) throws -> CountryRegionPolicy {
        var kept: [Region: [CountryCode]] = [:]
        for (code, region) in rules where regions.contains(region) { kept[region, default: []].append(code) }
        return try CountryRegionPolicy(
            defaultRegion: regions.contains(defaultRegion) ? defaultRegion : fallback,
            regions: kept.mapValues { $0.sorted { $0.description < $1.description } })
    }

    /// The policy in the file form `load` reads (codes sorted, one region per key).
    public var json: String {
        var regions: [String: [String]] = [:]
        for (code, region) in rules { regions[region.name, default: []].append(code.description) }
        let root: [String: Any] = [
            "version": 1, "default": defaultRegion.name, "regions": regions.mapValues { $0.sorted() },
        ]
        let data = try! JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Reads a policy file (spec/auth.md#country-policy): `{"version": 1, "default": "us",
    /// "regions": {"eu": ["DE", "FR"], "us": ["US", "CA"]}}`. An unknown key, a code that is not
    /// ISO 3166, or a code in two regions is refused with the file and the key named.
    public static func load(_ file: String) throws -> CountryRegionPolicy {
        try parse(try ConfigurationReader.json(file), file: file)
    }

    static func parse(_ root: Any, file: String) throws -> CountryRegionPolicy {
        let reader = ConfigurationReader(file: file)
        let top = try reader.object(root, at: "")
        try reader.allowOnly(top, at: "", ["version", "default", "regions"])
        let version = try reader.integer(top, "version", at: "")
        guard version == 1 else { throw reader.bad("version", "is \(version); this pdb reads version 1") }
        let defaultRegion = try reader.region(top, "default", at: "")
        let regionsObject = try reader.object(try reader.required(top, "regions", at: ""), at: "regions")
        var regions: [Region: [CountryCode]] = [:]
        var seen: [CountryCode: String] = [:]
        for (name, value) in regionsObject.sorted(by: { $0.key < $1.key }) {
            let at = "regions.\(name)"
            guard let region = try? Region(name), !region.isGlobal else {
                throw reader.bad(at, "is not a region name (1 to 31 of a-z, 0-9, -; not global)")
            }
            guard let list = value as? [Any] else { throw reader.bad(at, "must be a list of country codes") }
            var codes: [CountryCode] = []
            for (index, item) in list.enumerated() {
                guard let text = item as? String, let code = CountryCode(text) else {
                    throw reader.bad(
                        "\(at)[\(index)]",
                        "is not an ISO 3166-1 alpha-2 country code (DE) or a subdivision of one (US-CA)")
                }
                if let other = seen[code] {
                    throw reader.bad("\(at)[\(index)]", "is \(code), which \(other) names too; a code has one region")
                }
                seen[code] = at
                codes.append(code)
            }
            regions[region] = codes
        }
        return try CountryRegionPolicy(defaultRegion: defaultRegion, regions: regions)
    }
}
