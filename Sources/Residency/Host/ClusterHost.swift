import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PartitionDB
import Synchronization

/// Runs a `pdb` command line sent by an operator, against this host's open database. `pdb`
/// implements it (the host knows nothing of the command line).
public protocol CommandRunning: Sendable {
    func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult
    /// The partition the command line writes, nil when it only reads (or does not parse): a
    /// primary runs a command another host forwards only when it writes a partition that host
    /// replicates (spec/replication.md#write-forwarding).
    func writtenPartition(arguments: [String]) -> String?
}

extension CommandRunning {
    public func writtenPartition(arguments: [String]) -> String? { nil }
}

public struct CommandResult: Sendable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var status: UInt32
    /// For a write command: the partition's newest LSN when it finished (its commit's or a
    /// later one's; also when it failed), sent to a host that forwarded it.
    public var committedLSN: UInt64?

    public init(stdout: [UInt8], stderr: [UInt8], status: UInt32, committedLSN: UInt64? = nil) {
        self.stdout = stdout
        self.stderr = stderr
        self.status = status
        self.committedLSN = committedLSN
    }
}

/// One running host of a cluster (`pdb serve`, spec/replication.md): it listens for mutual-TLS
/// connections of replicas and operators, ships the commits of the partitions it is primary of,
/// and replicates the partitions it holds copies of from their primaries.
public final class ClusterHost: Sendable {
    public let configuration: HostConfiguration
    public let database: Database
    let tls: TLSFiles
    let logger: Logger
    let commands: any CommandRunning
    let group: MultiThreadedEventLoopGroup
    /// Engine work (commits, fsyncs, snapshots) runs here, never on an event loop.
    let pool: NIOThreadPool
    /// Each partition's role here: primary or replica, of which epoch (`PartitionRole.swift`).
    let roles: [String: PartitionRole]
    let refusals = Atomic<UInt64>(0)
    /// The figures as swift-metrics, in the host's own Prometheus registry.
    let metrics: HostMetrics
    let acknowledgementObserver = AcknowledgementObserverSlot()
    /// The residency directory in this host's copy of `global`, installed as the database's
    /// resolver.
    let directory: ResidencyDirectory
    private let server = Mutex<(any Channel)?>(nil)
    /// The scrape endpoint while `run()` serves `metrics_listen`.
    private let metricsEndpoint = Mutex<MetricsEndpoint?>(nil)
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    let stopping = Atomic<Bool>(false)

    /// Opens nothing itself: `database` is the host's open database. Checks that the identity in
    /// the TLS folder is this host's, and creates the partitions this host is primary of that do
    /// not exist yet.
    public init(configuration: HostConfiguration, database: Database, commands: any CommandRunning, logger: Logger)
        throws
    {
        self.configuration = configuration
        self.database = database
        self.commands = commands
        self.logger = logger
        tls = try TLSFiles(directory: configuration.tlsDirectory)
        guard tls.identity == configuration.identity else {
            throw ResidencyError.configuration(
                file: configuration.file, key: "tls_directory",
                reason: "holds the certificate of \(tls.identity), but this host is \(configuration.identity)")
        }
        guard database.region == configuration.region else {
            throw ResidencyError.configuration(
                file: configuration.file, key: "data_directory",
                reason: "is a database of region \(database.region), but this host is of region \(configuration.region)"
            )
        }
        var roles: [String: PartitionRole] = [:]
        for placement in configuration.partitions {
            // The newest epoch this host knows: its term file's, or its copy's, or the
            // configuration's (spec/replication.md#term-files).
            let term = try TermFile.read(database: database.path, partition: placement.name)
            let copyEpoch =
                (try? database.partitionNames().contains(placement.name)) == true
                ? ((try? database.partition(placement.name).epoch) ?? 1) : 1
            let role =
                if let term, term.epoch >= copyEpoch {
                    PartitionRole(placement: placement, epoch: term.epoch, primary: term.primary)
                } else {
                    PartitionRole(placement: placement, epoch: copyEpoch, primary: placement.primary)
                }
            roles[placement.name] = role
        }
        self.roles = roles
        directory = try ResidencyDirectory(database: database)
        metrics = HostMetrics(configuration: configuration)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Blocking engine calls run here. A durable write holds its thread while it waits for the
        // group's log sync (PartitionDB's GroupCommit): the commits of as many clients as there
        // are threads can share one sync.
        pool = NIOThreadPool(numberOfThreads: 8)
        pool.start()
        for role in roles.values where role.primary == configuration.host {
            // A promotion that fenced the others but did not make its epoch durable here does
            // not serve: it is run again (spec/replication.md#promotion).
            let copyEpoch = (try? database.partition(role.placement.name).epoch) ?? 1
            guard copyEpoch == role.epoch || (role.epoch == 1 && role.placement.primary == configuration.host) else {
                continue
            }
            let serving = try openPrimaryRole(role, epoch: role.epoch)
            role.withState { $0.serving = serving }
        }
    }

    /// Listens, replicates and serves until `stop()`. `onListening` gets the bound address.
    /// With `metrics_listen`, serves the metrics there too (a bind failure there is thrown
    /// before anything else starts).
    public func run(onListening: @Sendable (HostAddress) -> Void = { _ in }) async throws {
        let tls = self.tls
        if let address = configuration.metricsListen {
            let endpoint = try await MetricsEndpoint.bind(
                address, file: configuration.file, group: group, pool: pool,
                render: { [self] in metrics.render(status()) })
            metricsEndpoint.withLock { $0 = endpoint }
            if stopping.load(ordering: .relaxed) { endpoint.close() }
            logger.info("serving metrics", metadata: ["address": "http://\(endpoint.address)\(MetricsEndpoint.path)"])
        }
        let channel: NIOAsyncChannel<(NIOAsyncChannel<Frame, Frame>, EventLoopFuture<Void>), Never>
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: configuration.listen.host, port: configuration.listen.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try FrameTransport.configure(channel, tls: NIOSSLServerHandler(context: tls.serverContext))
                    }
                }
        } catch {
            metricsEndpoint.withLock { $0?.close() }
            throw error
        }
        server.withLock { $0 = channel.channel }
        let port = channel.channel.localAddress?.port ?? configuration.listen.port
        logger.info("listening", metadata: ["address": "\(configuration.listen.host):\(port)"])
        onListening(HostAddress(host: configuration.listen.host, port: port))
        await withDiscardingTaskGroup { tasks in
            tasks.addTask { await self.heartbeats() }
            for role in roles.values {
                tasks.addTask { await self.follow(role) }
                if role.epoch > 1, role.primary == configuration.host {
                    tasks.addTask { await self.fenceStragglers(role, epoch: role.epoch) }
                }
            }
            do {
                try await channel.executeThenClose { inbound in
                    for try await (connection, handshake) in inbound {
                        tasks.addTask { await self.serve(connection, handshake: handshake) }
                    }
                }
            } catch {
                if !stopping.load(ordering: .relaxed) {
                    logger.error("listener failed", metadata: ["error": "\(error)"])
                }
            }
        }
        logger.info("stopped")
    }

    /// Stops listening, closes every connection and ends `run()`. Commits in flight finish (they
    /// run on the thread pool, whose work `shutdown()` waits for).
    public func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        logger.info("stopping")
        server.withLock { $0?.close(promise: nil) }
        metricsEndpoint.withLock { $0?.close() }
        for channel in connections.withLock({ Array($0.values) }) { channel.close(promise: nil) }
        for role in roles.values {
            role.serving?.log.wakeAll()
            role.serving?.quorum?.releaseAll()
        }
    }

    /// Waits for engine work in flight and releases the threads; call after `run()` returned.
    public func shutdown() async {
        try? await pool.shutdownGracefully()
        try? await group.shutdownGracefully()
    }

    func track(_ channel: any Channel) {
        connections.withLock { $0[ObjectIdentifier(channel)] = channel }
        if stopping.load(ordering: .relaxed) { channel.close(promise: nil) }
    }

    func untrack(_ channel: any Channel) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Counts a replication request this host refused (`pdb replication status`, and the
    /// `pdb_refusals_total` metric by code).
    func countRefusal(code: String) {
        refusals.add(1, ordering: .relaxed)
        metrics.refused(code: code)
    }

    /// Wakes idle streams once a second so they send a heartbeat.
    private func heartbeats() async {
        while !stopping.load(ordering: .relaxed) {
            try? await Task.sleep(for: .milliseconds(250))
            for role in roles.values { role.serving?.log.wakeAll() }
        }
    }

    public func status() -> ReplicationStatus {
        var partitions: [ReplicationStatus.Partition] = []
        for placement in configuration.partitions {
            guard let role = roles[placement.name] else { continue }
            let partition = try? database.partition(placement.name)
            let lastLSN = partition?.lastLSN.rawValue ?? 0
            let state = role.withState { $0 }
            let cut = DeposedCopies.list(database: database.path, partition: placement.name)
            if let serving = state.serving {
                let log = serving.log
                let figures = log.figures
                let replicas = role.replicas(of: configuration.host).map { id -> ReplicationStatus.Replica in
                    let values = serving.figures[id]?.values.withLock { $0 } ?? .init()
                    let lag = log.lag(after: values.durableLSN)
                    return ReplicationStatus.Replica(
                        host: id, state: values.state, durableLSN: values.durableLSN,
                        lagCommits: figures.newest > values.durableLSN ? figures.newest - values.durableLSN : 0,
                        lagBytes: UInt64(lag.bytes), lagMilliseconds: UInt64(lag.milliseconds),
                        bytesShipped: values.bytesShipped,
                        compressionRatioPercent: values.batchBytesShipped == 0
                            ? 0 : values.uncompressedBytesShipped * 100 / values.batchBytesShipped,
                        snapshotsSent: values.snapshotsSent, lastError: values.lastError)
                }
                partitions.append(
                    .init(
                        name: placement.name, role: "primary", epoch: state.epoch, lastLSN: lastLSN, primary: nil,
                        state: nil, retainedBytes: UInt64(figures.retainedBytes),
                        oldestRetainedLSN: figures.oldestRetained, replicas: replicas, lastError: figures.lastError,
                        cut: cut))
            } else if state.primary == configuration.host {
                partitions.append(
                    .init(
                        name: placement.name, role: "fenced", epoch: state.epoch, lastLSN: lastLSN, primary: nil,
                        state: "promotion did not finish", retainedBytes: nil, oldestRetainedLSN: nil, replicas: nil,
                        lastError: nil, cut: cut))
            } else {
                partitions.append(
                    .init(
                        name: placement.name, role: "replica", epoch: state.epoch, lastLSN: lastLSN,
                        primary: state.primary, state: state.replica.state, retainedBytes: nil,
                        oldestRetainedLSN: nil, replicas: nil, lastError: state.replica.lastError, cut: cut))
            }
        }
        return ReplicationStatus(
            host: configuration.host, region: configuration.region.name, partitions: partitions,
            refusals: refusals.load(ordering: .relaxed))
    }
}

/// A value behind a mutex, in a class so that it can sit in a dictionary.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<T: Sendable>(_ body: (inout Value) throws -> T) rethrows -> T { try mutex.withLock { try body(&$0) } }
}
