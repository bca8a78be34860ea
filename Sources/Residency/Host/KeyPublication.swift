import Foundation
import NIOCore
import PartitionDB

/// Public signing keys in the directory (spec/auth.md#key-distribution,
/// spec/replication.md#write-forwarding): the reserved table `pdb.jwks` of `global`, written only
/// on the directory's primary. Any other host sends its region's keys there (`publish key`) and
/// returns once its own copy holds them. A host publishes keys of its own region only, as its
/// certificate names it: the hosts of a region hold that region's private keys, no others.
extension ClusterHost {
    /// The directory's table of published keys.
    public static let publishedKeysTable = PublishedKey.table

    /// Stores `entry` as the published key `kid` of this host's region; returns once this
    /// host's copy of the directory holds it. Throws `refused` (`invalid_key_entry` for an entry
    /// that is not a public key of this region) and what forwarding or the commit mode throws.
    public func publishKey(kid: String, entry: [UInt8]) async throws {
        let global = Database.globalPartitionName
        let region = configuration.region.name
        if let problem = PublishedKey.problem(kid: kid, region: region, entry: entry) {
            throw ResidencyError.refused(code: "invalid_key_entry", message: problem)
        }
        guard let role = roles[global], let primary = configuration.hosts[role.primary] else {
            throw ResidencyError.refused(code: "not_a_replica", message: "this host holds no directory")
        }
        let primaryID = role.primary
        if primaryID == configuration.host {
            try checkServing(global)
            _ = try await publishHere(kid: kid, entry: entry)
            return
        }
        let lsn = try await askDirectoryPrimary(
            Frame(epoch: role.epoch, .publishKey(kid: kid, region: region, entry: entry)),
            primaryID: primaryID, primary: primary
        ) { message -> UInt64? in
            guard case .keyPublished(let lsn) = message else { return nil }
            return lsn
        }
        try await waitForCopy(of: global, toReach: lsn, primary: primaryID)
    }

    /// The publication on the directory's primary: the directory's newest LSN once the entry
    /// is committed and satisfies `global`'s commit mode.
    func publishHere(kid: String, entry: [UInt8]) async throws -> LSN {
        let lsn: LSN = try await pool.runIfActive {
            let global = try self.database.globalPartition()
            return try global.writeReserved(durability: .durable) { tx in
                _ = try tx.createTable(Self.publishedKeysTable)
                try tx.put(Self.publishedKeysTable, Array(kid.utf8), entry)
                return tx.lsn
            }
        }
        try await waitForCommitMode(of: Database.globalPartitionName, lsn: lsn)
        return lsn
    }

    /// A host's `publish key`, on the directory's primary: only from a configured replica of
    /// the directory, only for the sender's own region, only a public key's entry.
    func serveKeyPublication(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>, kid: String, region: String,
        entry: [UInt8]
    ) async throws {
        let global = Database.globalPartitionName
        guard let (id, hostRegion, role) = directoryReplica(connection.peer) else {
            return await refuse(
                connection, outbound, code: "not_a_replica",
                "\(configuration.host) takes key publications only from the hosts that replicate its directory",
                partition: global)
        }
        guard region == hostRegion.name else {
            return await refuse(
                connection, outbound, code: "cross_region_key",
                "\(id) is a host of \(hostRegion); it may publish keys of \(hostRegion) only, not of \(region)",
                partition: global)
        }
        if let problem = PublishedKey.problem(kid: kid, region: region, entry: entry) {
            return await refuse(connection, outbound, code: "invalid_key_entry", problem, partition: global)
        }
        do {
            let lsn = try await publishHere(kid: kid, entry: entry)
            logger.info("forwarded key publication", metadata: ["host": "\(id)", "kid": "\(kid)"])
            try await outbound.write(Frame(epoch: role.epoch, .keyPublished(lsn: lsn.rawValue)))
        } catch let error as ResidencyError {
            await refuse(connection, outbound, code: error.code, error.description, partition: global)
        }
    }
}
