import NIOCore

/// A command line sent to a running host, and its answer (spec/replication.md#connections): an
/// operator's `pdb … pdb://…`, or a replica host forwarding a write to the partition's primary
/// (spec/replication.md#write-forwarding).
public struct HostAnswer: Sendable, Equatable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var status: UInt32
    /// For a forwarded write: the partition's newest LSN on the primary when it finished,
    /// whether it succeeded or failed.
    public var committedLSN: UInt64?
}

public enum HostRequest {
    /// Connects to `address` with `tls`, checks that a host answers (and, with `expected`, that it
    /// is that host), sends the command line and its input, and collects the answer until `exit`.
    /// `epoch`: 1 from an operator; a forwarding host's epoch of the partition it writes.
    public static func send(
        arguments: [String], input: [UInt8], to address: HostAddress, tls: TLSFiles, group: any EventLoopGroup,
        expected: PeerIdentity? = nil, epoch: UInt64 = 1
    ) async throws -> HostAnswer {
        let connection = try await FrameTransport.connect(to: address, tls: tls, group: group)
        guard case .host = connection.peer, expected.map({ $0 == connection.peer }) ?? true else {
            await connection.close()
            let wanted = expected.map { "\($0)" } ?? "a host"
            throw ResidencyError.refused(
                code: expected == nil ? "not_a_host" : "identity_mismatch",
                message: "\(address) is \(connection.peer), not \(wanted)")
        }
        return try await connection.run { inbound, outbound in
            try await outbound.write(Frame(epoch: epoch, .request(arguments: arguments, input: input)))
            var answer = HostAnswer(stdout: [], stderr: [], status: 0, committedLSN: nil)
            for try await frame in inbound {
                switch frame.message {
                case .output(1, let bytes): answer.stdout += bytes
                case .output(_, let bytes): answer.stderr += bytes
                case .committed(let lsn): answer.committedLSN = lsn
                case .exit(let status):
                    answer.status = status
                    return answer
                case .refusal(let code, let message): throw ResidencyError.refused(code: code, message: message)
                default:
                    throw ResidencyError.malformedMessage(reason: "a host answered with \(frame.message.type)")
                }
            }
            throw ResidencyError.connection(address: address.description, reason: "the host closed the connection")
        }
    }
}
