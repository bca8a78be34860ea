import PartitionDB
import Synchronization

/// A replica's acknowledgement of a partition this host is primary of, as the primary received
/// it (spec/replication.md#the-primary): the replica's copy holds every commit up to
/// `durableLSN`, on its disk.
public struct Acknowledgement: Sendable, Equatable {
    /// The partition's name.
    public var partition: String
    /// The replica's host id, from its verified certificate.
    public var replica: String
    /// The replica's durable LSN: after a batch, the batch's last commit; after a snapshot, the
    /// snapshot's LSN; in answer to a heartbeat, the copy's LSN again; 0 while the replica waits
    /// for or receives a snapshot (it only says the replica is alive).
    public var durableLSN: LSN

    public init(partition: String, replica: String, durableLSN: LSN) {
        self.partition = partition
        self.replica = replica
        self.durableLSN = durableLSN
    }
}

extension ClusterHost {
    /// Calls `observer` with every acknowledgement a replica sends for a partition this host is
    /// primary of, once it has been checked (an acknowledgement of an LSN never sent closes the
    /// stream instead and is not observed) and counted in `status()`. nil removes the observer;
    /// a new one replaces the old. For measurements: the replication benchmark times each
    /// commit's lag from its return to the acknowledgement that covers it
    /// (Benchmarks/README.md#replication).
    ///
    /// The observer runs on the task that reads the replica's stream, one call at a time per
    /// stream (streams of several replicas may call it at once): keep it short and never block,
    /// since the next frame of that stream waits for it. LSNs of one stream never go down,
    /// except to 0 while a snapshot is sent (see `Acknowledgement.durableLSN`).
    public func onAcknowledgement(_ observer: (@Sendable (Acknowledgement) -> Void)?) {
        acknowledgementObserver.set(observer)
    }
}

/// The function `onAcknowledgement` set, read by every acknowledgement.
final class AcknowledgementObserverSlot: Sendable {
    /// The function in a class: a bare function value read out of a `Mutex` through
    /// `withLock { $0 }` is reabstracted through the generic `inout` and written back wrapped in
    /// two more thunks each time, so every acknowledgement made the next call longer (the
    /// benchmark's primary spent 13% of its time in thunk chains). A reference is not re-wrapped.
    private final class Observer: Sendable {
        let call: @Sendable (Acknowledgement) -> Void
        init(_ call: @escaping @Sendable (Acknowledgement) -> Void) { self.call = call }
    }

    /// Protects the observer; held only to read or replace it, never while it runs.
    private let observer = Mutex<Observer?>(nil)

    func set(_ new: (@Sendable (Acknowledgement) -> Void)?) {
        let box = new.map(Observer.init)
        observer.withLock { $0 = box }
    }

    func notify(partition: String, replica: String, durableLSN: UInt64) {
        guard let current = observer.withLock({ $0 }) else { return }
        current.call(Acknowledgement(partition: partition, replica: replica, durableLSN: LSN(durableLSN)))
    }
}
