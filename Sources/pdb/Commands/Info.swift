import ArgumentParser
import PartitionDB

/// `pdb info DIR [PARTITION]`
struct Info: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the host region, the partitions and their tables.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The database directory.")
    var directory: String

    @Argument(help: "Show only this partition.")
    var partition: String?

    struct Report: Encodable {
        var path: String
        var region: String
        var partitions: [PartitionReport]
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
        let report = try Session.withDatabase(directory, readOnly: true) { database, _ in
            let names = try partition.map { [$0] } ?? database.partitionNames()
            return Report(
                path: directory, region: database.region.name,
                partitions: try names.map { PartitionReport(try database.partition($0).info()) })
        }
        if json {
            output.json(report)
            return
        }
        output.line("database    \(report.path)")
        output.line("region      \(report.region)")
        if partition == nil {
            output.line("partitions  \(report.partitions.map(\.name).joined(separator: ", "))")
        }
        for info in report.partitions {
            output.line("")
            output.line("partition \(info.name) (region \(info.region))")
            output.line("  page size   \(info.pageSize) bytes")
            output.line("  pages       \(info.pageCount) (\(info.freePages) free)")
            output.line("  last LSN    \(info.lastLSN)")
            output.line("  log frames  \(info.logFrames)")
            output.line("  file id     \(info.fileID)")
            if info.tables.isEmpty {
                output.line("  tables      none")
            } else {
                output.line("  tables      \(info.tables.count)")
                let width = info.tables.keys.map(\.count).max() ?? 0
                for (table, count) in info.tables.sorted(by: { $0.key < $1.key }) {
                    let padding = String(repeating: " ", count: width - table.count)
                    output.line("    \(table)\(padding)  \(counted(count, "record"))")
                }
            }
        }
    }
}
