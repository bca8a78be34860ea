/// What `Partition.check()` found.
public struct CheckReport: Sendable, Equatable {
    /// One damaged page or broken rule. `page` is nil for problems not tied to one page.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var page: UInt32?
        public var message: String
        public var description: String {
            page.map { "\(file) page \($0): \(message)" } ?? "\(file): \(message)"
        }
    }

    public var pageCount = 0
    public var reachablePages = 0
    public var freePages = 0
    public var logFrames = 0
    public var tables: [String: Int] = [:]
    public var problems: [Problem] = []

    public var isClean: Bool { problems.isEmpty }
    /// The pages reported as damaged, each once, ascending.
    public var damagedPages: [UInt32] { Array(Set(problems.compactMap { $0.page })).sorted() }
}

extension Partition {
    /// Verifies the whole partition at the newest commit: every page of the file and every log
    /// frame against its checksum; every tree for key order, separator bounds and record counts;
    /// the owner index against the records; and that each page is accounted for exactly once, as
    /// reachable from a tree or as free. Damage is reported, never thrown.
    public func check() throws -> CheckReport {
        let (pager, id, snapshot) = try beginRead()
        defer { pager.endRead(id) }
        var checker = Checker(
            context: PageContext(pager: pager, snapshot: snapshot), region: region, mainPath: path,
            logPath: pager.wal.file.path)
        try checker.run()
        checker.reportPreservedLogs(fileSystem: fileSystem)
        // A read-only open preserves no copy: the damaged log itself, untouched, is the evidence.
        for warning in recoveryWarnings where options.readOnly {
            checker.problem(nil, warning.description, file: warning.preservedLog)
        }
        return checker.report
    }
}

/// One run of `check()`.
struct Checker {
    let context: PageContext
    let region: Region
    let mainPath: String
    let logPath: String
    var report = CheckReport()
    /// How often each page was reached; each must end at exactly 1.
    var seen: [UInt8]
    var ownedRecords = 0

    init(context: PageContext, region: Region, mainPath: String, logPath: String) {
        self.context = context
        self.region = region
        self.mainPath = mainPath
        self.logPath = logPath
        self.seen = [UInt8](repeating: 0, count: Int(context.header.pageCount))
    }

    /// Set when a damaged page hid part of a tree, so unreached pages are not all leaks.
    var treeDamaged = false

    mutating func problem(_ page: UInt32?, _ message: String, file: String? = nil) {
        let problem = CheckReport.Problem(file: file ?? mainPath, page: page, message: message)
        if !report.problems.contains(problem) { report.problems.append(problem) }
    }

    mutating func run() throws {
        let header = context.header
        report.pageCount = Int(header.pageCount)
        try physicalPass()
        mark(0)
        var tableIDs: [UInt32: String] = [:]
        // The catalog tree, then every table it names.
        var catalog: [(String, TableInfo)] = []
        walkTree(root: header.catalogRoot, name: "catalog") { leaf, index in
            let key = leaf.leafKey(index)
            let name = String(decoding: key, as: UTF8.self)
            if case .inline(let offset, let length) = leaf.leafValue(index),
                let info = TableInfo.decode(leaf.copyBytes(at: offset, count: length))
            {
                catalog.append((name, info))
            } else {
                return "catalog entry \(name) is malformed"
            }
            return nil
        }
        for (name, info) in catalog {
            if let other = tableIDs[info.id] { problem(nil, "tables \(other) and \(name) share id \(info.id)") }
            tableIDs[info.id] = name
            if info.id >= header.nextTableID { problem(nil, "table \(name) has id \(info.id) beyond the next id") }
            var count: UInt64 = 0
            var owned = 0
            let isGlobal = region.isGlobal
            walkTree(root: info.root, name: "table \(name)") { leaf, index in
                count += 1
                let owner = leaf.leafOwner(index)
                if isGlobal && !owner.isEmpty { return "a record in the global partition has an owner" }
                if !isGlobal && owner.isEmpty { return "a record in a regional partition has no owner" }
                if !owner.isEmpty { owned += 1 }
                return nil
            }
            ownedRecords += owned
            report.tables[name] = Int(clamping: count)
            if count != info.count {
                problem(nil, "table \(name) holds \(count) records, its catalog entry says \(info.count)")
            }
        }
        // The owner index: one entry per owned record, each naming a record with that owner.
        var indexEntries = 0
        var entries: [[UInt8]] = []
        walkTree(root: header.ownerIndexRoot, name: "owner index") { leaf, index in
            indexEntries += 1
            entries.append(leaf.leafKey(index))
            return nil
        }
        if indexEntries != ownedRecords {
            problem(nil, "the owner index has \(indexEntries) entries for \(ownedRecords) owned records")
        }
        let roots = Dictionary(uniqueKeysWithValues: catalog.map { ($0.1.id, $0.1.root) })
        for entry in entries {
            guard let parts = OwnerIndexKey.split(entry), let root = roots[parts.tableID] else {
                problem(nil, "an owner index entry names no table")
                continue
            }
            guard let found = try? BTree.find(parts.key, root: root, in: context), found.found,
                found.leaf.leafOwner(found.index) == parts.owner
            else {
                problem(nil, "an owner index entry points to a record that is missing or has another owner")
                continue
            }
        }
        checkFreelist()
        var unreached = 0
        for (page, count) in seen.enumerated() where count != 1 {
            if count == 0 && treeDamaged {
                unreached += 1
            } else {
                let message =
                    count == 0 ? "page is neither reachable nor free (leaked)" : "page is reachable \(count) times"
                problem(UInt32(page), message)
            }
        }
        if unreached > 0 { problem(nil, "\(unreached) pages were not reached because damaged pages hide them") }
        report.reachablePages = seen.count - report.freePages
    }

    /// Reads every page of the file that the log does not supersede, and every committed log
    /// frame, and verifies each checksum and structure.
    private mutating func physicalPass() throws {
        let pager = context.pager
        let pageSize = context.header.pageSize
        let fileSize = try pager.mainFile.size()
        let filePages = Int(min(fileSize / UInt64(pageSize), UInt64(context.header.pageCount)))
        let limit = context.snapshot.frameLimit
        let current = context.snapshot.generation == pager.wal.generation
        for n in 0..<filePages {
            let number = PageNumber(UInt32(n))
            if current, pager.stateLockedLatestFrame(of: number, below: limit) != nil { continue }
            do {
                let page = Page(bytes: try pager.mainFile.read(at: UInt64(n) * UInt64(pageSize), count: pageSize))
                try Pager.verify(page, number: number, file: mainPath)
            } catch let error as PartitionDBError {
                record(error, page: UInt32(n))
            }
        }
        if current {
            for frame in 0..<limit {
                report.logFrames += 1
                do {
                    let header = try pager.wal.readFrameHeader(frame)
                    let page = try pager.wal.readFrame(frame)
                    // A checkpoint may restart the log under this pass; its frames are then in
                    // the partition file, and what was read may be newer frames: stop here.
                    if pager.currentGeneration != context.snapshot.generation { break }
                    try Pager.verify(page, number: header.page, file: logPath)
                } catch let error as PartitionDBError {
                    record(error, page: nil, file: logPath)
                }
            }
        }
    }

    /// A copy of a damaged log next to the partition file means commits were dropped at some
    /// open: a problem until an operator removes the file (spec/file-format.md#damage-in-the-log).
    mutating func reportPreservedLogs(fileSystem: any FileSystem) {
        let header = context.header
        let found: [(path: String, damage: LogDamage?)]
        do {
            found = try PartitionFile.preservedLogs(
                path: mainPath, pageSize: header.pageSize, fileID: header.fileID, fileSystem: fileSystem)
        } catch {
            problem(nil, "could not look for preserved copies of a damaged log: \(error)")
            return
        }
        for (path, damage) in found {
            let message =
                damage.map { RecoveryWarning(preservedLog: path, damage: $0).description }
                ?? "a preserved copy of a damaged log of this partition: recovery dropped commits after damage in "
                + "the log. Restore the partition from a backup that holds them, then remove the file"
            problem(nil, message, file: path)
        }
    }

    private mutating func record(_ error: PartitionDBError, page: UInt32?, file: String? = nil) {
        treeDamaged = true
        if case .corruptPage(let f, let p, let reason) = error {
            problem(p, reason, file: f)
        } else {
            problem(page, error.description, file: file)
        }
    }

    private mutating func mark(_ page: UInt32) {
        guard Int(page) < seen.count else {
            problem(page, "page number beyond the page count")
            return
        }
        if seen[Int(page)] < 255 { seen[Int(page)] += 1 }
    }

    /// Walks a tree depth-first, checking key order within and across pages against the bounds
    /// the branches set, and calls `visit` for each leaf record (it returns a problem or nil).
    private mutating func walkTree(root: PageNumber, name: String, visit: (Page, Int) -> String?) {
        var stack: [(PageNumber, [UInt8]?, [UInt8]?, Int)] = [(root, nil, nil, 0)]
        var leafDepth: Int? = nil
        while let (number, lower, upper, depth) = stack.popLast() {
            // A page reached before (from this tree or another) is counted again, so the final
            // tally reports it, but not descended into again: a link back to an ancestor (a cycle)
            // or to a shared subtree would otherwise make the walk loop or grow without bound.
            let reachedBefore = Int(number.rawValue) < seen.count && seen[Int(number.rawValue)] > 0
            mark(number.rawValue)
            if reachedBefore {
                problem(number.rawValue, "\(name): a link leads to a page reached before (a cycle or a shared page)")
                continue
            }
            if depth > 64 {
                problem(number.rawValue, "\(name) is deeper than 64 levels")
                continue
            }
            let page: Page
            do {
                page = try context.node(number)
            } catch let error as PartitionDBError {
                record(error, page: number.rawValue)
                continue
            } catch {
                problem(number.rawValue, "\(error)")
                continue
            }
            var previous: [UInt8]? = nil
            for i in 0..<page.cellCount {
                let key = page.isLeaf ? page.leafKey(i) : page.branchKey(i)
                if let previous, compareBytes(previous, key) >= 0 {
                    problem(number.rawValue, "\(name): keys out of order")
                }
                if let lower, compareBytes(key, lower) < 0 {
                    problem(number.rawValue, "\(name): key below its separator")
                }
                if let upper, compareBytes(key, upper) >= 0 {
                    problem(number.rawValue, "\(name): key above its separator")
                }
                previous = key
            }
            if page.isLeaf {
                if let leafDepth, leafDepth != depth { problem(number.rawValue, "\(name): leaves at different depths") }
                leafDepth = depth
                for i in 0..<page.cellCount {
                    if let message = visit(page, i) { problem(number.rawValue, "\(name): \(message)") }
                    if case .overflow(let first, let length) = page.leafValue(i) { walkOverflow(first, length) }
                }
            } else {
                if number != root && page.cellCount == 0 {
                    problem(number.rawValue, "\(name): inner branch without keys")
                }
                for i in stride(from: page.cellCount, through: 0, by: -1) {
                    let low = i == 0 ? lower : page.branchKey(i - 1)
                    let high = i == page.cellCount ? upper : page.branchKey(i)
                    stack.append((page.branchChild(i), low, high, depth + 1))
                }
            }
        }
    }

    private mutating func walkOverflow(_ first: PageNumber, _ length: Int) {
        var pages: [PageNumber] = []
        do {
            try PageContext.walkOverflow(first: first, length: length, context: context) { number, _ in
                pages.append(number)
            }
        } catch let error as PartitionDBError {
            record(error, page: first.rawValue)
        } catch {}
        for page in pages { mark(page.rawValue) }
    }

    private mutating func checkFreelist() {
        var trunk = context.header.freelistHead
        var free = 0
        var trunks: Set<UInt32> = []
        while trunk != .none {
            // A trunk seen before is a loop: stop at once rather than count its entries again.
            guard trunks.insert(trunk.rawValue).inserted, trunks.count <= seen.count else {
                problem(trunk.rawValue, "the free list loops")
                return
            }
            mark(trunk.rawValue)
            free += 1
            do {
                let page = try context.page(trunk)
                guard page.kind == PageKind.freelistTrunk.rawValue else {
                    problem(trunk.rawValue, "free list link to a page that is not a trunk")
                    return
                }
                let count = Int(page.u32(FreelistLayout.countOffset))
                for i in 0..<count {
                    mark(page.u32(FreelistLayout.entriesOffset + 4 * i))
                    free += 1
                }
                trunk = PageNumber(page.u32(FreelistLayout.nextOffset))
            } catch let error as PartitionDBError {
                record(error, page: trunk.rawValue)
                return
            } catch {
                return
            }
        }
        report.freePages = free
        if free != Int(context.header.freeCount) {
            problem(nil, "the free list holds \(free) pages, the header says \(context.header.freeCount)")
        }
    }
}
