import Foundation
import PartitionDB

/// One host's configuration file, `pdb serve --config FILE` (spec/config.md): who the host is,
/// where its data and TLS files are, where it listens, the cluster's hosts, and for each partition
/// it holds which host is the primary and which hosts replicate it. Read once at start; an
/// unknown key, a missing key or a bad value is refused with the file and the key named, and so
/// is a layout that would carry a regional partition across a border.
public struct HostConfiguration: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var region: Region
        public var address: HostAddress

        public init(region: Region, address: HostAddress) {
            self.region = region
            self.address = address
        }
    }

    public struct PartitionPlacement: Sendable, Equatable {
        public var name: String
        public var primary: String
        public var replicas: [String]
        /// When a commit made through the primary host is done (spec/config.md#partitions).
        public var commitMode: CommitMode

        /// `commitMode` nil: the default, `quorum:1` for the directory when it has replicas,
        /// else `async`.
        public init(name: String, primary: String, replicas: [String], commitMode: CommitMode? = nil) {
            self.name = name
            self.primary = primary
            self.replicas = replicas
            self.commitMode =
                commitMode ?? (name == Database.globalPartitionName && !replicas.isEmpty ? .quorum(1) : .async)
        }
    }

    public struct Retention: Sendable, Equatable {
        /// The most bytes of shipped log kept per partition for replicas that are behind.
        public var maxBytes: UInt64 = 256 << 20
        /// The oldest shipped log kept, in seconds.
        public var maxAgeSeconds: UInt64 = 86_400

        public init() {}
    }

    public static let version = 1

    public var file: String
    public var host: String
    public var region: Region
    public var dataDirectory: String
    public var tlsDirectory: String
    public var listen: HostAddress
    public var metricsListen: HostAddress?
    public var hosts: [String: Peer]
    /// In the file's order of names (sorted: JSON objects have no order).
    public var partitions: [PartitionPlacement]
    public var retention: Retention
    /// Seconds of silence after which a replication stream is closed and connected anew.
    public var peerTimeoutSeconds: UInt64 = 10
    /// How long a commit in `quorum` mode waits for its acknowledgements before it fails with
    /// its outcome unknown (`ResidencyError.commitOutcomeUnknown`).
    public var quorumTimeoutMilliseconds: UInt64 = 5_000
    /// The auth layer's settings (spec/config.md#auth); nil when the host serves no auth.
    public var auth: AuthSettings?

    public init(
        file: String, host: String, region: Region, dataDirectory: String, tlsDirectory: String, listen: HostAddress,
        metricsListen: HostAddress?, hosts: [String: Peer], partitions: [PartitionPlacement], retention: Retention
    ) {
        self.file = file
        self.host = host
        self.region = region
        self.dataDirectory = dataDirectory
        self.tlsDirectory = tlsDirectory
        self.listen = listen
        self.metricsListen = metricsListen
        self.hosts = hosts
        self.partitions = partitions
        self.retention = retention
    }

    public var identity: PeerIdentity { .host(id: host, region: region) }

    /// A path as the file writes it, made absolute: relative paths are taken from the file's
    /// folder.
    public func resolve(_ path: String) -> String {
        Self.resolve(path, base: (file as NSString).deletingLastPathComponent)
    }

    static func resolve(_ path: String, base: String) -> String {
        path.hasPrefix("/") || base.isEmpty ? path : (base as NSString).appendingPathComponent(path)
    }

    public func placement(of partition: String) -> PartitionPlacement? {
        partitions.first { $0.name == partition }
    }

    /// Reads and checks `file`. Relative paths in it are taken from the file's folder.
    public static func load(_ file: String) throws -> HostConfiguration {
        try parse(try ConfigurationReader.json(file), file: file)
    }

    static func parse(_ root: Any, file: String) throws -> HostConfiguration {
        let base = (file as NSString).deletingLastPathComponent
        func resolve(_ path: String) -> String { Self.resolve(path, base: base) }
        let reader = ConfigurationReader(file: file)
        let top = try reader.object(root, at: "")
        try reader.allowOnly(
            top, at: "",
            [
                "version", "host", "region", "data_directory", "tls_directory", "listen", "metrics_listen", "hosts",
                "partitions", "retention", "peer_timeout_seconds", "quorum_timeout_ms", "auth",
            ])
        let version = try reader.integer(top, "version", at: "")
        guard version == UInt64(Self.version) else {
            throw reader.bad("version", "is \(version); this pdb reads version \(Self.version)")
        }
        let host = try reader.name(top, "host", at: "")
        let region = try reader.region(top, "region", at: "")
        let listen = try reader.address(top, "listen", at: "")
        let metrics = try top["metrics_listen"].map { _ in try reader.address(top, "metrics_listen", at: "") }
        var hosts: [String: Peer] = [:]
        let hostsObject = try reader.object(try reader.required(top, "hosts", at: ""), at: "hosts")
        for (id, value) in hostsObject {
            let at = "hosts.\(id)"
            guard PeerIdentity.isValidName(id) else { throw reader.bad(at, "is not a valid host id (a-z, 0-9, - _ .)") }
            let entry = try reader.object(value, at: at)
            try reader.allowOnly(entry, at: at, ["region", "address"])
            let peerRegion = try reader.region(entry, "region", at: at)
            guard !peerRegion.isGlobal else {
                throw reader.bad("\(at).region", "is global; a host belongs to a region")
            }
            hosts[id] = Peer(region: peerRegion, address: try reader.address(entry, "address", at: at))
        }
        guard let me = hosts[host] else { throw reader.bad("hosts", "does not list this host, \(host)") }
        guard me.region == region else {
            throw reader.bad("hosts.\(host).region", "is \(me.region) but region is \(region)")
        }
        var placements: [PartitionPlacement] = []
        let partitionsObject = try reader.object(try reader.required(top, "partitions", at: ""), at: "partitions")
        for name in partitionsObject.keys.sorted() {
            let at = "partitions.\(name)"
            let entry = try reader.object(partitionsObject[name]!, at: at)
            try reader.allowOnly(entry, at: at, ["primary", "replicas", "commit_mode"])
            let primary = try reader.name(entry, "primary", at: at)
            guard let replicaValues = try reader.required(entry, "replicas", at: at) as? [Any] else {
                throw reader.bad("\(at).replicas", "must be an array of host ids")
            }
            var replicas: [String] = []
            for (i, value) in replicaValues.enumerated() {
                guard let id = value as? String, hosts[id] != nil else {
                    throw reader.bad("\(at).replicas[\(i)]", "must name a host listed under hosts")
                }
                guard id != primary, !replicas.contains(id) else {
                    throw reader.bad("\(at).replicas[\(i)]", "repeats \(id); a host holds one copy of a partition")
                }
                replicas.append(id)
            }
            guard hosts[primary] != nil else {
                throw reader.bad("\(at).primary", "must name a host listed under hosts")
            }
            guard primary == host || replicas.contains(host) else {
                throw reader.bad(at, "does not place a copy on this host, \(host); list only the partitions it holds")
            }
            if name != Database.globalPartitionName {
                // Borders: a regional partition lives only on hosts of its region.
                for id in [primary] + replicas where hosts[id]!.region != region {
                    throw reader.bad(
                        at,
                        "places the partition on \(id) of region \(hosts[id]!.region); a partition of region \(region) stays on hosts of region \(region)"
                    )
                }
            }
            var mode: CommitMode? = nil
            if entry["commit_mode"] != nil {
                let text = try reader.string(entry, "commit_mode", at: at)
                guard let parsed = CommitMode(text) else {
                    throw reader.bad("\(at).commit_mode", "must be async or quorum:N (N from 1 to the replicas' count)")
                }
                guard parsed.acknowledgementsNeeded <= replicas.count else {
                    throw reader.bad(
                        "\(at).commit_mode",
                        "waits for \(parsed.acknowledgementsNeeded) replicas' acknowledgements, but the partition has \(replicas.count) replicas"
                    )
                }
                mode = parsed
            }
            placements.append(PartitionPlacement(name: name, primary: primary, replicas: replicas, commitMode: mode))
        }
        guard placements.contains(where: { $0.name == Database.globalPartitionName }) else {
            throw reader.bad("partitions", "has no global; every host holds the directory")
        }
        var retention = Retention()
        if let value = top["retention"] {
            let entry = try reader.object(value, at: "retention")
            try reader.allowOnly(entry, at: "retention", ["max_bytes", "max_age_seconds"])
            if entry["max_bytes"] != nil {
                retention.maxBytes = try reader.integer(entry, "max_bytes", at: "retention")
            }
            if entry["max_age_seconds"] != nil {
                retention.maxAgeSeconds = try reader.integer(entry, "max_age_seconds", at: "retention")
            }
        }
        var peerTimeout: UInt64 = 10
        if top["peer_timeout_seconds"] != nil {
            peerTimeout = try reader.integer(top, "peer_timeout_seconds", at: "")
            guard (2...3_600).contains(peerTimeout) else {
                throw reader.bad("peer_timeout_seconds", "must be 2 to 3600 (a heartbeat goes every second)")
            }
        }
        var quorumTimeout: UInt64 = 5_000
        if top["quorum_timeout_ms"] != nil {
            quorumTimeout = try reader.integer(top, "quorum_timeout_ms", at: "")
            guard (10...600_000).contains(quorumTimeout) else {
                throw reader.bad("quorum_timeout_ms", "must be 10 to 600000 (milliseconds)")
            }
        }
        var configuration = HostConfiguration(
            file: file, host: host, region: region,
            dataDirectory: resolve(try reader.string(top, "data_directory", at: "")),
            tlsDirectory: resolve(try reader.string(top, "tls_directory", at: "")), listen: listen,
            metricsListen: metrics, hosts: hosts, partitions: placements, retention: retention)
        configuration.peerTimeoutSeconds = peerTimeout
        configuration.quorumTimeoutMilliseconds = quorumTimeout
        if let value = top["auth"] {
            configuration.auth = try AuthSettings.parse(
                value, reader: reader, partitions: placements, hostRegions: Set(hosts.values.map(\.region)),
                resolve: resolve)
        }
        return configuration
    }

    /// The file's JSON form (what `pdb cluster init` writes); `load` of it gives this value back
    /// with paths as written.
    public func json(dataDirectory data: String, tlsDirectory tls: String) -> String {
        var root: [String: Any] = [
            "version": Self.version, "host": host, "region": region.name, "data_directory": data,
            "tls_directory": tls, "listen": listen.description,
            "hosts": hosts.mapValues { ["region": $0.region.name, "address": $0.address.description] },
            "partitions": Dictionary(
                uniqueKeysWithValues: partitions.map {
                    (
                        $0.name,
                        ["primary": $0.primary, "replicas": $0.replicas, "commit_mode": $0.commitMode.description]
                    )
                }),
            "retention": ["max_bytes": retention.maxBytes, "max_age_seconds": retention.maxAgeSeconds],
            "peer_timeout_seconds": peerTimeoutSeconds, "quorum_timeout_ms": quorumTimeoutMilliseconds,
        ]
        if let metricsListen { root["metrics_listen"] = metricsListen.description }
        if let auth { root["auth"] = auth.json }
        let data = try! JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
