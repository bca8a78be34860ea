import Synchronization

/// Replica lag as the primary sees it: for each commit, the time from the commit's return to the
/// primary's receipt of the replica's acknowledgement of an LSN at or after it.
///
/// The writer calls `committed` after each commit returns; the acknowledgement observer calls
/// `acknowledged`. An acknowledgement can overtake the writer's call (the commit is shipped
/// before `write` returns, and the automatic checkpoint runs after that): such a commit's lag is
/// 0, and it is counted.
final class LagRecorder: Sendable {
    private struct State {
        var recording = false
        /// Commits that returned and are not yet acknowledged, oldest first from `head`.
        var pendingLSNs: [UInt64] = []
        var pendingTimes: [Int64] = []
        var head = 0
        var acknowledged: UInt64 = 0
        /// Lag of each acknowledged commit, in nanoseconds.
        var lags: [Int64] = []
        /// The lag of the newest commit the latest acknowledgement covered: what PostgreSQL's
        /// `replay_lag` reports, sampled by `newestLag`.
        var newestLag: Int64? = nil
        var acknowledgedBeforeReturn = 0
    }

    /// Protects everything above: the writer thread and the observer's task both take it, each
    /// for a few array operations.
    private let state = Mutex(State())

    /// Starts a measurement; `acknowledged` is the replica's durable LSN now.
    func start(acknowledged: UInt64, expectedCommits: Int) {
        state.withLock {
            $0 = State()
            $0.recording = true
            $0.acknowledged = acknowledged
            $0.lags.reserveCapacity(expectedCommits)
            $0.pendingLSNs.reserveCapacity(expectedCommits)
            $0.pendingTimes.reserveCapacity(expectedCommits)
        }
    }

    func committed(lsn: UInt64, at time: Int64) {
        state.withLock { state in
            guard state.recording else { return }
            if state.acknowledged >= lsn {
                state.lags.append(0)
                state.acknowledgedBeforeReturn += 1
            } else {
                state.pendingLSNs.append(lsn)
                state.pendingTimes.append(time)
            }
        }
    }

    func acknowledged(lsn: UInt64, at time: Int64) {
        state.withLock { state in
            guard lsn > state.acknowledged else { return }
            state.acknowledged = lsn
            guard state.recording else { return }
            var newest: Int64? = nil
            while state.head < state.pendingLSNs.count, state.pendingLSNs[state.head] <= lsn {
                let lag = max(0, time - state.pendingTimes[state.head])
                state.lags.append(lag)
                newest = lag
                state.head += 1
            }
            if let newest { state.newestLag = newest }
        }
    }

    /// The lag of the newest commit covered by the latest acknowledgement, if one came.
    var newestLag: Int64? { state.withLock { $0.newestLag } }

    /// Commits returned and not yet acknowledged.
    var pending: Int { state.withLock { $0.pendingLSNs.count - $0.head } }

    /// Ends the measurement: every acknowledged commit's lag, and how many were not acknowledged.
    func finish() -> (lags: [Int64], unacknowledged: Int, acknowledgedBeforeReturn: Int) {
        state.withLock { state in
            state.recording = false
            return (state.lags, state.pendingLSNs.count - state.head, state.acknowledgedBeforeReturn)
        }
    }
}

/// The nearest-rank percentile `p` (0 to 100) of `values`, or nil when there are none.
func percentile<T: Comparable & Sendable>(_ values: [T], _ p: Double) -> T? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}
