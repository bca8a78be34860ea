import PartitionDB

/// Who is at the other end of a connection, as its verified certificate says: a host of a region,
/// or an operator (the `pdb` client). Written into certificates as a SAN URI
/// (spec/replication.md#identities): `pdb://region/REGION/host/HOST` or `pdb://operator/NAME`.
/// Nothing a peer sends changes it.
public enum PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    case host(id: String, region: Region)
    case `operator`(name: String)

    /// The longest host id or operator name: a file name and a log field, kept short.
    public static let maxNameLength = 63

    /// The SAN URI that names this identity in a certificate.
    public var uri: String {
        switch self {
        case .host(let id, let region): return "pdb://region/\(region.name)/host/\(id)"
        case .operator(let name): return "pdb://operator/\(name)"
        }
    }

    public var description: String {
        switch self {
        case .host(let id, let region): return "host \(id) of region \(region.name)"
        case .operator(let name): return "operator \(name)"
        }
    }

    /// Parses the URI form; nil for anything else (other URIs a certificate may carry).
    public init?(uri: String) {
        let prefix = "pdb://"
        guard uri.hasPrefix(prefix) else { return nil }
        let parts = uri.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 4, parts[0] == "region", parts[2] == "host", PeerIdentity.isValidName(parts[3]),
            let region = try? Region(parts[1]), !region.isGlobal
        {
            self = .host(id: parts[3], region: region)
        } else if parts.count == 2, parts[0] == "operator", PeerIdentity.isValidName(parts[1]) {
            self = .operator(name: parts[1])
        } else {
            return nil
        }
    }

    /// A host id or operator name: 1 to 63 of `a-z 0-9 - _ .`, starting with a letter or digit.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= maxNameLength else { return false }
        func allowed(_ byte: UInt8) -> Bool {
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x5F
                || byte == 0x2E
        }
        return name.utf8.allSatisfy(allowed) && first != 0x2D && first != 0x5F && first != 0x2E
    }
}
