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

/// User records in a partition of this host's database (the region's primary, or a single
/// host): table `auth.users`, key the subject id, owner the subject, durable commits. Reads and
/// writes run on NIO's shared blocking pool, off the cooperative threads.
public final class PartitionUserStore: UserStore {
    public static let table = "auth.users"
    private let database: Database
    public let partitionName: String

    /// Records in `partition` of `database`, which must exist and be of the database's region.
    public init(database: Database, partition: String = "users") throws {
        let opened = try wrapping { try database.partition(partition) }
        guard opened.region == database.region, !opened.region.isGlobal else {
            throw AuthError.engine(
                .invalidName(kind: "partition", name: partition, reason: "user records need a partition of the region"))
        }
        self.database = database
        partitionName = partition
    }

    public func user(_ subject: SubjectID) async throws -> UserRecord? {
        try await blocking { partition in
            try partition.read { tx in
                guard try tx.hasTable(Self.table), let bytes = try tx.get(Self.table, Self.key(subject)) else {
                    return nil
                }
                return try UserRecord.decode(bytes, subject: subject)
            }
        }
    }

    public func create(_ record: UserRecord, for subject: SubjectID) async throws -> Bool {
        // Reads first, so that a sign-up of an existing login commits nothing, not even an
        // empty transaction; the write checks again.
        if try await user(subject) != nil { return false }
        return try await blocking { partition in
            try partition.write(durability: .durable) { tx in
                _ = try tx.createTable(Self.table)
                if try tx.get(Self.table, Self.key(subject)) != nil { return false }
                try tx.put(Self.table, Self.key(subject), record.encoded(), owner: subject)
                return true
            }
        }
    }

    public func replace(_ subject: SubjectID, expected: UserRecord, with new: UserRecord) async throws -> Bool {
        guard try await user(subject) == expected else { return false }
        return try await blocking { partition in
            try partition.write(durability: .durable) { tx in
                guard try tx.hasTable(Self.table), let bytes = try tx.get(Self.table, Self.key(subject)),
                    try UserRecord.decode(bytes, subject: subject) == expected
                else { return false }
                try tx.put(Self.table, Self.key(subject), new.encoded(), owner: subject)
                return true
            }
        }
    }

    private static func key(_ subject: SubjectID) -> [UInt8] { Array(subject.rawValue.utf8) }

    private func blocking<T: Sendable>(_ body: @escaping @Sendable (Partition) throws -> T) async throws -> T {
        try await onBlockingPool(database, partitionName, body)
    }
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
    do {
        return try body()
    } catch let error as PartitionDBError {
        throw AuthError.engine(error)
    } catch let error as ResidencyError {
        throw AuthError.residency(error)
    }
}
