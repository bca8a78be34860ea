import ArgumentParser
import Auth
import Foundation
import PartitionDB
import Residency

/// `pdb cluster init DIR --regions eu:2,us:1,ap:1`: a whole cluster on this machine for trying
/// and testing (spec/cli.md#cluster-init): a CA, a certificate and a config per host, an operator
/// certificate, a data directory per host, and the auth layer's subject key and country policy.
struct Cluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lay out a local cluster of hosts on loopback ports.", subcommands: [ClusterInit.self])
}

struct ClusterInit: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a cluster's CA, certificates, configs and data directories in a new folder.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The cluster's folder (must not exist, or be empty).")
    var directory: String

    @Option(
        help: "Regions and their host counts, e.g. eu:2,us:1,ap:1. The first host named is the directory's primary.")
    var regions: String

    @Option(help: "The first host's port; the others follow.")
    var basePort: Int = 7100

    @Option(help: "Regional partitions created in every region, comma-separated.")
    var partitions: String = "users"

    @Option(
        help: ArgumentHelp(
            "The regional partitions' commit mode: async, or quorum:N (a commit waits for N replicas).",
            discussion: "The directory keeps its default, quorum:1 when it has replicas."))
    var commitMode: String = "async"

    @Option(help: "The tokens' issuer: each region's is this URL + /REGION (https, or http on loopback).")
    var issuerBase = "https://auth.example.com"

    @Option(help: "The access tokens' audience.")
    var audience = "pdb-api"

    @Option(
        help: ArgumentHelp(
            "A country-to-region policy file (spec/auth.md#country-policy) to copy into the cluster.",
            discussion:
                "Default: the built-in sample, without the rules of regions the cluster has no hosts in (their countries go to the default region, or to the first region when the sample's default is not in the cluster)."
        ))
    var policy: String?

    struct Layout {
        var regions: [(region: Region, hosts: Int)]
        var partitions: [String]
        var commitMode: CommitMode
    }

    func layout() throws -> Layout {
        var result: [(Region, Int)] = []
        for item in regions.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let count = Int(parts[1]), (1...9).contains(count),
                let region = try? Region(String(parts[0])), !region.isGlobal
            else {
                throw ValidationError("--regions takes REGION:COUNT,… with 1 to 9 hosts per region, e.g. eu:2,us:1")
            }
            guard !result.contains(where: { $0.0 == region }) else {
                throw ValidationError("region \(region) appears twice")
            }
            result.append((region, count))
        }
        let names = partitions.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for name in names where name.isEmpty || name == Database.globalPartitionName {
            throw ValidationError("--partitions names regional partitions (not empty, not global)")
        }
        let hosts = result.reduce(0) { $0 + $1.1 }
        // The hosts' ports, then their metrics ports.
        guard basePort >= 1024, basePort + 2 * hosts <= 65536 else {
            throw ValidationError("--base-port is out of range")
        }
        guard let mode = CommitMode(commitMode) else {
            throw ValidationError("--commit-mode takes async or quorum:N, e.g. quorum:1")
        }
        if case .quorum(let count) = mode, let small = result.first(where: { $0.1 - 1 < count }) {
            throw ValidationError(
                "--commit-mode \(mode) waits for \(count) replicas, but region \(small.0) has \(small.1) host(s), so \(small.1 - 1) replica(s)"
            )
        }
        guard AuthSettings.isIssuerBase(issuerBase) else {
            throw ValidationError(
                "--issuer-base must be an https URL without a trailing / (http only on 127.0.0.1 or localhost)")
        }
        guard !audience.isEmpty, audience.utf8.count <= 200,
            audience.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) })
        else { throw ValidationError("--audience must be 1 to 200 printable ASCII characters without spaces") }
        return Layout(regions: result, partitions: names, commitMode: mode)
    }

    func validate() throws { _ = try layout() }

    struct HostEntry: Encodable {
        var host: String
        var region: String
        var address: String
        var metrics: String
        var config: String
        var command: String
    }

    struct Report: Encodable {
        var directory: String
        var hosts: [HostEntry]
        var operatorTLS: String

        enum CodingKeys: String, CodingKey {
            case directory, hosts
            case operatorTLS = "operator_tls"
        }
    }

    func execute() throws {
        let layout = try self.layout()
        let manager = FileManager.default
        if manager.fileExists(atPath: directory) {
            guard (try? manager.contentsOfDirectory(atPath: directory))?.isEmpty == true else {
                throw CLIError(
                    code: "target_exists",
                    message: "\(Quoting.path(directory)) exists and is not empty; choose a new folder")
            }
        }
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        func path(_ parts: String...) -> String { parts.reduce(root) { ($0 as NSString).appendingPathComponent($1) } }
        let ca = path("ca")
        try ClusterCertificates.createAuthority(in: ca)
        var peers: [String: HostConfiguration.Peer] = [:]
        var order: [(id: String, region: Region)] = []
        for (region, count) in layout.regions {
            for i in 1...count {
                let id = "\(region.name)-\(i)"
                peers[id] = .init(region: region, address: HostAddress(host: "127.0.0.1", port: basePort + order.count))
                order.append((id, region))
            }
        }
        // Each host's scrape address follows the replication ports, in the same order.
        var metrics: [String: HostAddress] = [:]
        for (index, host) in order.enumerated() {
            metrics[host.id] = HostAddress(host: "127.0.0.1", port: basePort + order.count + index)
        }
        let directoryPrimary = order[0].id
        let auth = try writeAuthFiles(
            path("auth"), regions: layout.regions.map(\.region), partitions: layout.partitions)
        var entries: [HostEntry] = []
        for (id, region) in order {
            try ClusterCertificates.issue(.host(id: id, region: region), authority: ca, into: path("hosts", id, "tls"))
            var placements = [
                HostConfiguration.PartitionPlacement(
                    name: Database.globalPartitionName, primary: directoryPrimary,
                    replicas: order.map(\.id).filter { $0 != directoryPrimary })
            ]
            let regionHosts = order.filter { $0.region == region }.map(\.id)
            for name in layout.partitions {
                placements.append(
                    .init(
                        name: name, primary: regionHosts[0], replicas: Array(regionHosts.dropFirst()),
                        commitMode: layout.commitMode))
            }
            // Only a partition's primary creates it: replicas receive it by snapshot, with its file id.
            let database = try Database.create(at: path("hosts", id, "data"), region: region)
            do {
                if id == regionHosts[0] { for name in layout.partitions { _ = try database.createPartition(name) } }
            } catch {
                try? database.close()
                throw error
            }
            try database.close()
            var configuration = HostConfiguration(
                file: path("hosts", id, "config.json"), host: id, region: region, dataDirectory: "data",
                tlsDirectory: "tls", listen: peers[id]!.address, metricsListen: metrics[id], hosts: peers,
                partitions: placements.sorted { $0.name < $1.name }, retention: .init())
            configuration.auth = auth
            let text = configuration.json(dataDirectory: "data", tlsDirectory: "tls")
            guard manager.createFile(atPath: configuration.file, contents: Data(text.utf8)) else {
                throw CLIError(code: "io", message: "cannot write \(Quoting.path(configuration.file))")
            }
            entries.append(
                HostEntry(
                    host: id, region: region.name, address: peers[id]!.address.description,
                    metrics: "http://\(metrics[id]!)/metrics", config: configuration.file,
                    command: "pdb serve --config \(configuration.file)"))
        }
        let operatorTLS = path("operator")
        try ClusterCertificates.issue(.operator(name: "admin"), authority: ca, into: operatorTLS)
        if json {
            try output.json(Report(directory: root, hosts: entries, operatorTLS: operatorTLS))
        } else {
            try output.line(
                "laid out a cluster of \(counted(entries.count, "host")) in \(Quoting.path(root)); start each host:")
            for entry in entries { try output.line("  \(entry.command)") }
            try output.line("each host serves its metrics for Prometheus on loopback:")
            for entry in entries { try output.line("  \(entry.host): \(entry.metrics)") }
            try output.line("then talk to a host with its operator certificate:")
            try output.line("  export PDB_TLS=\(operatorTLS)")
            try output.line("  pdb info pdb://\(entries[0].address)")
        }
    }

    /// Writes the cluster's subject key (32 random bytes as 64 hex digits, readable by the owner
    /// only) and its country policy into `folder`; returns the hosts' `auth` section, which
    /// names them from each host's folder.
    func writeAuthFiles(_ folder: String, regions: [Region], partitions: [String]) throws -> AuthSettings {
        let chosen: CountryRegionPolicy
        if let policy {
            chosen = try CountryRegionPolicy.load(policy)
            if let lost = chosen.regions.sorted().first(where: { !regions.contains($0) }) {
                throw CLIError(
                    code: "usage",
                    message: "\(Quoting.path(policy)) sends people to region \(lost), which the cluster has no hosts in"
                )
            }
        } else {
            chosen = try CountryRegionPolicy.sample.restricted(to: Set(regions), fallback: regions[0])
        }
        let manager = FileManager.default
        try manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let keyFile = (folder as NSString).appendingPathComponent("subject-key")
        let hex = SubjectKey.random().map { String(format: "%02x", $0) }.joined() + "\n"
        let policyFile = (folder as NSString).appendingPathComponent("residency-policy.json")
        guard manager.createFile(atPath: keyFile, contents: Data(hex.utf8), attributes: [.posixPermissions: 0o600]),
            manager.createFile(atPath: policyFile, contents: Data(chosen.json.utf8))
        else { throw CLIError(code: "io", message: "cannot write the auth files in \(Quoting.path(folder))") }
        var settings = AuthSettings(
            subjectKeyFile: "../../auth/subject-key", policyFile: "../../auth/residency-policy.json", policy: chosen,
            issuerBase: issuerBase, audience: audience)
        settings.partition = partitions.contains("users") ? "users" : partitions[0]
        return settings
    }
}
