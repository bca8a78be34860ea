import Foundation
import PartitionDB

/// Errors of the residency layer: the directory, cluster files, the wire protocol and hosts.
public enum ResidencyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The subject has a home already, and it is not the one asked for.
    case alreadyRegistered(subject: String, home: String)
    /// A stored directory entry that does not name a valid region.
    case badEntry(subject: String)
    case engine(PartitionDBError)
    /// A certificate, key or CA file that cannot be read, written or used.
    case certificate(path: String, reason: String)
    /// A host's configuration file with a missing, unknown or bad key (`key` is its JSON path).
    case configuration(file: String, key: String, reason: String)
    /// Bytes from a peer that break spec/replication.md; the connection is closed and nothing of
    /// the message is applied.
    case malformedMessage(reason: String)
    /// A peer that is not allowed what it asks: an identity, a role, a region or an epoch.
    case refused(code: String, message: String)
    /// A host that cannot be reached or that went away.
    case connection(address: String, reason: String)
    /// A commit in `quorum` mode that is durable on the primary but was not acknowledged by
    /// enough replicas in time (spec/replication.md#commit-modes): it may survive a promotion
    /// or be lost in one.
    case commitOutcomeUnknown(
        partition: String, lsn: UInt64, acknowledged: Int, needed: Int, waitedMilliseconds: UInt64)
    /// A write this replica host forwarded, committed on the primary, that the local copy did
    /// not reach in time (spec/replication.md#write-forwarding).
    case forwardedNotApplied(partition: String, primary: String, lsn: UInt64, waitedSeconds: UInt64)
    /// A retained shipped-log segment (spec/replication.md#retained-segments) that cannot be
    /// read or written; `errno` is the system's error number, 0 for damaged contents.
    case retainedLog(path: String, operation: String, errno: Int32)
    /// A host's term file (spec/replication.md#term-files) that cannot be read or written.
    case termFile(path: String, reason: String)
    /// A subject-rights log (`erasures.log`, `backups.log`: spec/cli.md#erase) that cannot be
    /// read or written.
    case rightsLog(path: String, reason: String)

    public var description: String {
        switch self {
        case .alreadyRegistered(let subject, let home):
            return
                "subject \(Quoting.name(subject)) is already registered with home region \(Quoting.name(home)); one subject has one home"
        case .badEntry(let subject):
            return
                "the directory entry of subject \(Quoting.name(subject)) is damaged; run `pdb check` on the global partition"
        case .engine(let error):
            return error.description
        case .certificate(let path, let reason):
            return "\(Quoting.path(path)) \(reason)"
        case .configuration(let file, let key, let reason):
            return "\(Quoting.path(file)): \(key) \(reason)"
        case .malformedMessage(let reason):
            return "malformed message from the peer: \(reason); the connection was closed and nothing of it applied"
        case .refused(_, let message):
            return message
        case .connection(let address, let reason):
            return "cannot talk to \(Quoting.name(address)): \(reason)"
        case .commitOutcomeUnknown(let partition, let lsn, let acknowledged, let needed, let waited):
            return
                "commit LSN \(lsn) of partition \(Quoting.name(partition)) is durable on its primary, but \(acknowledged) of the \(needed) replica acknowledgements it waits for came within \(waited) ms; its outcome is unknown (a promotion may keep or drop it): check `pdb replication status`, then read it back before writing it again"
        case .forwardedNotApplied(let partition, let primary, let lsn, let waited):
            return
                "the write was committed on \(Quoting.name(primary)), the primary of partition \(Quoting.name(partition)), at LSN \(lsn), but this host's copy did not reach it within \(waited) s; read it on the primary, or here once `pdb replication status` shows the copy streaming"
        case .retainedLog(let path, let operation, let errno):
            let cause = errno == 0 ? "its contents are damaged" : String(cString: strerror(errno))
            return
                "\(Quoting.path(path)): \(operation) failed (\(cause)); replicas that need it catch up by snapshot"
        case .termFile(let path, let reason):
            return "term file \(Quoting.path(path)) \(reason)"
        case .rightsLog(let path, let reason):
            return "\(Quoting.path(path)) \(reason)"
        }
    }

    public var code: String {
        switch self {
        case .alreadyRegistered: return "already_registered"
        case .badEntry: return "bad_directory_entry"
        case .engine(let error): return error.code
        case .certificate: return "certificate"
        case .configuration: return "configuration"
        case .malformedMessage: return "malformed_message"
        case .refused(let code, _): return code
        case .connection: return "connection"
        case .commitOutcomeUnknown: return "commit_outcome_unknown"
        case .forwardedNotApplied: return "forwarded_not_applied"
        case .retainedLog: return "retained_log"
        case .termFile: return "term_file"
        case .rightsLog: return "rights_log"
        }
    }
}
