import ArgumentParser
import Auth
import Foundation
import PartitionDB
import Residency

/// `pdb keys list|rotate DIR|pdb://…`: the region's token signing keys
/// (spec/auth.md#signing-keys). On a running host a rotation writes the keys on the region's
/// primary and publishes the public key on the directory's primary, from any host.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List and rotate the region's access-token signing keys.",
        subcommands: [KeysList.self, KeysRotate.self])
}

/// What both subcommands need: the partition that holds the keys and how long a rotated-out key
/// keeps verifying.
struct KeyOptions: ParsableArguments {
    @Option(help: "The region's partition that holds the signing keys.")
    var partition = "users"

    @Option(help: "Access-token lifetime in seconds (a rotated-out key verifies this long, plus the leeway).")
    var accessLifetime = 900

    @Option(help: "Clock leeway in seconds.")
    var leeway = 30

    func validate() throws {
        guard (60...86_400).contains(accessLifetime) else {
            throw ValidationError("--access-lifetime must be 60 to 86400 seconds")
        }
        guard (0...600).contains(leeway) else { throw ValidationError("--leeway must be 0 to 600 seconds") }
    }

    func keys(_ database: Database, _ residency: ResidencyDirectory, algorithm: SigningAlgorithm = .es256)
        -> RegionKeys
    {
        // The issuer and audience are the tokens' business, not the keys'.
        let settings = TokenSettings(
            issuerBase: "", audience: "", accessLifetime: TimeInterval(accessLifetime), leeway: TimeInterval(leeway),
            algorithm: algorithm)
        // On a running host (`pdb://`), through the host: its writes go to the primaries.
        if let host = HostSession.current?.host as? ClusterHost {
            return RegionKeys(
                database: database, partition: partition, homes: host,
                publisher: DirectoryKeyPublisher(database: database, host: host), settings: settings, commits: host)
        }
        return RegionKeys(
            database: database, partition: partition, homes: residency,
            publisher: DirectoryKeyPublisher(database: database), settings: settings)
    }
}

/// `pdb keys list DIR`
struct KeysList: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the region's signing keys, newest first (no private part).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var location: DatabaseArgument
    @OptionGroup var options: KeyOptions

    struct Report: Encodable {
        var keys: [RegionKeys.Info]
    }

    func execute() throws {
        let keys = try location.withDatabase(readOnly: true) { database, residency in
            let regionKeys = options.keys(database, residency)
            return try blocking { try await regionKeys.list() }
        }
        if json { return try output.json(Report(keys: keys)) }
        if keys.isEmpty { return try output.line("no signing keys yet (the first token issued makes one)") }
        for key in keys {
            let state =
                key.signing
                ? "signing"
                : "retired at \(key.retired ?? 0), verifies until \(key.verifiesUntil ?? 0)"
            try output.line("\(key.kid)  \(key.algorithm)  created \(key.created)  \(state)")
        }
    }
}

/// `pdb keys rotate DIR`
struct KeysRotate: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Add a signing key that signs from now on; the previous one verifies until its tokens expire.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var location: DatabaseArgument
    @OptionGroup var options: KeyOptions

    @Option(help: "The new key's algorithm: ES256 or EdDSA.")
    var algorithm = "ES256"

    func validate() throws {
        guard SigningAlgorithm(rawValue: algorithm) != nil else {
            throw ValidationError("--algorithm must be ES256 or EdDSA")
        }
    }

    struct Report: Encodable {
        var kid: String
        var algorithm: String
    }

    func execute() throws {
        let key = try location.withDatabase { database, residency in
            let regionKeys = options.keys(database, residency, algorithm: SigningAlgorithm(rawValue: algorithm)!)
            return try blocking { try await regionKeys.rotate() }
        }
        if json { return try output.json(Report(kid: key.kid, algorithm: key.algorithm.rawValue)) }
        try output.line("signing key \(key.kid) (\(key.algorithm.rawValue)) signs from now on")
    }
}

// Both run on a running host; neither is forwarded as a command line, since a rotation's writes
// are forwarded one by one (conditional writes and the key's publication).
extension KeysList: HostCommand {
    var writtenPartition: String? { nil }
}

extension KeysRotate: HostCommand {
    var writtenPartition: String? { nil }
}
