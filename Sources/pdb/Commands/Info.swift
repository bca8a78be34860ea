import ArgumentParser
import PartitionDB

/// `pdb info DIR [PARTITION]`
struct Info: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the host region, the partitions and their tables.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "Show only this partition.")
    var partition: String?

    struct Report: Encodable {
        var path: String
        var region: String
        var partitions: [PartitionReport]
        /// Files that could not be shown as partitions, and a missing global partition.
        var problems: [Problem]
    }

    struct Problem: Encodable {
        var file: String
        var code: String
        var message: String
    }

    struct PartitionReport: Encodable {
        var name: String
        var region: String
        var pageSize: Int
        var pageCount: Int
        var freePages: Int
        var lastLSN: UInt64
        var logFrames: Int
        var fileID: String
        var tables: [String: Int]

        enum CodingKeys: String, CodingKey {
            case name, region, tables
            case pageSize = "page_size"
            case pageCount = "page_count"
            case freePages = "free_pages"
            case lastLSN = "last_lsn"
            case logFrames = "log_frames"
            case fileID = "file_id"
        }

        init(_ info: PartitionInfo) {
            name = info.name
            region = info.region.name
            pageSize = info.pageSize
            pageCount = info.pageCount
            freePages = info.freePages
            lastLSN = info.lastLSN.rawValue
            logFrames = info.logFrames
            fileID = info.fileID
            tables = info.tables
        }
    }

    func execute() throws {
        // Without the residency directory: info shows what it can when `global` is damaged or gone.
        let report = try location.withBareDatabase(readOnly: true) { database in
            if let partition {
                return Report(
                    path: location.directory, region: database.region.name,
                    partitions: [PartitionReport(try database.partition(partition).info())], problems: [])
            }
            var partitions: [PartitionReport] = []
            var problems: [Problem] = []
            let names = try database.partitionNames()
            if !names.contains(Database.globalPartitionName) {
                problems.append(
                    Problem(
                        file: "\(location.directory)/global.pdb", code: "no_such_partition",
                        message: "the global partition (the residency directory) is missing; restore it from a backup"))
            }
            for name in names {
                do {
                    partitions.append(PartitionReport(try database.partition(name).info()))
                } catch let error as PartitionDBError {
                    if case .locked = error { throw error }
                    problems.append(
                        Problem(file: "\(location.directory)/\(name).pdb", code: error.code, message: error.description)
                    )
                }
            }
            for file in try database.strayFiles() {
                problems.append(
                    Problem(
                        file: "\(location.directory)/\(file)", code: "stray_file",
                        message: "belongs to no partition (not a partition name, or a log without its file)"))
            }
            return Report(
                path: location.directory, region: database.region.name, partitions: partitions, problems: problems)
        }
        if json {
            try output.json(report)
            return
        }
        try output.line("database    \(Quoting.path(report.path))")
        try output.line("region      \(report.region)")
        if partition == nil {
            try output.line("partitions  \(report.partitions.map(\.name).joined(separator: ", "))")
        }
        for info in report.partitions {
            try output.line("")
            try output.line("partition \(info.name) (region \(info.region))")
            try output.line("  page size   \(info.pageSize) bytes")
            try output.line("  pages       \(info.pageCount) (\(info.freePages) free)")
            try output.line("  last LSN    \(info.lastLSN)")
            try output.line("  log frames  \(info.logFrames)")
            try output.line("  file id     \(info.fileID)")
            if info.tables.isEmpty {
                try output.line("  tables      none")
            } else {
                try output.line("  tables      \(info.tables.count)")
                let width = info.tables.keys.map(\.count).max() ?? 0
                for (table, count) in info.tables.sorted(by: { $0.key < $1.key }) {
                    let padding = String(repeating: " ", count: width - table.count)
                    try output.line("    \(table)\(padding)  \(counted(count, "record"))")
                }
            }
        }
        if !report.problems.isEmpty {
            try output.line("")
            for problem in report.problems {
                try output.line("problem: \(Quoting.path(problem.file)): \(problem.message)")
            }
            try output.line("run `pdb check \(Quoting.path(location.directory))` for the full verdict")
        }
    }
}
