import ArgumentParser
import Foundation
import PartitionDB
import Residency

/// `pdb cert init-ca DIR` and `pdb cert issue …`: the cluster's certificates for a real
/// deployment (spec/replication.md#certificates).
struct Cert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a cluster CA and issue host and operator certificates.",
        subcommands: [CertInitCA.self, CertIssue.self])
}

struct CertInitCA: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-ca", abstract: "Create a cluster CA (ca.pem, ca-key.pem) in a new folder.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The folder for the CA (created).")
    var directory: String

    @Option(help: "Days the CA is valid.")
    var validityDays: Int = 3650

    func validate() throws {
        guard (1...36_500).contains(validityDays) else { throw ValidationError("--validity-days must be 1 to 36500") }
    }

    func execute() throws {
        try ClusterCertificates.createAuthority(in: directory, validity: TimeInterval(validityDays) * 86_400)
        if json {
            try output.json([
                "ca": (directory as NSString).appendingPathComponent(ClusterCertificates.caCertificateFile)
            ])
        } else {
            try output.line("created the cluster CA in \(Quoting.path(directory)); keep ca-key.pem secret")
        }
    }
}

struct CertIssue: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue a host's or an operator's certificate, signed by the cluster CA, into a new folder.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The CA's folder (from `pdb cert init-ca`).")
    var ca: String

    @Option(help: "The host id (with --region).")
    var host: String?

    @Option(help: "The host's region.")
    var region: String?

    @Option(name: .customLong("operator"), help: "An operator's name (for the pdb client).")
    var operatorName: String?

    @Option(help: "The folder for the certificate, its key and the CA certificate (created).")
    var out: String

    @Option(help: "Days the certificate is valid.")
    var validityDays: Int = 365

    func validate() throws {
        guard (host == nil) != (operatorName == nil) else { throw ValidationError("give either --host or --operator") }
        if host != nil, region == nil { throw ValidationError("--host needs --region") }
        if operatorName != nil, region != nil { throw ValidationError("--region is for hosts") }
        guard (1...36_500).contains(validityDays) else { throw ValidationError("--validity-days must be 1 to 36500") }
        for name in [host, operatorName].compactMap({ $0 }) where !PeerIdentity.isValidName(name) {
            throw ValidationError("\(Quoting.name(name)) is not a valid name: 1 to 63 of a-z, 0-9, - _ .")
        }
    }

    var identity: PeerIdentity {
        get throws {
            if let host, let region {
                let parsed = try Region(region)
                guard !parsed.isGlobal else {
                    throw CLIError(code: "usage", message: "global is not a host's region")
                }
                return .host(id: host, region: parsed)
            }
            return .operator(name: operatorName!)
        }
    }

    func execute() throws {
        let identity = try self.identity
        try ClusterCertificates.issue(identity, authority: ca, into: out, validity: TimeInterval(validityDays) * 86_400)
        if json {
            try output.json(["identity": identity.uri, "directory": out])
        } else {
            try output.line("issued a certificate for \(identity) (\(identity.uri)) into \(Quoting.path(out))")
        }
    }
}
