import ArgumentParser
import Auth
import Dispatch
import Foundation
import Logging
import PartitionDB
import Residency

/// `pdb serve --config FILE`: runs one host of a cluster in the foreground (spec/replication.md,
/// spec/config.md) until SIGTERM or SIGINT, then stops listening, lets commits in flight finish,
/// closes its connections and closes the database.
struct Serve: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a host of a cluster: serve operators, ship and receive partitions.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The host's configuration file (spec/config.md).")
    var config: String

    func execute() throws {
        let configuration = try HostConfiguration.load(config)
        // The auth section's files are checked before anything starts, like the rest.
        if configuration.auth != nil { try AuthService.check(configuration) }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var logger = Logger(label: "pdb.serve")
        logger[metadataKey: "host"] = "\(configuration.host)"
        let database = try Database.openAsCreated(at: configuration.dataDirectory)
        do {
            _ = try ResidencyDirectory(database: database)
            let host = try ClusterHost(
                configuration: configuration, database: database, commands: HostCommandRunner(), logger: logger)
            let signals = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { host.stop() }
                source.resume()
                return source
            }
            let failure = ServeFailure()
            let done = DispatchSemaphore(value: 0)
            let authLogger = logger
            Task {
                // The auth layer starts beside the host: a replica waits for its copy first.
                let auth =
                    configuration.auth == nil ? nil : Task { await AuthService.start(on: host, logger: authLogger) }
                do {
                    try await host.run()
                } catch {
                    failure.error = error
                }
                host.stop()
                auth?.cancel()
                await auth?.value?.shutdown()
                await host.shutdown()
                done.signal()
            }
            done.wait()
            for source in signals { source.cancel() }
            if let error = failure.error { throw error }
        } catch {
            try? database.close()
            throw error
        }
        try database.close()
        logger.info("database closed")
    }
}

/// The error that ended `run()`, handed to the waiting thread (the semaphore orders the two).
private final class ServeFailure: @unchecked Sendable {
    var error: (any Error)?
}
