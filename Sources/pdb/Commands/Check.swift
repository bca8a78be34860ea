import ArgumentParser
import PartitionDB
import Residency

/// `pdb check DIR [PARTITION]`
struct Check: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify every page, tree and index of one partition, or of all of them.",
        discussion: """
            Reports every damaged page with its file and page number, and exits 1 when anything is \
            damaged. A partition that cannot even be opened because of damage is reported the same way.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "Check only this partition (default: every partition, global included).")
    var partition: String?

    struct Report: Encodable {
        var clean: Bool
        var partitions: [PartitionReport]

        init(partitions: [PartitionReport]) {
            self.partitions = partitions
            clean = partitions.allSatisfy(\.clean)
        }
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
        /// The retained shipped log, on a host's primary partition (spec/replication.md).
        var retainedLog: RetainedLog? = nil

        enum CodingKeys: String, CodingKey {
            case name, clean, tables, problems
            case retainedLog = "retained_log"
            case pageCount = "page_count"
            case reachablePages = "reachable_pages"
            case freePages = "free_pages"
            case logFrames = "log_frames"
            case damagedPages = "damaged_pages"
        }
    }

    struct RetainedLog: Encodable {
        var directory: String
        var segments: Int
        var bytes: Int
        var firstLSN: UInt64?
        var lastLSN: UInt64?
        var notes: [Problem]

        enum CodingKeys: String, CodingKey {
            case directory, segments, bytes, notes
            case firstLSN = "first_lsn"
            case lastLSN = "last_lsn"
        }
    }

}

extension Check.PartitionReport {
    /// The report of a partition (or file) that could not be checked at all.
    init(problem: Check.Problem, name: String) {
        self.init(name: name, clean: false, damagedPages: problem.page.map { [$0] } ?? [], problems: [problem])
    }
}

extension Check {
    struct Problem: Encodable {
        var file: String
        var page: UInt32?
        var message: String

        var text: String {
            page.map { "\(Quoting.path(file)) page \($0): \(message)" } ?? "\(Quoting.path(file)): \(message)"
        }
    }

    func execute() throws {
        let report = try location.withBareDatabase(readOnly: true) { database in
            if let partition { return Report(partitions: [try check(partition, in: database)]) }
            let names = try database.partitionNames()
            var partitions = try names.map { try check($0, in: database) }
            // A database without its directory is damaged, however clean the rest is.
            if !names.contains(Database.globalPartitionName) {
                partitions.insert(
                    PartitionReport(
                        problem: Problem(
                            file: "\(location.directory)/global.pdb", page: nil,
                            message:
                                "the global partition (the residency directory) is missing; restore it from a backup"),
                        name: Database.globalPartitionName), at: 0)
            }
            for file in try database.strayFiles() {
                partitions.append(
                    PartitionReport(
                        problem: Problem(
                            file: "\(location.directory)/\(file)", page: nil,
                            message:
                                "belongs to no partition (not a partition name, or a log without its file); move it away"
                        ),
                        name: file))
            }
            return Report(partitions: partitions)
        }
        if json {
            try output.json(report)
        } else {
            try show(report)
        }
        if !report.clean { throw ExitCode.failure }
    }

    /// Checks one partition; damage that stops it from opening becomes a problem of the report.
    private func check(_ name: String, in database: Database) throws -> PartitionReport {
        do {
            let opened = try database.partition(name)
            let found = try opened.check()
            var problems = found.problems.map { Problem(file: $0.file, page: $0.page, message: $0.message) }
            if name == Database.globalPartitionName {
                problems += try ResidencyDirectory.verify(opened).map {
                    Problem(file: opened.path, page: nil, message: $0)
                }
            }
            var retained: RetainedLog? = nil
            if let log = RetainedLogCheck.check(partition: opened, databaseDirectory: database.path) {
                problems += log.problems.map { Problem(file: $0.file, page: nil, message: $0.message) }
                retained = RetainedLog(
                    directory: log.directory, segments: log.segments, bytes: log.bytes, firstLSN: log.firstLSN,
                    lastLSN: log.lastLSN,
                    notes: log.notes.map { Problem(file: $0.file, page: nil, message: $0.message) })
            }
            return PartitionReport(
                name: name, clean: problems.isEmpty, pageCount: found.pageCount, reachablePages: found.reachablePages,
                freePages: found.freePages, logFrames: found.logFrames, tables: found.tables,
                damagedPages: found.damagedPages, problems: problems, retainedLog: retained)
        } catch let error as PartitionDBError {
            let problem: Problem
            switch error {
            case .noSuchPartition, .invalidName, .locked, .closed:
                throw error
            case .corruptPage(let file, let page, let reason):
                problem = Problem(file: file, page: page, message: "cannot open the partition: \(reason)")
            default:
                problem = Problem(file: "\(location.directory)/\(name).pdb", page: nil, message: error.description)
            }
            return PartitionReport(problem: problem, name: name)
        }
    }

    private func show(_ report: Report) throws {
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
                if let log = partition.retainedLog {
                    let range = log.firstLSN.map { " (LSN \($0) to \(log.lastLSN ?? $0))" } ?? ""
                    facts.append("retained log: \(counted(log.segments, "segment"))\(range)")
                }
                try output.line("\(Quoting.name(partition.name)): clean (\(facts.joined(separator: "; ")))")
            } else {
                let pages = partition.damagedPages.map(String.init).joined(separator: ", ")
                let summary =
                    partition.damagedPages.isEmpty
                    ? counted(partition.problems.count, "problem")
                    : "damaged \(partition.damagedPages.count == 1 ? "page" : "pages") \(pages)"
                try output.line("\(Quoting.name(partition.name)): DAMAGED (\(summary))")
                for problem in partition.problems { try output.line("  \(problem.text)") }
            }
            for note in partition.retainedLog?.notes ?? [] { try output.line("  note: \(note.text)") }
        }
        let damaged = report.partitions.filter { !$0.clean }.count
        if damaged > 0 {
            try output.line("")
            try output.line(
                "check failed: \(damaged) of \(counted(report.partitions.count, "partition")) damaged; restore from a backup"
            )
        }
    }
}
