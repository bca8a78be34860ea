import Foundation
import NIOCore
import PartitionDB

/// What `ClusterHost.promote` did (`pdb promote`, spec/cli.md#promote).
public struct PromotionReport: Codable, Sendable, Equatable {
    public var partition: String
    public var epoch: UInt64
    /// The primary of the epoch before.
    public var previousPrimary: String
    /// The LSN of the commit that began the epoch: the first the new primary made.
    public var firstLSN: UInt64
    /// Each host that answered the fence, with its copy's durable LSN then.
    public var fenced: [String: UInt64]
    /// The hosts that did not answer in time: this host keeps fencing them until they do.
    public var unreached: [String]
    public var milliseconds: UInt64

    enum CodingKeys: String, CodingKey {
        case partition, epoch, fenced, unreached, milliseconds
        case previousPrimary = "previous_primary"
        case firstLSN = "first_lsn"
    }
}

/// Promotion (spec/replication.md#promotion): the mechanism only. Which host, and which epoch,
/// are the caller's decision (`pdb promote` today; a coordinator holding a lease could call the
/// same entry point): this host fences itself, then every other member, checks that the hosts
/// it reached must hold every commit a quorum acknowledged and that it has the newest of them,
/// makes the epoch durable in the partition with a commit of its own, and only then ships and
/// accepts writes.
extension ClusterHost {
    /// Makes this host the primary of `partition` at `epoch` (default: one above the newest it
    /// knows). Throws `refused` with `not_a_replica`, `already_primary`, `no_copy`,
    /// `epoch_not_newer` (a host knows that epoch or a newer one), `promotion_unsafe` (too few
    /// replicas reached to be sure of every acknowledged commit) or `promotion_behind` (a
    /// reached replica has newer commits: promote that one). A refused promotion that fenced
    /// the others leaves this host fenced, not serving: promote again, here or elsewhere.
    public func promote(partition name: String, toEpoch requested: UInt64? = nil) async throws -> PromotionReport {
        let began = ContinuousClock.now
        guard let role = roles[name] else {
            throw ResidencyError.refused(code: "not_a_replica", message: "\(configuration.host) does not hold \(name)")
        }
        if role.serving != nil {
            throw ResidencyError.refused(
                code: "already_primary",
                message: "\(configuration.host) is already the primary of \(name) at epoch \(role.epoch)")
        }
        let copy = try await pool.runIfActive { try self.localCopy(name) }
        guard !copy.fileID.isEmpty else {
            throw ResidencyError.refused(
                code: "no_copy", message: "\(configuration.host) has no copy of \(name) yet; promote a replica that has"
            )
        }
        let known = role.epoch
        let epoch = requested ?? known + 1
        let previous = role.primary
        guard epoch > known, try await pool.runIfActive({ try self.adopt(epoch: epoch, primary: self.host, of: name) })
        else {
            throw ResidencyError.refused(
                code: "epoch_not_newer", message: "\(configuration.host) knows epoch \(role.epoch) of \(name) already")
        }
        logger.notice("promoting", metadata: ["partition": "\(name)", "epoch": "\(epoch)", "was": "\(previous)"])

        // Fence every other member at once and wait for the replicas. The old primary's answer
        // is waited for only while safety depends on it (it may be gone or cut off; it is fenced
        // in the background too): when it tells that its copy never began its epoch.
        let mine = FencedCopy(fileID: copy.fileID, lsn: copy.lsn, epoch: copy.epoch)
        let others = role.members.filter { $0 != configuration.host }
        let answers = await withTaskGroup(of: FenceAnswer.self) { tasks in
            for host in others {
                tasks.addTask {
                    do {
                        return FenceAnswer(
                            member: host, copy: try await self.fence(host, partition: name, epoch: epoch))
                    } catch {
                        return FenceAnswer(member: host, failure: error)
                    }
                }
            }
            var answers: [String: FenceAnswer] = [:]
            while let answer = await tasks.next() {
                answers[answer.member] = answer
                guard others.allSatisfy({ answers[$0] != nil || $0 == previous }) else { continue }
                if answers[previous] != nil
                    || self.acknowledgedCommitsCheck(role, known: known, previous: previous, mine: mine, answers)
                        .isSafe
                {
                    break
                }
            }
            tasks.cancelAll()
            return answers
        }
        var fenced: [String: UInt64] = [:]
        for answer in answers.values {
            if let copy = answer.copy {
                fenced[answer.member] = copy.lsn
            } else if answer.failure?.code == "epoch_not_newer", let failure = answer.failure {
                throw failure
            } else {
                logger.warning(
                    "fence not answered",
                    metadata: ["host": "\(answer.member)", "reason": "\(answer.failure.map { "\($0)" } ?? "")"])
            }
        }
        let unreached = others.filter { fenced[$0] == nil }

        let check = acknowledgedCommitsCheck(role, known: known, previous: previous, mine: mine, answers)
        guard check.isSafe else {
            throw ResidencyError.refused(
                code: "promotion_unsafe",
                message:
                    "reached \(check.reached) of the \(check.replicas) replicas of \(name) in epoch \(check.epoch) (this host included); with \(role.placement.commitMode) a commit acknowledged then may be only on the others, so \(check.required) are needed: bring them up and run `pdb promote` again"
            )
        }
        // This copy as it stands now that nothing older is followed.
        let now = try await pool.runIfActive { try self.localCopy(name) }
        let current = FencedCopy(fileID: now.fileID, lsn: now.lsn, epoch: now.epoch)
        let ahead = answers.values.compactMap { answer -> (String, FencedCopy)? in
            guard answer.member != check.knownPrimary, let other = answer.copy,
                other.fileID == current.fileID, other.isAhead(of: current)
            else { return nil }
            return (answer.member, other)
        }
        if let (host, other) = ahead.max(by: { $1.1.isAhead(of: $0.1) }) {
            throw ResidencyError.refused(
                code: "promotion_behind",
                message:
                    "\(host) holds \(name) up to LSN \(other.lsn) of epoch \(other.epoch), this host only to \(current.lsn) of epoch \(current.epoch): promote \(host) instead (`pdb promote pdb://…\(host) \(name)`)"
            )
        }

        // The epoch becomes durable in the partition before anything is accepted; the shipped
        // log is opened first so that the epoch's first commit is shipped like any other.
        let (serving, first) = try await pool.runIfActive { () -> (PrimaryRole, UInt64) in
            try? FileManager.default.removeItem(
                atPath: SegmentFormat.directory(database: self.database.path, partition: name))
            let serving = try self.openPrimaryRole(role, epoch: epoch)
            do {
                let first = try self.database.partition(name).beginEpoch(epoch)
                return (serving, first.rawValue)
            } catch let error as PartitionDBError {
                try? self.database.partition(name).setCommitObserver(nil)
                throw ResidencyError.engine(error)
            }
        }
        let installed = role.withState { state -> Bool in
            guard state.epoch == epoch, state.primary == configuration.host else { return false }
            state.serving = serving
            return true
        }
        guard installed else {
            serving.depose()
            throw ResidencyError.refused(
                code: "epoch_not_newer", message: "a newer epoch of \(name) arrived while this host was promoted")
        }
        let milliseconds = UInt64((ContinuousClock.now - began) / .milliseconds(1))
        logger.notice(
            "promoted",
            metadata: [
                "partition": "\(name)", "epoch": "\(epoch)", "first_lsn": "\(first)", "ms": "\(milliseconds)",
                "unreached": "\(unreached)",
            ])
        if !unreached.isEmpty {
            Task { await self.fenceStragglers(role, epoch: epoch, only: unreached) }
        }
        return PromotionReport(
            partition: name, epoch: epoch, previousPrimary: previous, firstLSN: first, fenced: fenced,
            unreached: unreached, milliseconds: milliseconds)
    }

    var host: String { configuration.host }

    /// Whether the hosts reached (this one included) hold every commit a quorum acknowledged:
    /// in `quorum:N` such a commit of an epoch is on N of that epoch's replicas, so with R − N + 1
    /// of them reached one holds it (spec/replication.md#promotion). The epoch to check is the
    /// newest known (`known`, led by `previous`), unless `previous` answered that its copy never
    /// began it (a promotion refused before it served): then no commit of it exists, and the
    /// newest epoch a reached copy holds is checked instead, with its primary when that is
    /// epoch 1's configured one, else with the worst case over every member as its primary.
    func acknowledgedCommitsCheck(
        _ role: PartitionRole, known: UInt64, previous: String, mine: FencedCopy, _ answers: [String: FenceAnswer]
    ) -> AcknowledgedCommitsCheck {
        var copies = answers.compactMapValues(\.copy)
        copies[configuration.host] = mine
        var epoch = known
        var primaries = [previous]
        if let held = copies[previous]?.epoch, held < known {
            epoch = copies.values.map(\.epoch).max() ?? 1
            primaries = epoch == 1 ? [role.placement.primary] : role.members
        }
        guard case .quorum(let needed) = role.placement.commitMode else {
            return AcknowledgedCommitsCheck(epoch: epoch, primaries: primaries, replicas: 0, reached: 0, required: 0)
        }
        // Each possible primary's replicas, and how many were reached; the fewest decides.
        var replicas = 0
        var reached = Int.max
        for primary in primaries {
            let theirs = role.replicas(of: primary)
            let reachedOfTheirs = theirs.filter { copies[$0] != nil }.count
            if reachedOfTheirs < reached { (replicas, reached) = (theirs.count, reachedOfTheirs) }
        }
        return AcknowledgedCommitsCheck(
            epoch: epoch, primaries: primaries, replicas: replicas, reached: reached,
            required: max(1, replicas - needed + 1))
    }

    /// Sends one fence and returns the fenced host's copy (file id, durable LSN). Throws
    /// `epoch_not_newer` when the host knows this epoch or a newer one (it answered
    /// `newer epoch`), and what the connection throws; gives up after `peer_timeout_seconds`.
    func fence(_ member: String, partition: String, epoch: UInt64) async throws -> FencedCopy {
        guard let peer = configuration.hosts[member] else {
            throw ResidencyError.refused(code: "unknown_host", message: "\(member) is not in the configuration")
        }
        let timeout = Duration.seconds(Int64(configuration.peerTimeoutSeconds))
        return try await withThrowingTaskGroup(of: FencedCopy?.self) { tasks in
            tasks.addTask {
                let connection = try await FrameTransport.connect(to: peer.address, tls: self.tls, group: self.group)
                guard connection.peer == .host(id: member, region: peer.region) else {
                    await connection.close()
                    throw ResidencyError.refused(
                        code: "identity_mismatch", message: "\(peer.address) is \(connection.peer), not \(member)")
                }
                return try await connection.run { inbound, outbound in
                    try await outbound.write(
                        Frame(epoch: epoch, .fence(partition: partition, primary: self.configuration.host)))
                    for try await frame in inbound {
                        switch frame.message {
                        case .fenced(let fileID, let lsn, let copyEpoch) where frame.epoch == epoch:
                            return FencedCopy(fileID: fileID, lsn: lsn, epoch: copyEpoch)
                        case .newerEpoch(_, let primary):
                            _ = try? await self.pool.runIfActive {
                                try self.adopt(epoch: frame.epoch, primary: primary, of: partition)
                            }
                            throw ResidencyError.refused(
                                code: "epoch_not_newer",
                                message:
                                    "\(member) knows epoch \(frame.epoch) of \(partition), led by \(primary); promote with a higher --epoch"
                            )
                        case .refusal(let code, let message): throw ResidencyError.refused(code: code, message: message)
                        default:
                            throw ResidencyError.malformedMessage(reason: "a fence answered with \(frame.message.type)")
                        }
                    }
                    throw ResidencyError.connection(
                        address: peer.address.description, reason: "closed before answering")
                }
            }
            tasks.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            guard let first = try await tasks.next(), let answer = first else {
                tasks.cancelAll()
                throw ResidencyError.connection(
                    address: peer.address.description, reason: "no answer to the fence within \(timeout)")
            }
            tasks.cancelAll()
            return answer
        }
    }

    /// Fences the members not known to be fenced until each has answered, while this host is
    /// the primary of `epoch`: a deposed primary that was cut off or down learns of the new
    /// epoch as soon as it can be reached (spec/replication.md#promotion).
    func fenceStragglers(_ role: PartitionRole, epoch: UInt64, only: [String]? = nil) async {
        var pending = only ?? role.members.filter { $0 != configuration.host }
        var delay = Duration.milliseconds(100)
        while !pending.isEmpty, !stopping.load(ordering: .relaxed), role.epoch == epoch,
            role.primary == configuration.host
        {
            var still: [String] = []
            for member in pending {
                do {
                    _ = try await fence(member, partition: role.placement.name, epoch: epoch)
                    logger.info("fenced", metadata: ["partition": "\(role.placement.name)", "host": "\(member)"])
                } catch let error as ResidencyError where error.code == "epoch_not_newer" {
                    return
                } catch {
                    still.append(member)
                }
            }
            pending = still
            if pending.isEmpty { break }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// A fence from a host being promoted: recorded durably (the term file) and acted on before
    /// the answer, which carries this host's copy as it stands once nothing older is followed.
    func serveFence(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>, epoch: UInt64,
        partition: String, primary: String
    ) async throws {
        guard case .host(let id, let region) = connection.peer, id == primary,
            configuration.hosts[id]?.region == region, let role = roles[partition], role.members.contains(id)
        else {
            return await refuse(
                connection, outbound, code: "not_a_member",
                "only a host of partition \(partition), naming itself, may fence it", partition: partition)
        }
        let adopted = try await pool.runIfActive { try self.adopt(epoch: epoch, primary: primary, of: partition) }
        guard adopted else {
            let (known, leader) = role.withState { ($0.epoch, $0.primary) }
            logger.warning(
                "fence refused",
                metadata: ["partition": "\(partition)", "from": "\(id)", "epoch": "\(epoch)", "known": "\(known)"])
            try await outbound.write(Frame(epoch: known, .newerEpoch(partition: partition, primary: leader)))
            return
        }
        let copy = try await pool.runIfActive { try self.localCopy(partition) }
        try await outbound.write(
            Frame(epoch: epoch, .fenced(fileID: copy.fileID, durableLSN: copy.lsn, copyEpoch: copy.epoch)))
    }
}

/// A fenced member's copy of the partition, as its `fenced` answer gave it: file id (empty:
/// none), durable LSN and the epoch in its header.
struct FencedCopy: Sendable {
    let fileID: [UInt8]
    let lsn: UInt64
    let epoch: UInt64

    /// Whether this copy holds commits `other` lacks: a newer epoch, or more of the same one.
    func isAhead(of other: FencedCopy) -> Bool {
        epoch != other.epoch ? epoch > other.epoch : lsn > other.lsn
    }
}

/// What `acknowledgedCommitsCheck` found: the epoch whose acknowledged commits are guarded,
/// who may have led it, and the reached replicas of the worst case against those required.
struct AcknowledgedCommitsCheck {
    let epoch: UInt64
    let primaries: [String]
    let replicas: Int
    let reached: Int
    let required: Int
    var isSafe: Bool { reached >= required }
    /// The checked epoch's primary when it is known: its copy may hold commits never
    /// acknowledged, so it is not compared with the promoted host's.
    var knownPrimary: String? { primaries.count == 1 ? primaries[0] : nil }
}

/// One member's answer to a promotion's fence: its copy, or why it gave none. A named
/// struct rather than a tuple of a `Result`: task groups of that tuple lost their results in
/// release builds (Swift 6.3.1), and every fence then looked unanswered.
struct FenceAnswer: Sendable {
    let member: String
    let copy: FencedCopy?
    let failure: ResidencyError?

    init(member: String, copy: FencedCopy) {
        self.member = member
        self.copy = copy
        self.failure = nil
    }

    init(member: String, failure: any Error) {
        self.member = member
        self.copy = nil
        self.failure =
            failure as? ResidencyError ?? .connection(address: member, reason: "\(failure)")
    }
}
