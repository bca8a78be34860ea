import ArgumentParser
import PartitionDB

/// `pdb check DIR [PARTITION]`
struct Check: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify every page, tree and index of one partition, or of all of them.",
        discussion: """
            Reports every damaged page with its file and page number, and exits 1 when anything is \
            damaged. A partition that cannot even be opened because of damage is reported the same way.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The database directory.")
    var directory: String

    @Argument(help: "Check only this partition (default: every partition, global included).")
    var partition: String?

    struct Report: Encodable {
        var clean: Bool
        var partitions: [PartitionReport]
    }

    struct PartitionReport: Encodable {
        var name: String
        var clean: Bool
        /// The statistics are present only when the partition could be opened and walked.
        var pageCount: Int?
        var reachablePages: Int?
        var freePages: Int?
        var logFrames: Int?
        var tables: [String: Int]?
        var damagedPages: [UInt32]
        var problems: [Problem]

        enum CodingKeys: String, CodingKey {
            case name, clean, tables, problems
            case pageCount = "page_count"
            case reachablePages = "reachable_pages"
            case freePages = "free_pages"
            case logFrames = "log_frames"
            case damagedPages = "damaged_pages"
        }
    }

    struct Problem: Encodable {
        var file: String
        var page: UInt32?
        var message: String

        var text: String { page.map { "\(file) page \($0): \(message)" } ?? "\(file): \(message)" }
    }

    func execute() throws {
        let report = try Session.withBareDatabase(directory, readOnly: true) { database in
            let names = try partition.map { [$0] } ?? database.partitionNames()
            let partitions = try names.map { try check($0, in: database) }
            return Report(clean: partitions.allSatisfy(\.clean), partitions: partitions)
        }
        if json {
            output.json(report)
        } else {
            show(report)
        }
        if !report.clean { throw ExitCode.failure }
    }

    /// Checks one partition; damage that stops it from opening becomes a problem of the report.
    private func check(_ name: String, in database: Database) throws -> PartitionReport {
        do {
            let found = try database.partition(name).check()
            let problems = found.problems.map { Problem(file: $0.file, page: $0.page, message: $0.message) }
            return PartitionReport(
                name: name, clean: found.isClean, pageCount: found.pageCount, reachablePages: found.reachablePages,
                freePages: found.freePages, logFrames: found.logFrames, tables: found.tables,
                damagedPages: found.damagedPages, problems: problems)
        } catch let error as PartitionDBError {
            let problem: Problem
            switch error {
            case .noSuchPartition, .invalidName, .locked, .closed:
                throw error
            case .corruptPage(let file, let page, let reason):
                problem = Problem(file: file, page: page, message: "cannot open the partition: \(reason)")
            default:
                problem = Problem(file: "\(directory)/\(name).pdb", page: nil, message: error.description)
            }
            return PartitionReport(
                name: name, clean: false, damagedPages: problem.page.map { [$0] } ?? [], problems: [problem])
        }
    }

    private func show(_ report: Report) {
        for partition in report.partitions {
            if partition.clean {
                var facts: [String] = []
                if let pages = partition.pageCount, let reachable = partition.reachablePages,
                    let free = partition.freePages
                {
                    facts.append("\(counted(pages, "page")): \(reachable) reachable, \(free) free")
                }
                if let frames = partition.logFrames { facts.append(counted(frames, "log frame")) }
                if let tables = partition.tables { facts.append(counted(tables.count, "table")) }
                output.line("\(partition.name): clean (\(facts.joined(separator: "; ")))")
            } else {
                let pages = partition.damagedPages.map(String.init).joined(separator: ", ")
                let summary =
                    partition.damagedPages.isEmpty
                    ? counted(partition.problems.count, "problem")
                    : "damaged \(partition.damagedPages.count == 1 ? "page" : "pages") \(pages)"
                output.line("\(partition.name): DAMAGED (\(summary))")
                for problem in partition.problems { output.line("  \(problem.text)") }
            }
        }
        let damaged = report.partitions.filter { !$0.clean }.count
        if damaged > 0 {
            output.line("")
            output.line(
                "check failed: \(damaged) of \(counted(report.partitions.count, "partition")) damaged; restore from a backup"
            )
        }
    }
}
