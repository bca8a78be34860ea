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
}
