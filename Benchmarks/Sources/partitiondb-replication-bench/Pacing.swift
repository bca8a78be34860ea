import Foundation

/// Nanoseconds on CLOCK_MONOTONIC: commit and acknowledgement times, and the writer's schedule.
func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// Seconds since 1970 on CLOCK_REALTIME: the clock PostgreSQL's `clock_timestamp()` reads, for
/// times that start in this process and end in a PostgreSQL server.
func realtimeSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Sleeps until `deadline` (monotonic nanoseconds); returns at once if it has passed.
func sleep(untilMonotonic deadline: Int64) {
    var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR {}
}

/// Transaction start times at `rate` a second as Poisson arrivals, the schedule `pgbench -R`
/// uses: each gap is exponentially distributed with mean 1/rate. A writer behind its schedule
/// starts the next transaction at once and the schedule does not wait for it, as in pgbench, so
/// a writer that cannot reach the rate shows it as a lower achieved rate.
struct PoissonSchedule {
    private var state: UInt64
    private let meanNanoseconds: Double
    private(set) var next: Int64

    init(rate: Double, start: Int64, seed: UInt64) {
        state = seed
        meanNanoseconds = 1e9 / rate
        next = start
    }

    /// The start of the next transaction; the one after it is drawn.
    mutating func advance() -> Int64 {
        let now = next
        // SplitMix64 to a uniform in (0, 1].
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let uniform = (Double(z >> 11) + 1) / Double(1 << 53)
        next += Int64((-log(uniform) * meanNanoseconds).rounded())
        return now
    }
}
