import PartitionDB

/// What a verified access token opens on this host (spec/auth.md#verification): partitions of
/// the subject's home region, and only on a host of that region. Everything that serves a
/// subject's data goes through one.
public struct SubjectContext: Sendable {
    public let subject: SubjectID
    public let region: Region
    private let database: Database

    /// The context of `access` on `database`'s host; a host of another region gets
    /// `misdirected` naming the subject's home (HTTP's 421), and opens nothing.
    public init(_ access: VerifiedAccess, database: Database) throws {
        guard access.region == database.region else {
            throw AuthError.misdirected(home: access.region.name, here: database.region.name)
        }
        subject = access.subject
        region = access.region
        self.database = database
    }

    /// A partition of the home region on this host; never `global` or another region's.
    public func partition(_ name: String) throws -> Partition {
        guard name != Database.globalPartitionName else {
            throw AuthError.misdirected(home: region.name, here: Database.globalPartitionName)
        }
        let partition = try wrapping { try database.partition(name) }
        guard partition.region == region else {
            throw AuthError.misdirected(home: region.name, here: partition.region.name)
        }
        return partition
    }
}
