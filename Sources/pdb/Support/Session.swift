import PartitionDB
import Residency

/// Opening and closing a database directory around one command.
enum Session {
    /// Opens the database in `path` as a host of the region stored in it, installs the residency
    /// directory as the engine's resolver, runs `body`, and closes the database (which
    /// checkpoints) on every path. When `body` fails, its error wins over one from `close`.
    static func withDatabase<T>(
        _ path: String, _ body: (Database, ResidencyDirectory) throws -> T
    ) throws -> T {
        try withBareDatabase(path) { database in
            let directory = try ResidencyDirectory(database: database)
            return try body(database, directory)
        }
    }

    /// Like `withDatabase`, without opening the global partition: for `check`, which must still
    /// run when the global partition is damaged.
    static func withBareDatabase<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
        let region = try Database.storedRegion(at: path)
        let database = try Database.open(at: path, region: region)
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
