import PartitionDB

/// The residency directory: subject -> home region, kept in the table `homes` of the database's
/// global partition. It holds no personal data: subjects are pseudonymous ids.
///
/// This is the directory's local part. On a host of a cluster, assign through the host
/// (`ClusterHost`, a `HomeAssigning`): it forwards to the directory's primary when it is not
/// that; readers use `home(of:)` locally.
public final class ResidencyDirectory: HomeRegionResolver, HomeAssigning, @unchecked Sendable {
    public static let table = Partition.directoryTable
    /// Weak: the database holds this directory as its resolver.
    private weak var database: Database?

    /// Opens the directory in `database`'s global partition and installs it as the database's
    /// resolver, so every put in a regional partition is checked against it.
    public init(database: Database) throws {
        self.database = database
        _ = try wrap { try database.globalPartition() }
        database.setResolver(self)
    }

    /// The global partition's current handle, taken for each use: a replica's snapshot of
    /// `global` installs a new file and closes the handle taken before it.
    private var partition: Partition {
        get throws {
            guard let database else {
                throw ResidencyError.engine(.closed(partition: Database.globalPartitionName))
            }
            return try database.globalPartition()
        }
    }

    /// The subject's home region, or nil.
    public func home(of subject: SubjectID) throws -> Region? {
        try wrap {
            try partition.read { tx in
                guard try tx.hasTable(Self.table), let bytes = try tx.get(Self.table, Array(subject.rawValue.utf8))
                else {
                    return nil
                }
                guard let region = try? Region(String(decoding: bytes, as: UTF8.self)) else {
                    throw ResidencyError.badEntry(subject: subject.rawValue)
                }
                return region
            }
        }
    }

    public func homeRegion(of subject: SubjectID) throws -> Region? { try home(of: subject) }

    /// Assigns `subject` the home `region` as a conditional create: a subject without a home gets
    /// it; the same home again is a no-op; a different home throws `alreadyRegistered`. Returns
    /// whether this call created the entry. The check and the write are one transaction, so two
    /// concurrent assignments have one winner; an existing entry is answered without a commit.
    @discardableResult
    public func assignHome(_ subject: SubjectID, to region: Region) throws -> Bool {
        guard !region.isGlobal else {
            throw ResidencyError.engine(
                .invalidName(kind: "region", name: region.name, reason: "a subject's home cannot be global"))
        }
        // A read first, so that an existing entry costs no commit: the same home again writes
        // nothing at all (not even an empty commit). The write checks again.
        if let existing = try home(of: subject) {
            if existing == region { return false }
            throw ResidencyError.alreadyRegistered(subject: subject.rawValue, home: existing.name)
        }
        return try wrap {
            try partition.writeReserved { tx in
                let key = Array(subject.rawValue.utf8)
                if try tx.hasTable(Self.table), let existing = try tx.get(Self.table, key) {
                    let home = String(decoding: existing, as: UTF8.self)
                    if home == region.name { return false }
                    throw ResidencyError.alreadyRegistered(subject: subject.rawValue, home: home)
                }
                try tx.put(Self.table, key, Array(region.name.utf8))
                return true
            }
        }
    }

    /// Every subject and home, in subject order.
    public func entries() throws -> [(subject: SubjectID, home: Region)] {
        try wrap {
            try partition.read { tx in
                guard try tx.hasTable(Self.table) else { return [] }
                var result: [(SubjectID, Region)] = []
                try tx.scan(Self.table) { record in
                    let subject = String(decoding: record.key, as: UTF8.self)
                    guard let region = try? Region(String(decoding: record.value, as: UTF8.self)),
                        let id = try? SubjectID(subject)
                    else { throw ResidencyError.badEntry(subject: subject) }
                    result.append((id, region))
                    return true
                }
                return result
            }
        }
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PartitionDBError {
            throw ResidencyError.engine(error)
        }
    }
}

/// Where home assignments go: a conditional create, true when this call made the entry, the
/// same home again a no-op (false), another home `alreadyRegistered`. `ResidencyDirectory`
/// assigns in its own database; `ClusterHost` assigns on the directory's primary, forwarding
/// from any other host, so there is one place that decides (spec/replication.md#write-forwarding).
public protocol HomeAssigning: Sendable {
    func assignHome(_ subject: SubjectID, to region: Region) async throws -> Bool
}

extension ResidencyDirectory {
    /// The entries of the directory in `global` that do not decode (subject id and home region),
    /// for `pdb check`; each names the subject as stored, quoted, and what is wrong.
    public static func verify(_ global: Partition) throws -> [String] {
        try global.read { tx in
            guard try tx.hasTable(table) else { return [] }
            var problems: [String] = []
            try tx.scan(table) { record in
                let subject = String(validating: record.key, as: UTF8.self)
                let home = String(validating: record.value, as: UTF8.self)
                let shown =
                    subject.map { String(reflecting: String($0.prefix(64))) }
                    ?? "(\(record.key.count) bytes, not UTF-8)"
                if subject.flatMap({ try? SubjectID($0) }) == nil {
                    problems.append("directory entry \(shown): the subject id is not valid")
                } else if let home, let region = try? Region(home), !region.isGlobal {
                    // A valid entry.
                } else {
                    problems.append("directory entry \(shown): the home region is not a valid region")
                }
                return true
            }
            return problems
        }
    }
}
