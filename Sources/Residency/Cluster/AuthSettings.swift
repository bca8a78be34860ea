import Foundation
import PartitionDB

/// The `auth` section of a host's configuration (spec/config.md#auth): what the auth layer on the
/// host needs, read and checked at start with the rest of the file. The `Auth` module builds its
/// services from it (`AuthService`); this layer knows no tokens or passwords.
public struct AuthSettings: Sendable, Equatable {
    /// The cluster secret subject ids are derived from, as written (relative to the config's
    /// folder); every host of every region has the same. Never logged.
    public var subjectKeyFile: String
    /// The country-to-region policy file, as written.
    public var policyFile: String
    /// The policy, read from `policyFile` at start.
    public var policy: CountryRegionPolicy
    /// Each region's issuer is this + `/` + the region.
    public var issuerBase: String
    public var audience: String
    /// The region's partition that holds users, refresh tokens and signing keys.
    public var partition = "users"
    public var accessLifetimeSeconds: UInt64 = 900
    public var refreshLifetimeSeconds: UInt64 = 30 * 24 * 3600
    /// Argon2id's parameters for new hashes (OWASP's by default).
    public var passwordMemoryKiB: UInt64 = 19_456
    public var passwordIterations: UInt64 = 2
    public var passwordParallelism: UInt64 = 1
    /// How many hashes run at once, and how many may wait; more are refused as busy.
    public var hashingConcurrency: UInt64 = 2
    public var hashingQueue: UInt64 = 256

    public init(
        subjectKeyFile: String, policyFile: String, policy: CountryRegionPolicy, issuerBase: String, audience: String
    ) {
        self.subjectKeyFile = subjectKeyFile
        self.policyFile = policyFile
        self.policy = policy
        self.issuerBase = issuerBase
        self.audience = audience
    }

    static let keys: Set<String> = [
        "subject_key_file", "policy_file", "issuer_base", "audience", "partition", "access_lifetime_seconds",
        "refresh_lifetime_seconds", "password", "hashing",
    ]

    /// Reads the section at `auth`; `resolve` turns a path as written into one to open.
    static func parse(
        _ value: Any, reader: ConfigurationReader, partitions: [HostConfiguration.PartitionPlacement],
        hostRegions: Set<Region>, resolve: (String) -> String
    ) throws -> AuthSettings {
        let at = "auth"
        let entry = try reader.object(value, at: at)
        try reader.allowOnly(entry, at: at, keys)
        let policyFile = try reader.string(entry, "policy_file", at: at)
        let policy: CountryRegionPolicy
        do {
            policy = try CountryRegionPolicy.load(resolve(policyFile))
        } catch let error as ResidencyError {
            throw reader.bad("auth.policy_file", "cannot be used: \(error)")
        }
        if let lost = policy.regions.sorted().first(where: { !hostRegions.contains($0) }) {
            throw reader.bad(
                "auth.policy_file",
                "sends people to region \(lost), which no host under hosts is in; every region of the policy needs hosts"
            )
        }
        let issuerBase = try reader.string(entry, "issuer_base", at: at)
        guard Self.isIssuerBase(issuerBase) else {
            throw reader.bad(
                "auth.issuer_base",
                "must be an https URL without a trailing / (http only on 127.0.0.1 or localhost), at most 200 bytes")
        }
        let audience = try reader.string(entry, "audience", at: at)
        guard audience.utf8.count <= 200, audience.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) })
        else { throw reader.bad("auth.audience", "must be 1 to 200 printable ASCII characters without spaces") }
        var settings = AuthSettings(
            subjectKeyFile: try reader.string(entry, "subject_key_file", at: at), policyFile: policyFile,
            policy: policy, issuerBase: issuerBase, audience: audience)
        if entry["partition"] != nil {
            settings.partition = try reader.string(entry, "partition", at: at)
        }
        guard settings.partition != Database.globalPartitionName,
            partitions.contains(where: { $0.name == settings.partition })
        else {
            throw reader.bad("auth.partition", "must name a regional partition under partitions")
        }
        func bounded(_ object: [String: Any], _ key: String, at: String, _ range: ClosedRange<UInt64>) throws
            -> UInt64?
        {
            guard object[key] != nil else { return nil }
            let value = try reader.integer(object, key, at: at)
            guard range.contains(value) else {
                throw reader.bad(reader.path(at, key), "must be \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        settings.accessLifetimeSeconds =
            try bounded(entry, "access_lifetime_seconds", at: at, 60...86_400) ?? settings.accessLifetimeSeconds
        settings.refreshLifetimeSeconds =
            try bounded(entry, "refresh_lifetime_seconds", at: at, 300...31_536_000) ?? settings.refreshLifetimeSeconds
        if let value = entry["password"] {
            let password = try reader.object(value, at: "auth.password")
            try reader.allowOnly(password, at: "auth.password", ["memory_kib", "iterations", "parallelism"])
            settings.passwordMemoryKiB =
                try bounded(password, "memory_kib", at: "auth.password", 8...1_048_576) ?? settings.passwordMemoryKiB
            settings.passwordIterations =
                try bounded(password, "iterations", at: "auth.password", 1...16) ?? settings.passwordIterations
            settings.passwordParallelism =
                try bounded(password, "parallelism", at: "auth.password", 1...8) ?? settings.passwordParallelism
        }
        if let value = entry["hashing"] {
            let hashing = try reader.object(value, at: "auth.hashing")
            try reader.allowOnly(hashing, at: "auth.hashing", ["concurrency", "queue"])
            settings.hashingConcurrency =
                try bounded(hashing, "concurrency", at: "auth.hashing", 1...64) ?? settings.hashingConcurrency
            settings.hashingQueue =
                try bounded(hashing, "queue", at: "auth.hashing", 0...100_000) ?? settings.hashingQueue
        }
        return settings
    }

    /// The section's JSON form, as `pdb cluster init` writes it.
    var json: [String: Any] {
        [
            "subject_key_file": subjectKeyFile, "policy_file": policyFile, "issuer_base": issuerBase,
            "audience": audience, "partition": partition, "access_lifetime_seconds": accessLifetimeSeconds,
            "refresh_lifetime_seconds": refreshLifetimeSeconds,
            "password": [
                "memory_kib": passwordMemoryKiB, "iterations": passwordIterations, "parallelism": passwordParallelism,
            ],
            "hashing": ["concurrency": hashingConcurrency, "queue": hashingQueue],
        ]
    }

    /// An https URL with a host and without a trailing `/`, query or fragment; plain http only
    /// on loopback (a demo or a test).
    public static func isIssuerBase(_ text: String) -> Bool {
        guard text.utf8.count <= 200, !text.hasSuffix("/"), let url = URLComponents(string: text),
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil, url.user == nil
        else { return false }
        switch url.scheme {
        case "https": return true
        case "http": return host == "127.0.0.1" || host == "localhost"
        default: return false
        }
    }
}
