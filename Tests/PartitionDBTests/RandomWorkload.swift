import XCTest

@testable import PartitionDB

/// A reproducible random workload for the crash and fault tests: it creates a database and a
/// regional partition, then runs durable transactions (puts with inline and overflow values,
/// deletes, puts that create tables, dropped tables) on the regional partition `p` and on
/// `global`, with explicit checkpoints, compactions and reopens in between. With a small
/// `Options.autoCheckpointFrames` the commits also run automatic checkpoints and log restarts.
///
/// It records, for each partition, the content after each commit and, on `clock`, when each
/// commit began and returned (`CommitHistory`), so a crashed or failed run can be judged.
final class RandomWorkload {
    static let regional = "p"
    static let tables = ["t0", "t1", "t2", "t3"]
    static let subjects = ["s0", "s1", "s2"]

    /// One step of a workload.
    enum Step: Equatable {
        /// A durable commit of this many puts and deletes on `p`, or on `global`.
        case regionalCommit(changes: Int)
        case globalCommit(changes: Int)
        /// A durable commit that drops a table of `p` and puts into another.
        case dropTable
        case checkpoint(global: Bool)
        case compact
        /// Close the database and open it again: recovery of both partitions.
        case reopen
    }

    let path: String
    let options: Options
    let seed: UInt64
    let steps: [Step]
    /// Counts I/O operations (for the simulated file system, its trace position).
    let clock: () -> Int
    private var random: SeededGenerator

    /// The histories of `p` and `global`.
    private(set) var histories: [String: CommitHistory] = [:]
    /// When `Database.create` returned.
    private(set) var databaseCreationReturned: Int? = nil
    /// How many steps of each kind ran.
    private(set) var counts: [String: Int] = [:]
    /// The open database and partitions while `run` goes on; `abandon()` closes them after a failure.
    private var database: Database? = nil
    private var partitions: [Partition] = []

    static var partitionNames: [String] { [Database.globalPartitionName, regional] }

    /// A workload of `steps` random steps.
    convenience init(path: String, options: Options, seed: UInt64, steps: Int, clock: @escaping () -> Int) {
        var random = SeededGenerator(seed: seed ^ 0x57E9)
        let steps = (0..<steps).map { _ in RandomWorkload.randomStep(&random) }
        self.init(path: path, options: options, seed: seed, script: steps, clock: clock)
    }

    /// A workload of the given steps, with random keys and values from `seed`.
    init(path: String, options: Options, seed: UInt64, script: [Step], clock: @escaping () -> Int) {
        self.path = path
        self.options = options
        self.seed = seed
        self.steps = script
        self.clock = clock
        self.random = SeededGenerator(seed: seed)
    }

    static func randomStep(_ random: inout SeededGenerator) -> Step {
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<60: return .regionalCommit(changes: Int.random(in: 1...6, using: &random))
        case 60..<70: return .regionalCommit(changes: Int.random(in: 10...30, using: &random))
        case 70..<82: return .globalCommit(changes: Int.random(in: 1...4, using: &random))
        case 82..<86: return .dropTable
        case 86..<94: return .checkpoint(global: Bool.random(using: &random))
        case 94..<97: return .reopen
        default: return .compact
        }
    }

    static func resolver() -> FixedResolver {
        let resolver = FixedResolver()
        for subject in subjects { resolver.set(subject, eu) }
        return resolver
    }

    /// Runs the whole workload on `fileSystem` and closes the database. Rethrows the first error;
    /// the database then stays open until `abandon()`.
    func run(on fileSystem: any FileSystem) throws {
        histories[Database.globalPartitionName] = CommitHistory()
        histories[RandomWorkload.regional] = CommitHistory()
        let db = try Database.create(at: path, region: eu, options: options, fileSystem: fileSystem)
        database = db
        databaseCreationReturned = clock()
        histories[Database.globalPartitionName]!.creationReturned = databaseCreationReturned
        db.setResolver(RandomWorkload.resolver())

        partitions.append(try db.createPartition(RandomWorkload.regional))
        histories[RandomWorkload.regional]!.creationReturned = clock()
        partitions.append(try db.globalPartition())

        for step in steps {
            if step == .reopen {
                count("reopens")
                try close()
                try open(fileSystem)
            } else {
                try run(step, regional: partitions[0], global: partitions[1])
            }
        }
        try close()
    }

    /// Closes the partitions and the database. Partitions close in a fixed order
    /// (`Database.close` takes them in dictionary order), so a seed gives the same trace in every
    /// process.
    private func close() throws {
        for partition in partitions { try partition.close() }
        partitions = []
        try database?.close()
        database = nil
    }

    /// Opens the database and both partitions again.
    private func open(_ fileSystem: any FileSystem) throws {
        let db = try Database.open(at: path, region: eu, options: options, fileSystem: fileSystem)
        database = db
        db.setResolver(RandomWorkload.resolver())
        partitions = [try db.partition(RandomWorkload.regional), try db.globalPartition()]
    }

    /// Closes the database left open by a failed `run`, ignoring errors, so its lock is released.
    func abandon() {
        for partition in partitions { try? partition.close() }
        partitions = []
        try? database?.close()
        database = nil
    }

    private func count(_ kind: String) { counts[kind, default: 0] += 1 }

    private func run(_ step: Step, regional: Partition, global: Partition) throws {
        switch step {
        case .regionalCommit(let changes):
            count("regional commits")
            try commit(regional, changes: changes)
        case .globalCommit(let changes):
            count("global commits")
            try commit(global, changes: changes)
        case .dropTable:
            count("dropped tables")
            try dropTable(in: regional)
        case .checkpoint(let isGlobal):
            count("checkpoints")
            try (isGlobal ? global : regional).checkpoint()
        case .compact:
            count("compactions")
            _ = try regional.compact()
        case .reopen:
            preconditionFailure("run(on:) reopens")
        }
    }

    private func randomKey(in table: [[UInt8]: StoredRecord]?) -> [UInt8] {
        if let table, !table.isEmpty, Int.random(in: 0..<3, using: &random) == 0 {
            return table.keys.sorted { compareBytes($0, $1) < 0 }[Int.random(in: 0..<table.count, using: &random)]
        }
        return Array("key-\(Int.random(in: 0..<80, using: &random))".utf8)
    }

    private func randomValue() -> [UInt8] {
        // A tenth are overflow values: more than a page, so they take an overflow chain.
        let length =
            Int.random(in: 0..<10, using: &random) == 0
            ? Int.random(in: 4_200...13_000, using: &random) : Int.random(in: 0...400, using: &random)
        return (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    /// One durable write transaction of `changes` random puts and deletes.
    private func commit(_ partition: Partition, changes: Int) throws {
        let isGlobal = partition.region.isGlobal
        try write(partition) { tx, content in
            for _ in 0..<changes {
                let table = isGlobal ? "settings" : RandomWorkload.tables[Int.random(in: 0..<4, using: &random)]
                let key = randomKey(in: content[table])
                if Int.random(in: 0..<4, using: &random) == 0 {
                    let existed = try tx.hasTable(table) ? try tx.delete(table, key) : false
                    XCTAssertEqual(existed, content[table]?[key] != nil, "delete of an existing key")
                    content[table]?[key] = nil
                } else {
                    let value = randomValue()
                    let owner =
                        isGlobal ? nil : RandomWorkload.subjects[Int.random(in: 0..<3, using: &random)]
                    try tx.put(table, key, value, owner: try owner.map(SubjectID.init))
                    content[table, default: [:]][key] = StoredRecord(value: value, owner: owner)
                }
            }
        }
    }

    /// A durable transaction that drops one existing table and refills another.
    private func dropTable(in partition: Partition) throws {
        try write(partition) { tx, content in
            let existing = content.keys.sorted()
            if let table = existing.isEmpty ? nil : existing[Int.random(in: 0..<existing.count, using: &random)] {
                let dropped = try tx.dropTable(table)
                XCTAssertTrue(dropped, "dropping an existing table")
                content[table] = nil
            }
            let table = RandomWorkload.tables[Int.random(in: 0..<4, using: &random)]
            let key = randomKey(in: content[table])
            let value = randomValue()
            try tx.put(table, key, value, owner: try SubjectID("s0"))
            content[table, default: [:]][key] = StoredRecord(value: value, owner: "s0")
        }
    }

    /// Runs `body` as one durable commit of `partition`, applying the same changes to the model.
    private func write(
        _ partition: Partition, _ body: (WriteTransaction, inout PartitionContent) throws -> Void
    ) throws {
        let name = partition.name
        var content = histories[name]!.latest
        var began = false
        try partition.write(durability: .durable) { tx in
            try body(tx, &content)
            // The commit is attempted only once the body is through: from here on its frames may reach the disk.
            histories[name]!.begin(content, at: clock())
            began = true
        }
        precondition(began)
        histories[name]!.acknowledge(at: clock())
    }
}
