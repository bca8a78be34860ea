import PartitionDB

/// Errors of the residency layer.
public enum ResidencyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The subject has a home already, and it is not the one asked for.
    case alreadyRegistered(subject: String, home: String)
    /// A stored directory entry that does not name a valid region.
    case badEntry(subject: String)
    case engine(PartitionDBError)

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
        }
    }

    public var code: String {
        switch self {
        case .alreadyRegistered: return "already_registered"
        case .badEntry: return "bad_directory_entry"
        case .engine(let error): return error.code
        }
    }
}
