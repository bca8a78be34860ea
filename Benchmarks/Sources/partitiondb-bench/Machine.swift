import CLMDB
import CSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The machine and software a run measured, recorded next to its numbers.
struct Machine {
    var cpu: String
    var cores: Int
    var memoryBytes: Int
    var kernel: String
    /// UTC, ISO 8601.
    var date: String
    var sqliteVersion: String
    var lmdbVersion: String
    /// The 1-minute load average when the run began: on a shared machine, other work makes the
    /// numbers slower and noisier.
    var loadAverage: Double

    static func current() -> Machine {
        Machine(
            cpu: cpuModel(), cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), memoryBytes: totalMemory(),
            kernel: kernel(), date: utcNow(), sqliteVersion: String(cString: sqlite3_libversion()),
            lmdbVersion: lmdbVersion(), loadAverage: loadAverage())
    }

    /// One line for the README: "AMD EPYC, 2 cores, 23.5 GiB memory, Linux 6.1.0 x86_64, load ...".
    var summary: String {
        "\(cpu), \(cores) cores, \(formatBytes(Double(memoryBytes))) memory, \(kernel), load average "
            + "\(fixed(loadAverage, 2)) at start, \(date)"
    }

    func json(indent: String) -> String {
        let fields: [(String, String)] = [
            ("cpu", jsonString(cpu)), ("cores", "\(cores)"), ("memory_bytes", "\(memoryBytes)"),
            ("kernel", jsonString(kernel)), ("date", jsonString(date)), ("sqlite_version", jsonString(sqliteVersion)),
            ("lmdb_version", jsonString(lmdbVersion)), ("load_average", fixed(loadAverage, 2)),
        ]
        return "{\n" + fields.map { "\(indent)  \(jsonString($0.0)): \($0.1)" }.joined(separator: ",\n")
            + "\n\(indent)}"
    }

    private static func loadAverage() -> Double {
        var loads = [0.0, 0.0, 0.0]
        return getloadavg(&loads, 3) >= 1 ? loads[0] : 0
    }

    private static func lmdbVersion() -> String {
        var major: Int32 = 0
        var minor: Int32 = 0
        var patch: Int32 = 0
        _ = mdb_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    private static func cpuModel() -> String {
        guard let text = try? readTextFile("/proc/cpuinfo") else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            }
        }
        return "unknown"
    }

    private static func totalMemory() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size : 0
    }

    private static func kernel() -> String {
        var name = utsname()
        uname(&name)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        return "\(field(name.sysname)) \(field(name.release)) \(field(name.machine))"
    }

    private static func utcNow() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Substring {
    func trimmingCharacters(in characters: String) -> String {
        let set = Set(characters)
        var trimmed = self
        while let first = trimmed.first, set.contains(first) { trimmed = trimmed.dropFirst() }
        while let last = trimmed.last, set.contains(last) { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }
}
