import PartitionDB
import Residency

/// Opening and closing a database directory around one command.
enum Session {
    /// Opens the database in `path` as a host of the region stored in it, installs the residency
    /// directory as the engine's resolver, runs `body`, and closes the database (which
    /// checkpoints) on every path. When `body` fails, its error wins over one from `close`.
    /// `readOnly` (the commands that only read) opens it with `Options.readOnly`: all files
    /// `O_RDONLY`, nothing created or checkpointed, the lock shared with other readers.
    static func withDatabase<T>(
        _ path: String, readOnly: Bool = false, _ body: (Database, ResidencyDirectory) throws -> T
    ) throws -> T {
        try withBareDatabase(path, readOnly: readOnly) { database in
            let directory = try ResidencyDirectory(database: database)
            return try body(database, directory)
        }
    }

    /// Like `withDatabase`, without opening the global partition: for `check`, which must still
    /// run when the global partition is damaged.
    static func withBareDatabase<T>(_ path: String, readOnly: Bool = false, _ body: (Database) throws -> T) throws
        -> T
    {
        var options = Options()
        options.readOnly = readOnly
        // The region is read from the identity file once the lock is held, so nothing of the
        // directory is opened before the lock (and the holder's pid in it).
        let database = try Database.openAsCreated(at: path, options: options)
        let result: T
        do {
            result = try body(database)
        } catch {
            try? database.close()
            throw error
        }
        try database.close()
        return result
    }
}
