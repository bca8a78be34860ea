#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// All engines' results of one run, with what is needed to read them.
struct Report {
    var machine: Machine
    var workload: Workload
    var results: [EngineKind: EngineResults]
    /// How many runs each row is the median of.
    var runs = 1

    // MARK: Markdown

    /// The table: a row per operation, a column per engine, PartitionDB's ratio to the better
    /// peer, and issue 4's target for the row.
    func markdown() -> String {
        var lines: [String] = []
        let engines = EngineKind.allCases.map(\.title)
        lines.append("| Operation | " + engines.joined(separator: " | ") + " | PartitionDB / best peer | Target |")
        lines.append("|---|" + engines.map { _ in "---:|" }.joined() + "---:|---|")
        for row in Row.allCases {
            var cells = [label(row)]
            for engine in EngineKind.allCases {
                cells.append(results[engine]?[row].map { format($0, row.unit) } ?? "–")
            }
            let partitiondb = results[.partitiondb]?[row]
            let sqlite = results[.sqlite]?[row]
            let lmdb = results[.lmdb]?[row]
            let peers = [sqlite, lmdb].compactMap { $0 }
            if let partitiondb, let best = peers.min(), best > 0 {
                cells.append(fixed(partitiondb / best, 2) + "×")
            } else {
                cells.append("–")
            }
            if let target = row.target {
                if let partitiondb, let limit = target.limit(sqlite: sqlite, lmdb: lmdb) {
                    cells.append(target.text + (partitiondb <= limit ? ": met" : ": **missed**"))
                } else {
                    cells.append(target.text)
                }
            } else {
                cells.append("")
            }
            lines.append("| " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The row's name with its size, for the table.
    func label(_ row: Row) -> String {
        let n = workload.records
        switch row {
        case .bulkLoad: return "bulk load (\(grouped(n)) records, 1 transaction)"
        case .individualWrites: return "individual writes (\(grouped(Workload.individualWrites)) transactions)"
        case .batchWrites:
            return "batch writes (\(Workload.batchWrites) × \(grouped(Workload.batchSize)) records)"
        case .randomReads, .randomReadsAgain, .randomReadsTwoThreads, .randomReadsTwoThreadsAgain:
            return row.rawValue.replacingFirst("random reads", with: "random reads of \(grouped(n))")
        case .rangeReads: return "random range reads (\(grouped(n / 2)) × \(Workload.rangeLength) entries)"
        case .removals: return "removals (\(grouped(n / 2)) records, 1 transaction)"
        default: return row.rawValue
        }
    }

    func format(_ value: Double, _ unit: Row.Unit) -> String {
        switch unit {
        case .milliseconds: return formatMilliseconds(value)
        case .bytes: return formatBytes(value)
        }
    }

    // MARK: JSON

    func json() -> String {
        var text = "{\n"
        text += "  \"machine\": " + machine.json(indent: "  ") + ",\n"
        text += "  \"parameters\": {\n"
        let parameters: [(String, String)] = [
            ("records", "\(workload.records)"),
            ("key_size", "\(Workload.keySize)"),
            ("value_size", "\(Workload.valueSize)"),
            ("seed", "\(workload.seed)"),
            ("individual_writes", "\(Workload.individualWrites)"),
            ("batch_writes", "\(Workload.batchWrites)"),
            ("batch_size", "\(Workload.batchSize)"),
            ("range_reads", "\(workload.records / 2)"),
            ("range_length", "\(Workload.rangeLength)"),
            ("removals", "\(workload.records / 2)"),
            ("read_threads", "[1, 2]"),
            ("runs", "\(runs)"),
        ]
        text += parameters.map { "    \(jsonString($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n  },\n"
        text += "  \"rows\": [\n"
        var rows: [String] = []
        for row in Row.allCases {
            var fields = [
                "\"operation\": \(jsonString(row.rawValue))", "\"unit\": \(jsonString(row.unit.rawValue))",
            ]
            for engine in EngineKind.allCases {
                fields.append("\(jsonString(engine.rawValue)): \(jsonNumber(results[engine]?[row], row.unit))")
            }
            rows.append("    {" + fields.joined(separator: ", ") + "}")
        }
        text += rows.joined(separator: ",\n") + "\n  ]\n}\n"
        return text
    }
}

// MARK: Rows of a child run

/// A child run hands its results to the parent as JSON lines, one row per line:
/// `{"engine": "sqlite", "operation": "bulk load", "unit": "ms", "value": 1234.5}`.
enum RowFile {
    static func encode(_ results: EngineResults, engine: EngineKind) -> String {
        Row.allCases.compactMap { row in
            results[row].map { value in
                "{\"engine\": \(jsonString(engine.rawValue)), \"operation\": \(jsonString(row.rawValue)), "
                    + "\"unit\": \(jsonString(row.unit.rawValue)), \"value\": \(jsonNumber(value, row.unit))}"
            }
        }.joined(separator: "\n") + "\n"
    }

    /// Reads back what `encode` wrote (and only that: the operation names hold no quotes).
    static func decode(_ text: String, path: String) throws -> EngineResults {
        var results: EngineResults = [:]
        for line in text.split(separator: "\n") where !line.isEmpty {
            guard let operation = field(line, "operation"), let row = Row(rawValue: operation),
                let number = field(line, "value"), let value = Double(number)
            else {
                throw BenchError.engine(engine: "harness", operation: "reading \(path)", detail: "bad line: \(line)")
            }
            results[row] = value
        }
        return results
    }

    private static func field(_ line: Substring, _ name: String) -> String? {
        guard let start = line.firstRange(of: "\"\(name)\": ")?.upperBound else { return nil }
        var rest = line[start...]
        if rest.first == "\"" {
            rest = rest.dropFirst()
            guard let end = rest.firstIndex(of: "\"") else { return nil }
            return String(rest[..<end])
        }
        let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) ?? rest.endIndex
        return String(rest[..<end])
    }
}

// MARK: Formatting

func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Milliseconds to the microsecond, bytes as integers; `null` when missing.
func jsonNumber(_ value: Double?, _ unit: Row.Unit) -> String {
    guard let value, value.isFinite else { return "null" }
    switch unit {
    case .milliseconds: return fixed(value, 3)
    case .bytes: return String(Int(value.rounded()))
    }
}

/// `value` with `decimals` digits after the point (no Foundation `String(format:)`).
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int((abs(value) * scale).rounded())
    let sign = value < 0 && scaled != 0 ? "-" : ""
    let whole = scaled / Int(scale)
    guard decimals > 0 else { return sign + String(whole) }
    let fraction = String(scaled % Int(scale))
    return sign + String(whole) + "." + String(repeating: "0", count: decimals - fraction.count) + fraction
}

/// Three significant digits or more: `0.153 ms`, `12.4 ms`, `1234 ms`.
func formatMilliseconds(_ value: Double) -> String {
    if value >= 100 { return grouped(Int(value.rounded())) + " ms" }
    if value >= 10 { return fixed(value, 1) + " ms" }
    if value >= 1 { return fixed(value, 2) + " ms" }
    return fixed(value, 3) + " ms"
}

/// Binary units with three significant digits: `23.4 MiB`.
func formatBytes(_ value: Double) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var scaled = value
    var unit = 0
    while scaled >= 1024 && unit < units.count - 1 {
        scaled /= 1024
        unit += 1
    }
    if unit == 0 { return "\(Int(value)) B" }
    return (scaled >= 100 ? fixed(scaled, 0) : scaled >= 10 ? fixed(scaled, 1) : fixed(scaled, 2)) + " " + units[unit]
}

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

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return self[..<range.lowerBound] + replacement + self[range.upperBound...]
    }
}
