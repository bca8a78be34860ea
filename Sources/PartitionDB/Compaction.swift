/// What `Partition.compact()` did.
public struct CompactionSummary: Sendable, Equatable {
    public var pagesBefore: Int
    public var pagesAfter: Int
    public var bytesBefore: UInt64
    public var bytesAfter: UInt64
}

extension Partition {
    /// Rewrites the partition into a new file holding only live pages, packed in key order, and
    /// swaps it in (SQLite's VACUUM). Writers wait; readers that started before keep reading the
    /// old file to their end. The LSN stays; the file gets a new file id and an empty log, so
    /// copies made before must be made again from a backup.
    public func compact() throws -> CompactionSummary {
        try exclusively {
            let old = self.pager
            // Every commit must be in the partition file before its log can go away.
            try old.checkpoint()
            guard old.isFullyCheckpointed else {
                throw PartitionDBError.busy(
                    partition: name, reason: "readers hold log frames that compaction would drop")
            }
            let snapshot = old.latestSnapshot
            let header = snapshot.header
            let bytesBefore = try old.mainFile.size()
            let directory = PartitionFile.directoryOf(path)
            let temporary = path + ".compacting"
            let temporaryLog = PartitionFile.logPath(temporary)
            // Leftovers of a crashed compaction are removed (unlinking never writes through a name).
            try fileSystem.remove(temporary)
            try fileSystem.remove(temporaryLog)
            do {
                // A new file id: the layout changes, so change sets from before must never apply to it.
                try PartitionFile.create(
                    at: temporary, name: header.name, region: header.region,
                    pageSize: header.pageSize, fileSystem: fileSystem)
                let copyPager = try PartitionFile.open(
                    at: temporary, expectedName: header.name, expectedRegion: header.region, options: options,
                    fileSystem: fileSystem)
                let copy = Partition(
                    name: name, region: region, path: temporary, fileSystem: fileSystem, pager: copyPager,
                    options: options, resolver: { nil })
                do {
                    try copyRecords(
                        from: PageContext(pager: old, snapshot: snapshot), into: copy, lastLSN: header.lastLSN,
                        epoch: header.epoch,
                        epochHistory: header.epochHistory)
                } catch {
                    try? copy.close()
                    throw error
                }
                try copy.close()
                try fileSystem.remove(temporaryLog)
            } catch {
                // Nothing of the partition has changed yet: the half-made copy goes.
                try? fileSystem.remove(temporaryLog)
                try? fileSystem.remove(temporary)
                throw error
            }

            // The old log goes (durably) before the new file takes the name, so no crash can pair
            // them. Its commits are all in the old file, so losing it loses nothing.
            try fileSystem.remove(PartitionFile.logPath(path))
            try fileSystem.syncDirectory(directory)
            try fileSystem.rename(temporary, to: path)
            let fresh: Pager
            do {
                try fileSystem.syncDirectory(directory)
                fresh = try PartitionFile.open(
                    at: path, expectedName: name, expectedRegion: region, options: options, fileSystem: fileSystem)
            } catch let error as PartitionDBError {
                // The old file is gone from the directory: this handle must not write to it.
                failure = error
                throw error
            }
            self.pager = fresh
            let after = fresh.latestSnapshot.header
            return CompactionSummary(
                pagesBefore: Int(header.pageCount), pagesAfter: Int(after.pageCount), bytesBefore: bytesBefore,
                bytesAfter: try fresh.mainFile.size())
        }
    }

    /// Copies every table in key order, in transactions of bounded size, and ends at `lastLSN`.
    private func copyRecords(
        from source: PageContext, into copy: Partition, lastLSN: LSN, epoch: UInt64, epochHistory: [EpochStart]
    ) throws {
        let reader = ReadTransaction(context: source, partition: self)
        defer { reader.isFinished = true }
        let batchLimit = 64 << 20
        for table in try reader.tables() {
            let info = try reader.requireTable(table)
            var cursor = TreeCursor(root: info.root)
            try cursor.first(in: source)
            try copy.write(durability: .noSync) { tx in _ = try tx.createTable(table) }
            while cursor.isValid {
                try copy.write(durability: .noSync) { tx in
                    var bytes = 0
                    while cursor.isValid && bytes < batchLimit {
                        let leaf = cursor.leaf
                        let index = cursor.index
                        let value = try reader.value(of: leaf, index)
                        try tx.putUnchecked(table, leaf.leafKey(index), value, owner: leaf.leafOwner(index))
                        bytes += value.count + 64
                        try cursor.next(in: source)
                    }
                }
            }
        }
        // The copy continues the original's history: its last commit carries the original's LSN.
        try copy.write(durability: .durable) { tx in
            tx.writeContext.header.lastLSN = lastLSN
            tx.writeContext.header.epoch = epoch
            tx.writeContext.header.epochHistory = epochHistory
        }
    }
}

extension Pager {
    var isFullyCheckpointed: Bool { stateLockedIsFullyCheckpointed() }
}
