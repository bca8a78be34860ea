import Foundation
import NIOConcurrencyHelpers

/// How failed logins are limited (spec/auth.md#failed-logins), per subject and per client
/// address alike: the first `freeFailures` cost nothing; every failure from then on locks
/// further attempts out for `firstLockout`, doubling each time up to `maxLockout` (Cognito's
/// rule: 5 failures, then 1 s doubling to 15 minutes). A success resets a subject's count;
/// an address's count is forgotten `forgetAfter` after its last failure.
public struct AttemptLimits: Sendable, Equatable {
    public var freeFailures: Int
    public var firstLockout: TimeInterval
    public var maxLockout: TimeInterval
    public var forgetAfter: TimeInterval
    /// Client addresses (and unknown logins) tracked in memory at most; the oldest are dropped.
    public var maxTracked: Int

    public static let cognito = AttemptLimits(
        freeFailures: 5, firstLockout: 1, maxLockout: 15 * 60, forgetAfter: 15 * 60, maxTracked: 65_536)

    public init(
        freeFailures: Int, firstLockout: TimeInterval, maxLockout: TimeInterval, forgetAfter: TimeInterval,
        maxTracked: Int
    ) {
        self.freeFailures = freeFailures
        self.firstLockout = firstLockout
        self.maxLockout = maxLockout
        self.forgetAfter = forgetAfter
        self.maxTracked = maxTracked
    }

    /// How long attempts are locked out after the `failures`-th failure in a row: 0 before
    /// `freeFailures`, then `firstLockout` doubling, at most `maxLockout`.
    public func lockout(afterFailures failures: Int) -> TimeInterval {
        guard failures >= freeFailures else { return 0 }
        let doublings = min(failures - freeFailures, 40)
        return min(firstLockout * pow(2, Double(doublings)), maxLockout)
    }
}

/// Failure counts kept in memory, for what has no record to keep them in: client addresses
/// (personal data this layer never writes down) and logins that have no user (so that they
/// lock out exactly as real ones do and a caller cannot tell them apart).
final class AttemptLimiter: Sendable {
    let limits: AttemptLimits
    private let entries = NIOLockedValueBox<[String: Entry]>([:])

    struct Entry {
        var failures: Int
        var lastFailure: Date
        var lockedUntil: Date
    }

    init(limits: AttemptLimits) { self.limits = limits }

    /// Seconds until `key` may try again (rounded up), or nil when it may now.
    func retryAfter(_ key: String, now: Date) -> Int? {
        entries.withLockedValue { entries in
            guard let entry = entries[key] else { return nil }
            if now.timeIntervalSince(entry.lastFailure) >= limits.forgetAfter, now >= entry.lockedUntil {
                entries[key] = nil
                return nil
            }
            return now < entry.lockedUntil ? Int(entry.lockedUntil.timeIntervalSince(now).rounded(.up)) : nil
        }
    }

    func recordFailure(_ key: String, now: Date) {
        entries.withLockedValue { entries in
            var entry = entries[key] ?? Entry(failures: 0, lastFailure: now, lockedUntil: .distantPast)
            if now.timeIntervalSince(entry.lastFailure) >= limits.forgetAfter { entry.failures = 0 }
            entry.failures += 1
            entry.lastFailure = now
            entry.lockedUntil = now.addingTimeInterval(limits.lockout(afterFailures: entry.failures))
            if entries[key] == nil, entries.count >= limits.maxTracked,
                let oldest = entries.min(by: { $0.value.lastFailure < $1.value.lastFailure })?.key
            {
                entries[oldest] = nil
            }
            entries[key] = entry
        }
    }

    func reset(_ key: String) {
        _ = entries.withLockedValue { $0.removeValue(forKey: key) }
    }

    var trackedCount: Int { entries.withLockedValue { $0.count } }
}
