import Foundation
import PartitionDB

/// The residency audit of one database (spec/cli.md#audit): every record of every regional
/// partition belongs to a subject whose home in the directory is the partition's region; no
/// partition of another region is here; and the directory holds nothing but subject ids, homes
/// and public keys. Each partition is read in one transaction, so what it reports is a
/// committed state.
public struct ResidencyAudit: Sendable, Equatable {
    public struct PartitionSummary: Sendable, Equatable, Encodable {
        public var partition: String
        public var region: String
        public var lsn: UInt64
        public var records: Int
        /// Distinct owners of those records.
        public var subjects: Int
    }

    public struct Violation: Sendable, Equatable, Encodable {
        /// `foreign_record`, `unknown_home`, `no_owner`, `foreign_partition`, `unexpected_table`,
        /// `bad_directory_entry`, `personal_data_shaped`, `bad_published_key`,
        /// `erased_subject_has_records`.
        public var kind: String
        public var partition: String
        public var table: String?
        /// The record's key as text, or base64 when it is not UTF-8 (`keyBase64`).
        public var key: String?
        public var keyBase64: String?
        public var owner: String?
        public var message: String

        enum CodingKeys: String, CodingKey {
            case kind, partition, table, key, owner, message
            case keyBase64 = "key_b64"
        }
    }

    public var partitions: [PartitionSummary] = []
    /// Entries of the directory's homes, and published keys, in this database's `global`.
    public var homes = 0
    public var publishedKeys = 0
    public var violations: [Violation] = []

    public var isClean: Bool { violations.isEmpty }

    /// Audits every partition of `database`, with `directory` (this database's) for homes.
    public static func run(_ database: Database, directory: ResidencyDirectory) throws -> ResidencyAudit {
        var audit = ResidencyAudit()
        var homes: [SubjectID: Region?] = [:]
        func home(of owner: SubjectID) throws -> Region? {
            if let known = homes[owner] { return known }
            let found = try directory.home(of: owner)
            homes[owner] = found
            return found
        }
        for name in try database.partitionNames() {
            let partition = try database.partition(name)
            if partition.region.isGlobal {
                try audit.auditDirectory(partition)
                continue
            }
            if partition.region != database.region {
                audit.violations.append(
                    Violation(
                        kind: "foreign_partition", partition: name,
                        message:
                            "partition \(name) is of region \(partition.region), but this database is of \(database.region); it must not be here"
                    ))
            }
            var summary = PartitionSummary(
                partition: name, region: partition.region.name, lsn: 0, records: 0, subjects: 0)
            var owners = Set<SubjectID>()
            var found: [Violation] = []
            try partition.read { tx in
                summary.lsn = tx.lsn.rawValue
                for table in try tx.tables() {
                    try tx.scan(table) { record in
                        summary.records += 1
                        guard let owner = record.owner else {
                            found.append(.record("no_owner", name, table, record.key, nil, "has no owner"))
                            return true
                        }
                        owners.insert(owner)
                        switch try home(of: owner) {
                        case nil:
                            found.append(
                                .record(
                                    "unknown_home", name, table, record.key, owner,
                                    "belongs to \(owner.rawValue), who has no home in the directory"))
                        case let home? where home != partition.region:
                            found.append(
                                .record(
                                    "foreign_record", name, table, record.key, owner,
                                    "belongs to \(owner.rawValue), whose home is \(home), not \(partition.region)"))
                        default:
                            break
                        }
                        return true
                    }
                }
            }
            summary.subjects = owners.count
            audit.partitions.append(summary)
            audit.violations += found
        }
        // An erased subject has no records left in this database (`erasures.log`).
        var latest: [String: ErasureRecord] = [:]
        for erasure in try SubjectRightsLog<ErasureRecord>.erasures(database).entries() {
            latest[erasure.subject] = erasure
        }
        for (_, erasure) in latest.sorted(by: { $0.key < $1.key }) {
            guard let subject = try? SubjectID(erasure.subject) else { continue }
            for found in try database.records(ownedBy: subject) {
                audit.violations.append(
                    Violation(
                        kind: "erased_subject_has_records", partition: found.partition, owner: subject.rawValue,
                        message:
                            "\(found.partition): \(found.entries.count) records of \(subject.rawValue), who was erased at \(erasure.time)"
                    ))
            }
        }
        return audit
    }

    /// The directory may hold its homes (a subject id to a region) and the public keys, and no
    /// other table; a subject id shaped like an e-mail address or holding spaces is personal data
    /// where pseudonyms belong.
    private mutating func auditDirectory(_ global: Partition) throws {
        let name = global.name
        var found: [Violation] = []
        var (homes, keys) = (0, 0)
        try global.read { tx in
            for table in try tx.tables() {
                switch table {
                case ResidencyDirectory.table:
                    try tx.scan(table) { record in
                        homes += 1
                        let subject = String(validating: record.key, as: UTF8.self)
                        let home = String(validating: record.value, as: UTF8.self).flatMap { try? Region($0) }
                        if subject.flatMap({ try? SubjectID($0) }) == nil || home == nil || home?.isGlobal == true {
                            found.append(
                                .record(
                                    "bad_directory_entry", name, table, record.key, nil,
                                    "is not a subject id with a region"))
                        } else if let subject, Self.looksPersonal(subject) {
                            found.append(
                                .record(
                                    "personal_data_shaped", name, table, record.key, nil,
                                    "is a subject id shaped like an e-mail address or free text; the directory holds pseudonyms only"
                                ))
                        }
                        return true
                    }
                case PublishedKey.table:
                    try tx.scan(table) { record in
                        keys += 1
                        let kid = String(decoding: record.key, as: UTF8.self)
                        let object = try? JSONSerialization.jsonObject(with: Data(record.value)) as? [String: Any]
                        let region = object?["region"] as? String ?? ""
                        let problem =
                            (try? Region(region)).map { _ in
                                PublishedKey.problem(kid: kid, region: region, entry: record.value)
                            } ?? "names no region"
                        if let problem {
                            found.append(.record("bad_published_key", name, table, record.key, nil, problem))
                        }
                        return true
                    }
                default:
                    var records = 0
                    try tx.scan(table) { _ in
                        records += 1
                        return true
                    }
                    found.append(
                        Violation(
                            kind: "unexpected_table", partition: name, table: table,
                            message:
                                "the directory holds table \(Quoting.name(table)) with \(records) records; it may hold only its homes and the public keys"
                        ))
                }
            }
        }
        self.homes = homes
        publishedKeys = keys
        violations += found
    }

    /// An `@`, or white space: an e-mail address or free text, not a pseudonymous id.
    static func looksPersonal(_ subject: String) -> Bool {
        subject.contains("@") || subject.unicodeScalars.contains { $0.properties.isWhitespace }
    }
}

extension ResidencyAudit.Violation {
    /// A violation of one record, its key as text when it is UTF-8.
    static func record(
        _ kind: String, _ partition: String, _ table: String, _ key: [UInt8], _ owner: SubjectID?, _ what: String
    ) -> Self {
        let text = String(validating: key, as: UTF8.self)
        let shown = text.map { Quoting.name($0) } ?? Data(key).base64EncodedString()
        return Self(
            kind: kind, partition: partition, table: table, key: text,
            keyBase64: text == nil ? Data(key).base64EncodedString() : nil, owner: owner?.rawValue,
            message: "\(partition): table \(Quoting.name(table)) key \(shown) \(what)")
    }
}
