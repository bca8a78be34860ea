/// Where a backup may be written: never over a file of the database, a special file or a
/// symlink, and over an existing regular file only when the caller asks. The rules:
/// spec/file-format.md#backup-file
enum TargetFile {
    /// Throws unless a new file may take the name `path`: in `databaseDirectory` only a name
    /// that is not the database's (no partition file, log, `PARTITIONDB`, `LOCK` or their
    /// temporary files) and that does not exist; elsewhere no symlink, directory, device, FIFO or
    /// socket, and an existing regular file only with `replacing`.
    static func check(_ path: String, databaseDirectory: String, replacing: Bool, fileSystem: any FileSystem) throws {
        if let parent = fileSystem.resolve(PartitionFile.directoryOf(path)),
            let database = fileSystem.resolve(databaseDirectory), parent == database
        {
            let name = PartitionFile.baseName(path)
            if Database.isDatabaseName(name) {
                throw PartitionDBError.unsafeFile(
                    path: path, reason: "is a name of the database's own files; write the backup to another name")
            }
            if fileSystem.status(path) != nil {
                throw PartitionDBError.unsafeFile(
                    path: path,
                    reason:
                        "exists in the database directory, where no file is replaced; write the backup to another directory"
                )
            }
        }
        guard let status = fileSystem.status(path) else { return }
        switch status.kind {
        case .regular:
            guard replacing else { throw PartitionDBError.targetExists(path: path) }
        case .symbolicLink:
            throw PartitionDBError.unsafeFile(path: path, reason: "is a symlink; name the file itself")
        case .directory:
            throw PartitionDBError.unsafeFile(path: path, reason: "is a directory; name a file in it")
        case .special:
            throw PartitionDBError.unsafeFile(path: path, reason: "is a device, FIFO or socket, not a regular file")
        }
    }

    /// Writes a file as `path + ".creating"`, created exclusively (a leftover of that name is
    /// unlinked first, which never writes through it), and moves it to `path` once `body` has
    /// written and synced it. On any failure the temporary file is removed and `path` is untouched.
    static func write<T>(
        _ path: String, fileSystem: any FileSystem, _ body: (any FileHandle) throws -> T
    ) throws -> T {
        let temporary = path + ".creating"
        try fileSystem.remove(temporary)
        let file = try fileSystem.createNew(temporary)
        do {
            let result: T
            do {
                defer { file.close() }
                result = try body(file)
                try file.sync()
            }
            try fileSystem.rename(temporary, to: path)
            try fileSystem.syncDirectory(PartitionFile.directoryOf(path))
            return result
        } catch {
            try? fileSystem.remove(temporary)
            throw error
        }
    }
}
