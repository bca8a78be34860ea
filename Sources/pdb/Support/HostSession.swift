import PartitionDB

/// Set while a command runs on a host for an operator (`pdb serve`): the host's open database,
/// which `DatabaseArgument` uses instead of opening a directory, and the host itself for the
/// commands that report on it (`replication status`).
struct HostSession: Sendable {
    let database: Database
    /// The `ClusterHost` (typed as `Sendable` here so that this file needs no networking code).
    let host: any Sendable

    @TaskLocal static var current: HostSession?
}

/// A command that can run on a running host through `pdb://` (spec/cli.md#running-hosts).
protocol HostCommand: PDBCommand {
    var location: DatabaseArgument { get }
    /// The partition the command writes; nil when it only reads. A host refuses the write when
    /// it only replicates that partition.
    var writtenPartition: String? { get }
}

extension Get: HostCommand {
    var location: DatabaseArgument { target.location }
    var writtenPartition: String? { nil }
}

extension Scan: HostCommand {
    var location: DatabaseArgument { target.location }
    var writtenPartition: String? { nil }
}

extension Put: HostCommand {
    var location: DatabaseArgument { target.location }
    var writtenPartition: String? { target.partition }
}

extension Del: HostCommand {
    var location: DatabaseArgument { target.location }
    var writtenPartition: String? { target.partition }
}

extension Apply: HostCommand {
    var writtenPartition: String? { partition }
}

extension Info: HostCommand {
    var writtenPartition: String? { nil }
}

extension Check: HostCommand {
    var writtenPartition: String? { nil }
}

extension Checksum: HostCommand {
    var writtenPartition: String? { nil }
}

extension HomeGet: HostCommand {
    var writtenPartition: String? { nil }
}

extension HomeList: HostCommand {
    var writtenPartition: String? { nil }
}

extension Audit: HostCommand {
    var writtenPartition: String? { nil }
}

extension Export: HostCommand {
    var writtenPartition: String? { nil }
}

extension HomeSet: HostCommand {
    var writtenPartition: String? { Database.globalPartitionName }
}
