import ArgumentParser
import PartitionDB
import Residency

/// The database a command works on: the first positional argument of every command but `init`,
/// a database directory. Declared once here and opened only through it, around one command, so
/// every command parses and opens its database the same way.
///
/// `pdb://HOST:PORT` names a running host instead (`pdb serve`): `PDB.main` then sends the command
/// line to that host over mutual TLS with the operator certificate in `--tls DIR` (or `PDB_TLS`),
/// where it runs against the host's open database (`HostSession`) and its output comes back.
struct DatabaseArgument: ParsableArguments {
    @Argument(help: "The database directory, or pdb://HOST:PORT of a running host.")
    var directory: String

    @Option(
        name: .customLong("tls"),
        help:
            "With pdb://: the folder of the operator certificate (ca.pem, certificate.pem, private-key.pem); default $PDB_TLS."
    )
    var tlsDirectory: String?

    static let remoteScheme = "pdb://"

    /// The running host named, nil for a directory.
    var remoteAddress: String? {
        directory.hasPrefix(Self.remoteScheme) ? String(directory.dropFirst(Self.remoteScheme.count)) : nil
    }

    func validate() throws {
        if let remoteAddress, HostAddress(remoteAddress) == nil {
            throw ValidationError("\(Quoting.name(directory)) is not pdb://HOST:PORT")
        }
    }

    /// Opens the database as a host of the region stored in it, installs the residency directory
    /// as the engine's resolver, runs `body`, and closes the database (which checkpoints) on every
    /// path. When `body` fails, its error wins over one from `close`. `readOnly` (the commands
    /// that only read) opens it with `Options.readOnly`: all files `O_RDONLY`, nothing created or
    /// checkpointed, the lock shared with other readers.
    func withDatabase<T>(readOnly: Bool = false, _ body: (Database, ResidencyDirectory) throws -> T) throws -> T {
        try withBareDatabase(readOnly: readOnly) { database in
            try body(database, try ResidencyDirectory(database: database))
        }
    }

    /// Like `withDatabase`, without opening the global partition: for `check` and `info`, which
    /// must still run when the global partition is damaged, and `restore`, which may replace it.
    func withBareDatabase<T>(readOnly: Bool = false, _ body: (Database) throws -> T) throws -> T {
        // On a host, the command runs against the host's database, which stays open.
        if let session = HostSession.current { return try body(session.database) }
        var options = Options()
        options.readOnly = readOnly
        // The region is read from the identity file once the lock is held, so nothing of the
        // directory is opened before the lock (and the holder's pid in it).
        let database = try Database.openAsCreated(at: directory, options: options)
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
