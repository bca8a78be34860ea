import Synchronization

/// The batches a primary has sent one replica and not yet had acknowledged
/// (spec/replication.md#flow-control). The stream sends a batch only while fewer than
/// `ClusterHost.batchesInFlight` are unacknowledged; the commits made meanwhile wait in the
/// shipped log and go out together in the next batch. So a replica slower than the writer gets
/// fewer, larger batches (one fsync each) instead of a queue of one-commit frames in the socket
/// buffers, and its lag stays a few batches long rather than growing while the writer runs.
final class AcknowledgementWindow: Sendable {
    private struct State {
        /// The last LSN of each unacknowledged batch, oldest first.
        var inFlight: [UInt64] = []
        var closed = false
        var waiter: UnsafeContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    var unacknowledged: Int { state.withLock { $0.inFlight.count } }

    /// Records a batch whose last commit is `lsn`, just sent.
    func sent(through lsn: UInt64) {
        state.withLock { $0.inFlight.append(lsn) }
    }

    /// Records an acknowledgement: every batch up to `lsn` is durable on the replica.
    func acknowledged(_ lsn: UInt64) {
        let waiter: UnsafeContinuation<Void, Never>? = state.withLock { state in
            let before = state.inFlight.count
            state.inFlight.removeAll { $0 <= lsn }
            guard state.inFlight.count < before else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Forgets the batches in flight: after a snapshot, whose acknowledgement may be of a lower
    /// LSN than batches of the partition's earlier file.
    func reset() {
        let waiter: UnsafeContinuation<Void, Never>? = state.withLock { state in
            state.inFlight = []
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Ends the stream: a waiting sender returns, and every later wait returns at once.
    func close() {
        let waiter: UnsafeContinuation<Void, Never>? = state.withLock { state in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Returns once fewer than `limit` batches are unacknowledged, or the stream has ended.
    /// One sender waits at a time (the stream's task).
    func waitForRoom(limit: Int) async {
        while true {
            let room = state.withLock { $0.closed || $0.inFlight.count < limit }
            if room { return }
            await withUnsafeContinuation { continuation in
                let ready = state.withLock { state in
                    if state.closed || state.inFlight.count < limit { return true }
                    precondition(state.waiter == nil, "two senders wait on one acknowledgement window")
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }
}
