import NIOPosix
import PartitionDB
import Residency

/// Where user records live: a partition of the home region. The flows only create a record
/// that is not there and replace one that has not changed since it was read (a compare and
/// set), so two hosts or two requests never overwrite each other's changes.
public protocol UserStore: Sendable {
    func user(_ subject: SubjectID) async throws -> UserRecord?
    /// Stores `record` unless `subject` has one; true when this call stored it.
    func create(_ record: UserRecord, for subject: SubjectID) async throws -> Bool
    /// Replaces `subject`'s record with `new` if it still is `expected`; true when replaced.
    func replace(_ subject: SubjectID, expected: UserRecord, with new: UserRecord) async throws -> Bool
}

/// User records in a partition of this host's database: table `auth.users`, key the subject
/// id, owner the subject, durable commits. Reads come from this host's copy; writes are
/// conditional (`ConditionalWrite`) and go where `commits` sends them: this database
/// (`LocalCommits`, the default), or through a `ClusterHost`, which runs them on the region's
/// primary from any host of the region. Reads run on NIO's shared blocking pool, off the
/// cooperative threads.
public final class PartitionUserStore: UserStore {
    public static let table = "auth.users"
    private let database: Database
    private let commits: any ConditionalCommitting
    public let partitionName: String

    /// Records in `partition` of `database`, which must exist and be of the database's region;
    /// written through `commits` (default: in `database` itself).
    public init(database: Database, partition: String = "users", commits: (any ConditionalCommitting)? = nil) throws {
        let opened = try wrapping { try database.partition(partition) }
        guard opened.region == database.region, !opened.region.isGlobal else {
            throw AuthError.engine(
                .invalidName(kind: "partition", name: partition, reason: "user records need a partition of the region"))
        }
        self.database = database
        self.commits = commits ?? LocalCommits(database: database)
        partitionName = partition
    }

    public func user(_ subject: SubjectID) async throws -> UserRecord? {
        try await stored(subject).map { try UserRecord.decode($0, subject: subject) }
    }

    public func create(_ record: UserRecord, for subject: SubjectID) async throws -> Bool {
        // Reads first, so that a sign-up of an existing login commits nothing, not even an
        // empty transaction; the write checks again where it commits.
        if try await stored(subject) != nil { return false }
        return try await commit([
            .expect(table: Self.table, key: Self.key(subject), value: nil),
            .put(table: Self.table, key: Self.key(subject), value: record.encoded(), owner: subject),
        ])
    }

    public func replace(_ subject: SubjectID, expected: UserRecord, with new: UserRecord) async throws -> Bool {
        guard let bytes = try await stored(subject), try UserRecord.decode(bytes, subject: subject) == expected else {
            return false
        }
        return try await commit([
            .expect(table: Self.table, key: Self.key(subject), value: bytes),
            .put(table: Self.table, key: Self.key(subject), value: new.encoded(), owner: subject),
        ])
    }

    /// The stored bytes of `subject`'s record in this host's copy.
    private func stored(_ subject: SubjectID) async throws -> [UInt8]? {
        try await onBlockingPool(database, partitionName) { partition in
            try partition.read { tx in
                guard try tx.hasTable(Self.table) else { return nil }
                return try tx.get(Self.table, Self.key(subject))
            }
        }
    }

    private func commit(_ steps: [ConditionalWrite.Step]) async throws -> Bool {
        let (commits, partition) = (self.commits, partitionName)
        return try await wrappingAsync { try await commits.commit(ConditionalWrite(steps), to: partition) }
    }

    private static func key(_ subject: SubjectID) -> [UInt8] { Array(subject.rawValue.utf8) }
}

/// `body` with the current handle of `database`'s partition `name` (taken for each use: a
/// replica's snapshot installs a new file), on NIO's shared blocking pool, off the cooperative
/// threads: a durable commit waits for an fsync.
func onBlockingPool<T: Sendable>(
    _ database: Database, _ name: String, _ body: @escaping @Sendable (Partition) throws -> T
) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive {
        try wrapping { try body(try database.partition(name)) }
    }
}

/// `body`, with the errors of the layers below wrapped in `AuthError`.
func wrapping<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw wrapped(error) }
}

/// `body`, with the errors of the layers below wrapped in `AuthError`.
func wrappingAsync<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch { throw wrapped(error) }
}

/// An engine or residency error as `AuthError`; any other error as it is.
private func wrapped(_ error: any Error) -> any Error {
    switch error {
    case let error as PartitionDBError: return AuthError.engine(error)
    case let error as ResidencyError: return AuthError.residency(error)
    default: return error
    }
}
