import ArgumentParser
import PartitionDB
import Residency

/// The database a command works on: the first positional argument of every command but `init`,
/// a database directory. Declared once here and opened only through it, so every command parses
/// and opens its database the same way.
struct DatabaseArgument: ParsableArguments {
    @Argument(help: "The database directory.")
    var directory: String

    /// Runs `body` on the database with its residency directory installed (see `Session`).
    func withDatabase<T>(readOnly: Bool = false, _ body: (Database, ResidencyDirectory) throws -> T) throws -> T {
        try Session.withDatabase(directory, readOnly: readOnly, body)
    }

    /// Runs `body` on the database without opening the global partition (see `Session`).
    func withBareDatabase<T>(readOnly: Bool = false, _ body: (Database) throws -> T) throws -> T {
        try Session.withBareDatabase(directory, readOnly: readOnly, body)
    }
}
