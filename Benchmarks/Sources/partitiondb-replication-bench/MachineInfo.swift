import Foundation

/// The machine and software a run measured, recorded next to its numbers.
struct MachineInfo {
    var cpu: String
    var cores: Int
    var memoryBytes: UInt64
    var kernel: String
    var date: String
    var loadAverage: Double
    var postgresVersion: String
    var commit: String

    static func current(postgres: String, packageDirectory: String) -> MachineInfo {
        var loads = [0.0, 0.0, 0.0]
        let load = getloadavg(&loads, 3) >= 1 ? loads[0] : 0
        var name = utsname()
        uname(&name)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let formatter = ISO8601DateFormatter()
        return MachineInfo(
            cpu: model, cores: ProcessInfo.processInfo.activeProcessorCount,
            memoryBytes: ProcessInfo.processInfo.physicalMemory,
            kernel: "\(field(name.sysname)) \(field(name.release)) \(field(name.machine))",
            date: formatter.string(from: Date()), loadAverage: load,
            postgresVersion: output(postgres, ["--version"]) ?? "unknown",
            commit: output("/usr/bin/git", ["-C", packageDirectory, "log", "-1", "--format=%h %s"]) ?? "unknown")
    }

    private static func output(_ executable: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var summary: String {
        "\(cpu), \(cores) cores, \(format(Double(memoryBytes), .bytes)) memory, \(kernel), load average "
            + "\(fixed(loadAverage, 2)) at start, \(date); \(postgresVersion); PartitionDB at \"\(commit)\""
    }

    var json: [String: Any] {
        [
            "cpu": cpu, "cores": cores, "memory_bytes": memoryBytes, "kernel": kernel, "date": date,
            "load_average": loadAverage, "postgres_version": postgresVersion, "partitiondb_commit": commit,
        ]
    }
}
