import PartitionDB
import Synchronization

/// A partition's commit mode (spec/replication.md#commit-modes): when a commit made through the
/// host counts as done.
public enum CommitMode: Sendable, Equatable, CustomStringConvertible {
    /// Done once durable on the primary; replicas follow as fast as they can.
    case async
    /// Done once durable on the primary and acknowledged durable by this many replicas.
    case quorum(Int)

    /// `async` or `quorum:N` (N ≥ 1), as in the configuration file and `pdb cluster init`.
    public init?(_ text: String) {
        if text == "async" {
            self = .async
        } else if text.hasPrefix("quorum:"), let count = Int(text.dropFirst("quorum:".count)), count >= 1,
            String(count) == text.dropFirst("quorum:".count)
        {
            self = .quorum(count)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .async: return "async"
        case .quorum(let count): return "quorum:\(count)"
        }
    }

    /// The replicas whose acknowledgements a commit waits for.
    var acknowledgementsNeeded: Int {
        switch self {
        case .async: return 0
        case .quorum(let count): return count
        }
    }
}

extension ClusterHost {
    /// Returns once the commit `lsn` of `partition`, durable on this host, satisfies the
    /// partition's commit mode: at once in `async` mode, once enough replicas have acknowledged
    /// it or a later commit in `quorum` mode. Throws `commitOutcomeUnknown` when
    /// `quorum_timeout_ms` passes first, the host stops, or the host is not (or no longer) the
    /// partition's primary: a host deposed while the commit waited.
    /// An application that commits through `Database` on a host calls this after each durable
    /// commit; the host's own write commands do (spec/replication.md#commit-modes).
    public func waitForCommitMode(of partition: String, lsn: LSN) async throws {
        guard case .quorum(let needed) = commitMode(of: partition) else { return }
        guard let waiters = serving(partition)?.quorum else {
            // Committed here while this host is not (or no longer) the primary: a newer epoch's
            // primary never had it.
            throw ResidencyError.commitOutcomeUnknown(
                partition: partition, lsn: lsn.rawValue, acknowledged: 0, needed: needed, waitedMilliseconds: 0)
        }
        let timeout = configuration.quorumTimeoutMilliseconds
        guard await waiters.wait(for: lsn.rawValue, timeout: .milliseconds(Int64(timeout))) else {
            throw ResidencyError.commitOutcomeUnknown(
                partition: partition, lsn: lsn.rawValue, acknowledged: waiters.acknowledgements(of: lsn.rawValue),
                needed: waiters.needed, waitedMilliseconds: timeout)
        }
    }

    /// The commit mode of `partition` on this host (`async` for a partition it does not hold).
    public func commitMode(of partition: String) -> CommitMode {
        configuration.placement(of: partition)?.commitMode ?? .async
    }
}

/// Commits waiting for their partition's quorum: each waits until `needed` replicas have
/// acknowledged an LSN at or above its own, or until its deadline. One per partition this host
/// is primary of; every acknowledgement a stream checks is handed to `acknowledged`, so one
/// acknowledgement releases every commit it covers (the round trips of concurrent commits are
/// shared, as their fsyncs are when they commit together).
final class QuorumWaiters: Sendable {
    /// One wait, from the moment its id is taken: the continuation is registered a moment later,
    /// and a timeout or a stop may come in between.
    private enum Wait {
        case starting
        case waiting(CheckedContinuation<Bool, Never>)
        case cancelled
    }

    private struct State {
        /// The newest durable LSN each replica acknowledged since this host started.
        var durable: [String: UInt64] = [:]
        var waits: [Int: (lsn: UInt64, wait: Wait)] = [:]
        var nextID = 0
        var stopped = false

        func acknowledgements(of lsn: UInt64) -> Int { durable.values.count { $0 >= lsn } }
    }

    let needed: Int
    private let state = Mutex(State())

    init(needed: Int) { self.needed = needed }

    /// The commits waiting now.
    var waitCount: Int { state.withLock { $0.waits.count } }

    /// The replicas that acknowledged `lsn` or a later commit.
    func acknowledgements(of lsn: UInt64) -> Int { state.withLock { $0.acknowledgements(of: lsn) } }

    /// Records a replica's durable LSN (never lowered: a snapshot's acknowledgement of 0 while
    /// it is sent says nothing about the commits the replica has), then releases the waits it
    /// completes.
    func acknowledged(replica: String, durableLSN: UInt64) {
        let released: [CheckedContinuation<Bool, Never>] = state.withLock { state in
            guard durableLSN > state.durable[replica] ?? 0 else { return [] }
            state.durable[replica] = durableLSN
            var released: [CheckedContinuation<Bool, Never>] = []
            for (id, entry) in state.waits {
                guard case .waiting(let continuation) = entry.wait, state.acknowledgements(of: entry.lsn) >= needed
                else { continue }
                state.waits[id] = nil
                released.append(continuation)
            }
            return released
        }
        for continuation in released { continuation.resume(returning: true) }
    }

    /// Returns true once `needed` replicas have acknowledged `lsn`, false when `timeout` passes
    /// first or the host stops (`releaseAll`).
    func wait(for lsn: UInt64, timeout: Duration) async -> Bool {
        if acknowledgements(of: lsn) >= needed { return true }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.waitForAcknowledgements(of: lsn) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    private func waitForAcknowledgements(of lsn: UInt64) async -> Bool {
        let id = state.withLock { state -> Int in
            defer { state.nextID += 1 }
            state.waits[state.nextID] = (lsn, .starting)
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now: Bool? = state.withLock { state in
                    guard case .starting = state.waits[id]?.wait, !state.stopped else {
                        state.waits[id] = nil
                        return false
                    }
                    if state.acknowledgements(of: lsn) >= needed {
                        state.waits[id] = nil
                        return true
                    }
                    state.waits[id] = (lsn, .waiting(continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            release(id)
        }
    }

    /// Ends one wait with false; one not registered yet ends as it registers.
    private func release(_ id: Int) {
        let continuation: CheckedContinuation<Bool, Never>? = state.withLock { state in
            guard let entry = state.waits[id] else { return nil }
            switch entry.wait {
            case .starting:
                state.waits[id] = (entry.lsn, .cancelled)
                return nil
            case .waiting(let continuation):
                state.waits[id] = nil
                return continuation
            case .cancelled:
                return nil
            }
        }
        continuation?.resume(returning: false)
    }

    /// Ends every wait with false, now and from now on: the host is stopping, and the outcome
    /// of the commits waiting is unknown.
    func releaseAll() {
        let ids = state.withLock { state in
            state.stopped = true
            return Array(state.waits.keys)
        }
        for id in ids { release(id) }
    }
}
