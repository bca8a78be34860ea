import Foundation
import NIOCore
import NIOPosix
import PartitionDB
import Residency

/// The operator's side of `pdb … pdb://HOST:PORT …`: sends the command line (and, for `apply`,
/// stdin) to the host over mutual TLS, prints what comes back, and exits with the host's status.
enum RemoteClient {
    /// Runs the command on the host; returns its exit status.
    static func run(arguments: [String], location: DatabaseArgument, readsInput: Bool) throws -> Int32 {
        let input = readsInput ? try readStandardInput() : []
        let answer = try self.answer(arguments: arguments, input: input, location: location)
        FileHandle.standardOutput.write(Data(answer.stdout))
        FileHandle.standardError.write(Data(answer.stderr))
        return Int32(bitPattern: answer.status)
    }

    /// The host's answer to the command line, not printed.
    static func answer(arguments: [String], input: [UInt8] = [], location: DatabaseArgument) throws -> HostAnswer {
        guard let text = location.remoteAddress, let address = HostAddress(text) else {
            throw CLIError(code: "usage", message: "\(Quoting.name(location.directory)) is not pdb://HOST:PORT")
        }
        guard let tlsDirectory = location.tlsDirectory ?? ProcessInfo.processInfo.environment["PDB_TLS"] else {
            throw CLIError(
                code: "usage",
                message: "pdb:// needs an operator certificate: give its folder with --tls DIR or PDB_TLS")
        }
        let tls = try TLSFiles(directory: tlsDirectory)
        guard case .operator = tls.identity else {
            throw CLIError(
                code: "usage",
                message: "\(Quoting.path(tlsDirectory)) holds the certificate of \(tls.identity), not an operator's")
        }
        let result = AnswerBox()
        let done = DispatchSemaphore(value: 0)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        Task {
            do {
                result.value = .success(
                    try await HostRequest.send(
                        arguments: withoutTLSOption(arguments), input: input, to: address, tls: tls, group: group))
            } catch {
                result.value = .failure(error)
            }
            done.signal()
        }
        done.wait()
        // The command's answer is in; a failure to stop the one event-loop thread changes nothing
        // of it, and the process exits next.
        try? group.syncShutdownGracefully()
        return try result.value!.get()
    }

    /// The command line without `--tls DIR` (a path on this machine, meaningless on the host).
    static func withoutTLSOption(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var index = 0
        var ended = false
        while index < arguments.count {
            let argument = arguments[index]
            if !ended, argument == "--tls" {
                index += 2
                continue
            }
            if !ended, argument.hasPrefix("--tls=") {
                index += 1
                continue
            }
            if argument == "--" { ended = true }
            result.append(argument)
            index += 1
        }
        return result
    }

    private static func readStandardInput() throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw CLIError(code: "io", message: "cannot read standard input (errno \(errno))") }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            guard bytes.count <= Message.maxInput else {
                throw CLIError(
                    code: "input_too_large",
                    message:
                        "input for a running host is limited to \(Message.maxInput) bytes; split it into several applies"
                )
            }
        }
    }
}

/// The answer, handed from the connection's task to the waiting thread (the semaphore orders the
/// write before the read).
private final class AnswerBox: @unchecked Sendable {
    var value: Result<HostAnswer, any Error>?
}
