import Foundation

/// The two systems of the table.
enum System: String, CaseIterable, Sendable, Codable {
    case partitiondb
    case postgresql

    var title: String { self == .partitiondb ? "PartitionDB" : "PostgreSQL" }
}

enum Unit: String, Sendable {
    case commitsPerSecond = "commits/s"
    case milliseconds = "ms"
    case seconds = "s"
    case bytes
    case ratio
}

/// One row of the table.
enum Row: Hashable, Sendable {
    case commitsAlone
    case commitsHostOnly
    case commitsWithReplica
    case withReplicaOverAlone
    case achievedRate(Int)
    /// PartitionDB: the lag of every commit of a steady run.
    case lagCommitP50(Int)
    case lagCommitP99(Int)
    /// The lag of the newest acknowledged commit sampled every 10 ms (PostgreSQL: `replay_lag`).
    case lagSampledP50(Int)
    case lagSampledP99(Int)
    case catchUpSeconds
    case catchUpDataBytes
    case catchUpBytesShipped
    case bytesPerCommit
    case compressionRatio
    /// Commits a second with `writers` concurrent writers when each commit waits for one
    /// replica's acknowledgement (PartitionDB: quorum:1; PostgreSQL: one synchronous standby).
    case quorumCommits(writers: Int)

    static func all(rates: [Int]) -> [Row] {
        [.commitsAlone, .commitsHostOnly, .commitsWithReplica, .withReplicaOverAlone]
            + rates.flatMap {
                [.achievedRate($0), .lagCommitP50($0), .lagCommitP99($0), .lagSampledP50($0), .lagSampledP99($0)]
            }
            + [.catchUpSeconds, .catchUpDataBytes, .catchUpBytesShipped, .bytesPerCommit, .compressionRatio]
            + quorumWriters.map { .quorumCommits(writers: $0) }
    }

    /// The writer counts of the quorum rows.
    static let quorumWriters = [1, 8]

    /// The name in the JSON file.
    var id: String {
        switch self {
        case .commitsAlone: return "commits_per_second_alone"
        case .commitsHostOnly: return "commits_per_second_host_without_replica"
        case .commitsWithReplica: return "commits_per_second_with_async_replica"
        case .withReplicaOverAlone: return "with_replica_over_alone"
        case .achievedRate(let rate): return "steady_\(rate)_achieved_commits_per_second"
        case .lagCommitP50(let rate): return "steady_\(rate)_lag_each_commit_p50_ms"
        case .lagCommitP99(let rate): return "steady_\(rate)_lag_each_commit_p99_ms"
        case .lagSampledP50(let rate): return "steady_\(rate)_lag_sampled_p50_ms"
        case .lagSampledP99(let rate): return "steady_\(rate)_lag_sampled_p99_ms"
        case .catchUpSeconds: return "catch_up_seconds"
        case .catchUpDataBytes: return "catch_up_data_bytes"
        case .catchUpBytesShipped: return "catch_up_bytes_shipped"
        case .bytesPerCommit: return "bytes_shipped_per_commit"
        case .compressionRatio: return "compression_ratio"
        case .quorumCommits(let writers): return "quorum_1_commits_per_second_\(writers)_writers"
        }
    }

    var title: String {
        switch self {
        case .commitsAlone: return "commits/s, one writer alone (PartitionDB: no host; PostgreSQL: no standby)"
        case .commitsHostOnly: return "commits/s, one writer, host running, no replica connected"
        case .commitsWithReplica: return "commits/s, one writer, one async replica connected"
        case .withReplicaOverAlone: return "writer with replica / alone"
        case .achievedRate(let rate): return "steady \(grouped(rate))/s: commits/s achieved"
        case .lagCommitP50(let rate): return "steady \(grouped(rate))/s: lag p50, each commit"
        case .lagCommitP99(let rate): return "steady \(grouped(rate))/s: lag p99, each commit"
        case .lagSampledP50(let rate): return "steady \(grouped(rate))/s: lag p50, sampled every 10 ms (`replay_lag`)"
        case .lagSampledP99(let rate): return "steady \(grouped(rate))/s: lag p99, sampled every 10 ms (`replay_lag`)"
        case .catchUpSeconds: return "catch-up of a new replica: time"
        case .catchUpDataBytes: return "catch-up: the data (partition file; table and index)"
        case .catchUpBytesShipped: return "catch-up: bytes shipped (snapshot; base backup)"
        case .bytesPerCommit: return "bytes shipped per commit (batches; WAL)"
        case .compressionRatio: return "compression ratio of the stream"
        case .quorumCommits(let writers):
            let plural = writers == 1 ? "" : "s"
            return "commits/s, \(writers) writer\(plural), each commit acknowledged by one replica "
                + "(quorum:1; synchronous standby)"
        }
    }

    var unit: Unit {
        switch self {
        case .commitsAlone, .commitsHostOnly, .commitsWithReplica, .achievedRate, .quorumCommits:
            return .commitsPerSecond
        case .withReplicaOverAlone, .compressionRatio: return .ratio
        case .lagCommitP50, .lagCommitP99, .lagSampledP50, .lagSampledP99: return .milliseconds
        case .catchUpSeconds: return .seconds
        case .catchUpDataBytes, .catchUpBytesShipped, .bytesPerCommit: return .bytes
        }
    }

    /// The target for PartitionDB on this row, if it has one.
    var target: Target? {
        switch self {
        case .withReplicaOverAlone: return .atLeast(0.9)
        case .lagCommitP99(5_000): return .below(5)
        case .lagSampledP99(5_000): return .belowPostgreSQL
        case .catchUpSeconds: return .belowPostgreSQL
        case .quorumCommits: return .timesPostgreSQL(2)
        default: return nil
        }
    }

    enum Target: Sendable {
        case atLeast(Double)
        case below(Double)
        case belowPostgreSQL
        case timesPostgreSQL(Double)

        var text: String {
            switch self {
            case .atLeast(let value): return "≥ \(fixed(value, 2))"
            case .below(let value): return "< \(fixed(value, 0)) ms"
            case .belowPostgreSQL: return "< PostgreSQL"
            case .timesPostgreSQL(let factor): return "≥ \(fixed(factor, 0))× PostgreSQL"
            }
        }

        /// Whether PartitionDB's value meets it; nil when a value is missing.
        func met(_ partitiondb: Double?, postgresql: Double?) -> Bool? {
            guard let partitiondb else { return nil }
            switch self {
            case .atLeast(let value): return partitiondb >= value
            case .below(let value): return partitiondb < value
            case .belowPostgreSQL: return postgresql.map { partitiondb < $0 }
            case .timesPostgreSQL(let factor): return postgresql.map { partitiondb >= factor * $0 }
            }
        }
    }
}

/// One round's values.
struct RoundResults: Sendable {
    var values: [Row: [System: Double]] = [:]

    mutating func set(_ row: Row, _ system: System, _ value: Double?) {
        guard let value, value.isFinite else { return }
        values[row, default: [:]][system] = value
    }

    func value(_ row: Row, _ system: System) -> Double? { values[row]?[system] }
}

/// The settings of a run, recorded with its results.
struct Settings: Sendable {
    var runs = 3
    var quick = false
    /// Each throughput phase (alone, host only, with replica).
    var seconds = 5.0
    var steadySeconds = 5.0
    var rates = [2_000, 5_000]
    /// The size of the partition file a new replica catches up (1 GiB; quick: 100 MiB).
    var catchUpBytes = 1 << 30
    var catchUpTimeout = 600.0
    /// Only the catch-up rows (`--catch-up-only`): for measuring a change to snapshots.
    var catchUpOnly = false
    var only: System? = nil
    /// The primary host's log at info level (connections, snapshots) on stderr.
    var verbose = false
}

/// Everything a run measured, with the machine, as Markdown and JSON.
struct Report {
    var settings: Settings
    var machine: MachineInfo
    var records: Int
    var rounds: [RoundResults]
    var order: [[System]]

    /// Each row's median over the rounds that measured it.
    func median(_ row: Row, _ system: System) -> Double? {
        let values = rounds.compactMap { $0.value(row, system) }.sorted()
        guard !values.isEmpty else { return nil }
        let middle = values.count / 2
        return values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    }

    func markdown() -> String {
        var lines = [
            "| Row | PartitionDB | PostgreSQL | PartitionDB / PostgreSQL | Target |",
            "|---|---:|---:|---:|---|",
        ]
        for row in Row.all(rates: settings.rates) {
            let partitiondb = median(row, .partitiondb)
            let postgresql = median(row, .postgresql)
            guard partitiondb != nil || postgresql != nil else { continue }
            var ratio = "–"
            if let partitiondb, let postgresql, postgresql > 0 { ratio = fixed(partitiondb / postgresql, 2) + "×" }
            var target = ""
            if let goal = row.target {
                target = goal.text
                if let met = goal.met(partitiondb, postgresql: postgresql) { target += met ? ": met" : ": **missed**" }
            }
            lines.append(
                "| \(row.title) | \(format(partitiondb, row.unit)) | \(format(postgresql, row.unit)) | \(ratio) | \(target) |"
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func json() throws -> String {
        func rowObjects(_ value: (Row, System) -> Double?) -> [[String: Any]] {
            Row.all(rates: settings.rates).map { row in
                var object: [String: Any] = ["row": row.id, "unit": row.unit.rawValue]
                for system in System.allCases { object[system.rawValue] = value(row, system) ?? NSNull() }
                return object
            }
        }
        let object: [String: Any] = [
            "machine": machine.json,
            "parameters": [
                "runs": settings.runs, "quick": settings.quick, "throughput_seconds": settings.seconds,
                "steady_seconds": settings.steadySeconds, "rates": settings.rates,
                "catch_up_bytes_target": settings.catchUpBytes, "catch_up_records": records,
                "key_size": Records.keySize, "value_size": Records.valueSize, "lag_sample_interval_ms": 10,
                "order": order.map { $0.map(\.rawValue) },
            ] as [String: Any],
            "medians": rowObjects { median($0, $1) },
            "rounds": rounds.map { round in rowObjects { round.value($0, $1) } },
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

// MARK: Formatting

func format(_ value: Double?, _ unit: Unit) -> String {
    guard let value else { return "–" }
    switch unit {
    case .commitsPerSecond: return grouped(Int(value.rounded()))
    case .milliseconds: return value >= 100 ? grouped(Int(value.rounded())) + " ms" : significant(value) + " ms"
    case .seconds: return fixed(value, 2) + " s"
    case .ratio: return fixed(value, 2)
    case .bytes:
        let units = ["B", "KiB", "MiB", "GiB"]
        var scaled = value
        var index = 0
        while scaled >= 1024 && index < units.count - 1 {
            scaled /= 1024
            index += 1
        }
        return index == 0 ? "\(Int(value.rounded())) B" : significant(scaled) + " " + units[index]
    }
}

/// Three significant digits: 0.153, 1.53, 15.3, 153.
func significant(_ value: Double) -> String {
    if value >= 100 { return fixed(value, 0) }
    if value >= 10 { return fixed(value, 1) }
    if value >= 1 { return fixed(value, 2) }
    return fixed(value, 3)
}

func fixed(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

/// `1000000` as `1,000,000`.
func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (offset, digit) in digits.enumerated() {
        if offset > 0 && (digits.count - offset) % 3 == 0 { out += "," }
        out.append(digit)
    }
    return (value < 0 ? "-" : "") + out
}
