import Metrics
import Synchronization

import class Prometheus.PrometheusCollectorRegistry
import struct Prometheus.PrometheusMetricsFactory

/// The replication figures of one host as swift-metrics (spec/replication.md#metrics), in a
/// Prometheus registry of the host's own: every metric is made with an explicit factory over
/// that registry, never through the global `MetricsSystem`, so that two hosts in one process
/// (tests) keep their figures apart and an application embedding a host keeps its own
/// bootstrap.
///
/// Counters increase where their events happen (a batch or a snapshot sent, a refusal); gauges
/// are set from `ClusterHost.status()` just before each scrape renders, so a scrape and
/// `pdb replication status` read the same figures.
final class HostMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    /// The gauges of a partition this host holds, whatever its role.
    private struct PartitionGauges {
        var lastLSN: Gauge
        var epoch: Gauge
        var role: Gauge
    }

    /// The figures of one replica of a partition this host is primary of.
    private struct ReplicaMetrics {
        var connected: Gauge
        var durableLSN: Gauge
        var lagCommits: Gauge
        var lagBytes: Gauge
        var lagMilliseconds: Gauge
        var compressionRatio: Gauge
        var bytesShipped: Counter
        var snapshotsSent: Counter
    }

    /// The gauges of a partition this host holds a copy of.
    private struct CopyGauges {
        var appliedLSN: Gauge
        var connected: Gauge
    }

    private let partitions: [String: PartitionGauges]
    private let replicas: [String: [String: ReplicaMetrics]]
    private let retainedBytes: [String: Gauge]
    private let copies: [String: CopyGauges]
    /// The refusal counters by code; protects only the dictionary (a counter is thread-safe).
    private let refusals: Mutex<[String: Counter]>
    /// Held while a scrape sets the gauges and renders, so that one scrape shows the figures of
    /// one status.
    private let rendering = Mutex(())

    /// The refusal codes this host can count (spec/replication.md#the-primary), each shown from
    /// the start with 0.
    static let refusalCodes = [
        "border", "identity_mismatch", "not_a_host", "not_a_replica", "not_an_operator", "not_primary",
        "protocol_version", "unexpected_message",
    ]

    /// Creates every metric of the partitions and replicas in `configuration`.
    init(configuration: HostConfiguration) {
        let factory = PrometheusMetricsFactory(registry: registry)
        self.factory = factory
        func gauge(_ name: String, _ dimensions: [(String, String)]) -> Gauge {
            Gauge(label: name, dimensions: dimensions, factory: factory)
        }
        func counter(_ name: String, _ dimensions: [(String, String)]) -> Counter {
            Counter(label: name, dimensions: dimensions, factory: factory)
        }
        var partitions: [String: PartitionGauges] = [:]
        var replicas: [String: [String: ReplicaMetrics]] = [:]
        var retainedBytes: [String: Gauge] = [:]
        var copies: [String: CopyGauges] = [:]
        for placement in configuration.partitions {
            let name = placement.name
            let isPrimary = placement.primary == configuration.host
            let roleLabels = [("partition", name), ("role", isPrimary ? "primary" : "replica")]
            partitions[name] = PartitionGauges(
                lastLSN: gauge("pdb_partition_last_lsn", roleLabels), epoch: gauge("pdb_partition_epoch", roleLabels),
                role: gauge("pdb_partition_role", roleLabels))
            if isPrimary {
                retainedBytes[name] = gauge("pdb_partition_retained_log_bytes", [("partition", name)])
                var byReplica: [String: ReplicaMetrics] = [:]
                for replica in placement.replicas {
                    let labels = [("partition", name), ("replica", replica)]
                    byReplica[replica] = ReplicaMetrics(
                        connected: gauge("pdb_replica_connected", labels),
                        durableLSN: gauge("pdb_replica_durable_lsn", labels),
                        lagCommits: gauge("pdb_replica_lag_commits", labels),
                        lagBytes: gauge("pdb_replica_lag_bytes", labels),
                        lagMilliseconds: gauge("pdb_replica_lag_milliseconds", labels),
                        compressionRatio: gauge("pdb_replica_compression_ratio", labels),
                        bytesShipped: counter("pdb_replica_shipped_bytes_total", labels),
                        snapshotsSent: counter("pdb_replica_snapshots_sent_total", labels))
                }
                replicas[name] = byReplica
            } else {
                let labels = [("partition", name)]
                copies[name] = CopyGauges(
                    appliedLSN: gauge("pdb_copy_applied_lsn", labels), connected: gauge("pdb_copy_connected", labels))
            }
        }
        self.partitions = partitions
        self.replicas = replicas
        self.retainedBytes = retainedBytes
        self.copies = copies
        refusals = Mutex(
            Dictionary(
                uniqueKeysWithValues: Self.refusalCodes.map { ($0, counter("pdb_refusals_total", [("code", $0)])) }))
    }

    /// Bytes of frames sent to `replica` on its stream of `partition` (batches, snapshot chunks).
    func shipped(bytes: Int, partition: String, replica: String) {
        replicas[partition]?[replica]?.bytesShipped.increment(by: bytes)
    }

    /// A whole snapshot of `partition` was sent to `replica`.
    func snapshotSent(partition: String, replica: String) {
        replicas[partition]?[replica]?.snapshotsSent.increment()
    }

    /// A replication request this host refused, by its refusal code.
    func refused(code: String) {
        let counter = refusals.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = Counter(label: "pdb_refusals_total", dimensions: [("code", code)], factory: factory)
            counters[code] = counter
            return counter
        }
        counter.increment()
    }

    /// Sets the gauges from `status` and renders every metric in the Prometheus text format
    /// (version 0.0.4).
    func render(_ status: ReplicationStatus) -> [UInt8] {
        rendering.withLock { _ in
            for partition in status.partitions {
                if let gauges = partitions[partition.name] {
                    gauges.lastLSN.record(Double(partition.lastLSN))
                    gauges.epoch.record(Double(partition.epoch))
                    gauges.role.record(1)
                }
                if let bytes = partition.retainedBytes { retainedBytes[partition.name]?.record(Double(bytes)) }
                for replica in partition.replicas ?? [] {
                    guard let metrics = replicas[partition.name]?[replica.host] else { continue }
                    metrics.connected.record(replica.state == "disconnected" ? 0 : 1)
                    metrics.durableLSN.record(Double(replica.durableLSN))
                    metrics.lagCommits.record(Double(replica.lagCommits))
                    metrics.lagBytes.record(Double(replica.lagBytes))
                    metrics.lagMilliseconds.record(Double(replica.lagMilliseconds))
                    metrics.compressionRatio.record(Double(replica.compressionRatioPercent) / 100)
                }
                if let copy = copies[partition.name] {
                    copy.appliedLSN.record(Double(partition.lastLSN))
                    copy.connected.record(partition.state == "streaming" || partition.state == "snapshot" ? 1 : 0)
                }
            }
            return registry.emitToBuffer()
        }
    }
}
