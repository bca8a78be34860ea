import NIOCore
import PartitionDB

/// Home assignments through a host (spec/replication.md#write-forwarding): the directory's
/// primary decides every one, in its own directory and in `global`'s commit mode; any other
/// host forwards the request to it (`assign home`) and returns once its own copy of `global`
/// holds the answer, so the caller reads the home where it assigned it.
extension ClusterHost: HomeAssigning {
    /// Assigns `subject` the home `region` if it has none. Returns whether this call made the
    /// entry; throws `alreadyRegistered` when the subject has another home, and what forwarding
    /// or the commit mode throws (`connection`, `commitOutcomeUnknown`, `forwardedNotApplied`).
    public func assignHome(_ subject: SubjectID, to region: Region) async throws -> Bool {
        let global = Database.globalPartitionName
        guard let role = roles[global], let primary = configuration.hosts[role.primary] else {
            throw ResidencyError.refused(code: "not_a_replica", message: "this host holds no directory")
        }
        let primaryID = role.primary
        if primaryID == configuration.host {
            try checkServing(global)
            let (created, _, _) = try await assignHere(subject, to: region)
            return created
        }
        let (created, home, lsn) = try await askDirectoryPrimary(
            Frame(epoch: role.epoch, .assignHome(subject: subject.rawValue, region: region.name)),
            primaryID: primaryID, primary: primary
        ) { message -> (Bool, String, UInt64)? in
            guard case .homeAssigned(let created, let home, let lsn) = message else { return nil }
            return (created, home, lsn)
        }
        try await waitForCopy(of: global, toReach: lsn, primary: primaryID)
        guard home == region.name else { throw ResidencyError.alreadyRegistered(subject: subject.rawValue, home: home) }
        return created
    }

    /// Sends `request` to the directory's primary over a connection of its own (checking that
    /// the peer is that host) and returns what `answer` reads from its reply; a refusal throws
    /// `refused`, another reply `malformedMessage`.
    func askDirectoryPrimary<T: Sendable>(
        _ request: Frame, primaryID: String, primary: HostConfiguration.Peer,
        _ answer: @escaping @Sendable (Message) -> T?
    ) async throws -> T {
        let connection = try await FrameTransport.connect(to: primary.address, tls: tls, group: group)
        guard connection.peer == .host(id: primaryID, region: primary.region) else {
            await connection.close()
            throw ResidencyError.refused(
                code: "identity_mismatch",
                message: "\(primary.address) is \(connection.peer), not \(primaryID), the directory's primary")
        }
        return try await connection.run { inbound, outbound in
            try await outbound.write(request)
            for try await frame in inbound {
                if let value = answer(frame.message) { return value }
                if case .refusal(let code, let message) = frame.message {
                    throw ResidencyError.refused(code: code, message: message)
                }
                throw ResidencyError.malformedMessage(
                    reason: "the directory's primary answered \(request.message.type) with \(frame.message.type)")
            }
            throw ResidencyError.connection(
                address: primary.address.description, reason: "the directory's primary closed the connection")
        }
    }

    /// The assignment on the directory's primary: whether it made the entry, the subject's home
    /// now, and the directory's newest LSN once that satisfies `global`'s commit mode.
    func assignHere(_ subject: SubjectID, to region: Region) async throws -> (
        created: Bool, home: String, lsn: LSN
    ) {
        let (created, home, lsn): (Bool, String, LSN) = try await pool.runIfActive {
            let outcome: (Bool, String)
            do {
                outcome = (try self.directory.assignHome(subject, to: region), region.name)
            } catch ResidencyError.alreadyRegistered(_, let home) {
                outcome = (false, home)
            }
            return (outcome.0, outcome.1, try self.database.globalPartition().lastLSN)
        }
        try await waitForCommitMode(of: Database.globalPartitionName, lsn: lsn)
        return (created, home, lsn)
    }

    /// The sending host, its region and the directory's role here, when this host serves the
    /// directory as its primary and the sender is one of its configured replicas.
    func directoryReplica(_ peer: PeerIdentity) -> (id: String, region: Region, role: PartitionRole)? {
        guard case .host(let id, let region) = peer, let role = roles[Database.globalPartitionName],
            role.serving != nil, role.members.contains(id)
        else { return nil }
        return (id, region, role)
    }

    /// A host's `assign home`, on the directory's primary: only from a configured replica of
    /// the directory, and only for a valid subject id and region.
    func serveHomeAssignment(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>, subject: String, region: String
    ) async throws {
        let global = Database.globalPartitionName
        guard let (id, _, role) = directoryReplica(connection.peer) else {
            return await refuse(
                connection, outbound, code: "not_a_replica",
                "\(configuration.host) takes assignments only from the hosts that replicate its directory",
                partition: global)
        }
        guard let subjectID = try? SubjectID(subject), let home = try? Region(region), !home.isGlobal else {
            return await refuse(
                connection, outbound, code: "invalid_request",
                "an assignment needs a valid subject id and a region other than global", partition: global)
        }
        do {
            let (created, current, lsn) = try await assignHere(subjectID, to: home)
            logger.info(
                "forwarded assignment",
                metadata: ["host": "\(id)", "created": "\(created)", "region": "\(home)"])
            try await outbound.write(
                Frame(epoch: role.epoch, .homeAssigned(created: created, home: current, lsn: lsn.rawValue)))
        } catch let error as ResidencyError {
            await refuse(connection, outbound, code: error.code, error.description, partition: global)
        }
    }
}
