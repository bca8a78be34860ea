import Foundation
import NIOCore
import PartitionDB
import Synchronization

/// What this host is for one partition it holds, and since which epoch
/// (spec/replication.md#epochs-and-promotion): the partition's members are fixed by the
/// configuration file; which of them is primary is the configuration's choice at epoch 1 and a
/// promotion's after, kept in the host's term file. A host is primary of a partition when the
/// newest epoch it knows names it, and serves as one once that epoch is durable in the partition
/// (`serving`); a host that learns of a newer epoch stops serving at once.
final class PartitionRole: Sendable {
    let placement: HostConfiguration.PartitionPlacement
    private let state: Mutex<State>

    struct State {
        /// The newest epoch this host knows for the partition.
        var epoch: UInt64
        /// That epoch's primary.
        var primary: String
        /// Set while this host is the primary and ships the partition.
        var serving: PrimaryRole?
        /// While this host follows: the stream's state for `pdb replication status`.
        var replica = ReplicaState()
        /// The connection to the primary this host follows, closed when it learns of a newer epoch.
        var following: (any Channel)?
    }

    struct ReplicaState {
        var state = "connecting"
        var lastError: String?
    }

    init(placement: HostConfiguration.PartitionPlacement, epoch: UInt64, primary: String) {
        self.placement = placement
        state = Mutex(State(epoch: epoch, primary: primary))
    }

    /// Every host that holds the partition: its configured primary and replicas.
    var members: [String] { [placement.primary] + placement.replicas }

    func withState<T: Sendable>(_ body: (inout State) throws -> T) rethrows -> T {
        try state.withLock { try body(&$0) }
    }

    var epoch: UInt64 { state.withLock { $0.epoch } }
    var primary: String { state.withLock { $0.primary } }
    var serving: PrimaryRole? { state.withLock { $0.serving } }

    /// The hosts that follow `primary`: every member but it.
    func replicas(of primary: String) -> [String] { members.filter { $0 != primary } }
}

/// The primary's side of a partition for one epoch: its shipped log, each replica's figures,
/// and the commits waiting for their quorum.
final class PrimaryRole: Sendable {
    let epoch: UInt64
    let log: ShippedLog
    let figures: [String: ReplicaFigures]
    let quorum: QuorumWaiters?
    /// Set once a host of a newer epoch has deposed this one: its streams end at once.
    let deposed = Atomic<Bool>(false)

    init(epoch: UInt64, log: ShippedLog, replicas: [String], commitMode: CommitMode) {
        self.epoch = epoch
        self.log = log
        figures = Dictionary(uniqueKeysWithValues: replicas.map { ($0, ReplicaFigures(host: $0)) })
        if case .quorum(let count) = commitMode { quorum = QuorumWaiters(needed: count) } else { quorum = nil }
    }

    /// Stops shipping: waiting commits end with an unknown outcome, streams end.
    func depose() {
        deposed.store(true, ordering: .releasing)
        quorum?.releaseAll()
        log.wakeAll()
    }
}

extension ClusterHost {
    func role(of partition: String) -> PartitionRole? { roles[partition] }

    /// The shipping side of `partition`, while this host serves as its primary.
    func serving(_ partition: String) -> PrimaryRole? { roles[partition]?.serving }

    /// The newest epoch this host knows for `partition` (1 for one it does not hold).
    public func epoch(of partition: String) -> UInt64 { roles[partition]?.epoch ?? 1 }

    /// The current primary's host id of a partition this host replicates; nil when this host
    /// is its primary (or does not hold it).
    public func primary(ofReplica partition: String) -> String? {
        guard let role = roles[partition] else { return nil }
        let primary = role.primary
        return primary == configuration.host ? nil : primary
    }

    /// Throws unless this host may commit a write of `partition` itself now: it serves as its
    /// primary (a promotion that did not finish leaves it fenced but not serving).
    public func checkServing(_ partition: String) throws {
        guard let role = roles[partition], role.primary == configuration.host else { return }
        guard role.serving != nil else {
            throw ResidencyError.refused(
                code: "not_primary",
                message:
                    "\(configuration.host) is fenced at epoch \(role.epoch) of partition \(partition) but its promotion did not finish; run `pdb promote` again, here or on another replica"
            )
        }
    }

    /// Opens the shipping side of `partition` for `epoch`: a shipped log begun afresh (what an
    /// earlier epoch left may hold commits the partition no longer has) and figures for every
    /// other member. Call while nothing writes the partition.
    func openPrimaryRole(_ role: PartitionRole, epoch: UInt64) throws -> PrimaryRole {
        let name = role.placement.name
        let partition: Partition
        do {
            let existing = try database.partitionNames()
            partition = existing.contains(name) ? try database.partition(name) : try database.createPartition(name)
        } catch let error as PartitionDBError {
            throw ResidencyError.engine(error)
        }
        let directory = SegmentFormat.directory(database: database.path, partition: name)
        let log = try ShippedLog(directory: directory, partition: partition, retention: configuration.retention)
        partition.setCommitObserver { log.append($0) }
        return PrimaryRole(
            epoch: epoch, log: log, replicas: role.replicas(of: configuration.host),
            commitMode: role.placement.commitMode)
    }

    /// Records durably that `primary` leads `partition` from `epoch` on, and acts on it: a
    /// serving primary of an older epoch stops shipping (its waiting commits end with an unknown
    /// outcome), a stream from an older primary is closed. Returns false, changing nothing, when
    /// this host already knows `epoch` or a newer one, unless it is the same epoch with the
    /// same primary (a fence sent again).
    func adopt(epoch: UInt64, primary: String, of partition: String) throws -> Bool {
        guard let role = roles[partition] else { return false }
        return try role.withState { state in
            if epoch < state.epoch || (epoch == state.epoch && primary != state.primary) { return false }
            if epoch == state.epoch { return true }
            try TermFile(epoch: epoch, primary: primary).write(database: database.path, partition: partition)
            let old = state.primary
            state.epoch = epoch
            state.primary = primary
            if let serving = state.serving {
                state.serving = nil
                serving.depose()
                try? database.partition(partition).setCommitObserver(nil)
                try? FileManager.default.removeItem(
                    atPath: SegmentFormat.directory(database: database.path, partition: partition))
            }
            state.following?.close(promise: nil)
            state.following = nil
            logger.notice(
                "new epoch",
                metadata: [
                    "partition": "\(partition)", "epoch": "\(epoch)", "primary": "\(primary)", "was": "\(old)",
                ])
            return true
        }
    }
}
