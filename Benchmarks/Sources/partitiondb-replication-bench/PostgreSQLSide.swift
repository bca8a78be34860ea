import Foundation
import Synchronization

/// PostgreSQL 15's side of a round: a primary and a hot standby made by `pg_basebackup -R`, both
/// on loopback, started by the benchmark in its own folders (as the `postgres` account when the
/// benchmark is root), stopped and removed at the end. The writer is `pgbench` with one client
/// and a script of one INSERT per transaction; the standby streams over TLS (server certificate),
/// as PartitionDB's replica does over mutual TLS.
struct PostgreSQLSide {
    let settings: Settings
    /// The folder of `initdb`, `postgres`, `pgbench`, `psql`, `pg_basebackup`.
    let bin: String
    let runAs: RunAs?
    /// This round's folder for PostgreSQL (must not exist).
    let directory: String

    var logs: String { directory + "/logs" }

    /// The throughput, steady-rate and shipping rows (phase A).
    func runStreaming(into results: inout RoundResults) throws {
        try prepareFolders()
        let ports = try freeLoopbackPorts(2)
        let primary = try Server(side: self, name: "primary", port: ports)
        defer { primary.stop() }
        try primary.initialize()
        try primary.start()
        try primary.setUp()
        try checkRecordsMatch(primary)

        // 1. The writer alone: no standby.
        let alone = try pgbench(primary, seconds: settings.seconds, rate: nil, label: "alone")
        results.set(.commitsAlone, .postgresql, alone.tps)
        progress("alone (no standby): \(format(alone.tps, .commitsPerSecond))")

        // 2. An async hot standby, streaming.
        let standby = try Server(side: self, name: "standby", port: ports + 1)
        defer { standby.stop() }
        try standby.baseBackup(from: primary)
        try standby.start()
        _ = try primary.waitForStreamingStandby(timeout: 120)
        try primary.checkReplicationUsesTLS()
        let walBefore = try primary.currentWAL()
        let withStandby = try pgbench(primary, seconds: settings.seconds, rate: nil, label: "with-standby")
        var commits = withStandby.transactions
        results.set(.commitsWithReplica, .postgresql, withStandby.tps)
        results.set(.withReplicaOverAlone, .postgresql, withStandby.tps / alone.tps)
        progress("one async standby streaming: \(format(withStandby.tps, .commitsPerSecond))")

        // 3. Steady rates, each after the standby has caught up; replay_lag sampled meanwhile.
        for rate in settings.rates {
            _ = try primary.waitForStreamingStandby(timeout: 120)
            let samples = Shared<[Double]>([])
            let sampling = Thread {
                samples.value = (try? primary.sampleReplayLag(seconds: settings.steadySeconds)) ?? []
            }
            let run = try pgbench(
                primary, seconds: settings.steadySeconds, rate: rate, label: "steady-\(rate)",
                alongside: sampling)
            commits += run.transactions
            let lags = samples.value
            guard !lags.isEmpty else {
                throw ReplicationBenchError.verification("no replay_lag sample at \(rate)/s (see \(logs))")
            }
            results.set(.achievedRate(rate), .postgresql, run.tps)
            results.set(.lagSampledP50(rate), .postgresql, percentile(lags, 50))
            results.set(.lagSampledP99(rate), .postgresql, percentile(lags, 99))
            progress(
                "steady \(rate)/s: achieved \(format(run.tps, .commitsPerSecond)); replay_lag sampled every 10 ms "
                    + "(\(lags.count)): p50 \(format(percentile(lags, 50), .milliseconds)), p99 "
                    + "\(format(percentile(lags, 99), .milliseconds)), max \(format(lags.max(), .milliseconds))")
        }

        // 4. WAL written, which the standby is sent as it is, per commit of 2 and 3.
        let walAfter = try primary.currentWAL()
        let walBytes = try Double(primary.query("SELECT pg_wal_lsn_diff('\(walAfter)', '\(walBefore)')")) ?? 0
        results.set(.bytesPerCommit, .postgresql, walBytes / Double(commits))
        results.set(.compressionRatio, .postgresql, 1)
        progress(
            "WAL \(format(walBytes / Double(commits), .bytes)) per commit over \(commits) commits (sent as written)")

        // 5. The standby synchronous (synchronous_commit = on already): each commit waits for its flush there.
        try primary.execute("ALTER SYSTEM SET synchronous_standby_names = '*'", timeout: 30)
        try primary.execute("SELECT pg_reload_conf()", timeout: 30)
        let deadline = Date().addingTimeInterval(60)
        while try primary.query("SELECT sync_state FROM pg_stat_replication") != "sync" {
            guard Date() < deadline else { throw ReplicationBenchError.timeout("the standby becoming synchronous") }
            usleep(50_000)
        }
        for writers in Row.quorumWriters {
            let run = try pgbench(
                primary, seconds: settings.seconds, rate: nil, label: "synchronous-\(writers)", clients: writers)
            results.set(.quorumCommits(writers: writers), .postgresql, run.tps)
            progress("one synchronous standby, \(writers) clients: \(format(run.tps, .commitsPerSecond))")
        }
        standby.stop()
        primary.stop()
        try FileManager.default.removeItem(atPath: directory + "/data")
    }

    /// The catch-up row (phase B): a fresh primary loaded with the same `records` records as
    /// PartitionDB's partition, checkpointed, then `pg_basebackup -R` and the standby's start,
    /// until the standby streams at the primary's LSN.
    func runCatchUp(records: Int, into results: inout RoundResults) throws {
        try prepareFolders()
        let ports = try freeLoopbackPorts(2)
        let primary = try Server(side: self, name: "primary", port: ports)
        defer { primary.stop() }
        try primary.initialize()
        try primary.start()
        try primary.setUp()
        let loadStart = monotonicNanoseconds()
        try primary.execute(
            "INSERT INTO bench SELECT bench_key(i), bench_value(i) FROM generate_series(1, \(records)) AS i",
            timeout: settings.catchUpTimeout * 4)
        // What pg_basebackup's own checkpoint would otherwise write (both sides start with their
        // data files written: PartitionDB's partition is checkpointed too).
        try primary.execute("CHECKPOINT", timeout: 600)
        let size = try Double(primary.query("SELECT pg_total_relation_size('bench')")) ?? 0
        progress(
            "loaded \(records) records, table and index \(format(size, .bytes)), in "
                + "\(format(Double(monotonicNanoseconds() - loadStart) / 1e9, .seconds))")

        let standby = try Server(side: self, name: "standby", port: ports + 1)
        defer { standby.stop() }
        let start = realtimeSeconds()
        try standby.baseBackup(from: primary)
        let backupSeconds = realtimeSeconds() - start
        let backupBytes = Double(try directorySize(standby.data))
        try standby.start()
        let streaming = try primary.waitForStreamingStandby(timeout: settings.catchUpTimeout)
        let seconds = streaming - start
        results.set(.catchUpSeconds, .postgresql, seconds)
        results.set(.catchUpDataBytes, .postgresql, size)
        results.set(.catchUpBytesShipped, .postgresql, backupBytes)
        progress(
            "pg_basebackup of \(format(backupBytes, .bytes)) took \(format(backupSeconds, .seconds)) "
                + "(\(Int(backupBytes / backupSeconds / 1e6)) MB/s); with the standby's start until it streamed at "
                + "the primary's LSN: \(format(seconds, .seconds))")
        let count = try primary.query("SELECT count(*) FROM bench")
        let standbyCount = try standby.query("SELECT count(*) FROM bench")
        guard count == "\(records)", standbyCount == count else {
            throw ReplicationBenchError.verification(
                "the standby has \(standbyCount) records, the primary \(count), of \(records) loaded")
        }
        progress("the standby holds the \(records) records")
        standby.stop()
        primary.stop()
        try FileManager.default.removeItem(atPath: directory + "/data")
    }

    // MARK: Pieces

    func progress(_ message: String) { printError("[postgresql] \(message)\n") }

    /// The data, socket and TLS folders, owned by the account the servers run as.
    private func prepareFolders() throws {
        for path in [directory, logs, directory + "/data", directory + "/sockets", directory + "/tls"] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try runAs?.own(path)
        }
        // A P-256 certificate for the servers, as the cluster's hosts have.
        let tls = directory + "/tls"
        if !FileManager.default.fileExists(atPath: tls + "/server.crt") {
            try Processes.check(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", tls + "/server.key", "-out", tls + "/server.crt",
                ], timeout: 60, logs: logs, label: "openssl")
            for file in ["server.key", "server.crt"] {
                try runAs?.own(tls + "/" + file)
                chmod(tls + "/" + file, 0o600)
            }
        }
    }

    struct PgbenchRun {
        var tps: Double
        var transactions: Int
    }

    /// `pgbench -c CLIENTS` (default 1) for `seconds`, at `rate` transactions a second if given
    /// (`-R`), with the script of one INSERT; `alongside` is started once pgbench is.
    private func pgbench(
        _ server: Server, seconds: Double, rate: Int?, label: String, alongside: Thread? = nil, clients: Int = 1
    ) throws -> PgbenchRun {
        let script = directory + "/insert.sql"
        if !FileManager.default.fileExists(atPath: script) {
            // A random record index far above the catch-up load's (1 ... N); duplicates of a
            // 62-bit random number are out of reach in these runs.
            try """
            \\set r random(\(Records.phaseBase(1)), 4611686018427387903)
            INSERT INTO bench VALUES (bench_key(:r), bench_value(:r));

            """.write(toFile: script, atomically: true, encoding: .utf8)
        }
        var arguments = [
            "-n", "-M", "prepared", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(Int(seconds.rounded()))",
            "-f", script,
        ]
        if let rate { arguments += ["-R", "\(rate)"] }
        arguments += server.connection + ["postgres"]
        let command = arguments
        let done = DispatchSemaphore(value: 0)
        let outcome = Shared<Result<ProcessOutput, any Error>?>(nil)
        let logs = self.logs
        let pgbench = bin + "/pgbench"
        let thread = Thread {
            outcome.value = Result {
                try Processes.check(pgbench, command, timeout: seconds + 120, logs: logs, label: "pgbench-\(label)")
            }
            done.signal()
        }
        thread.start()
        if let alongside {
            // pgbench connects within milliseconds; the sampler waits 0.5 s itself.
            alongside.start()
        }
        _ = done.wait(timeout: .now() + seconds + 180)
        if alongside != nil { while !(alongside!.isFinished) { usleep(10_000) } }
        guard let result = outcome.value else { throw ReplicationBenchError.timeout("pgbench \(label)") }
        let output = try result.get()
        guard let tps = number(after: "tps = ", in: output.stdout),
            let processed = number(after: "number of transactions actually processed: ", in: output.stdout)
        else {
            throw ReplicationBenchError.verification("pgbench \(label) printed no tps:\n\(output.stdout)")
        }
        if let failed = number(after: "number of failed transactions: ", in: output.stdout), failed > 0 {
            throw ReplicationBenchError.verification("pgbench \(label): \(Int(failed)) transactions failed")
        }
        return PgbenchRun(tps: tps, transactions: Int(processed))
    }

    /// PostgreSQL's `bench_key` and `bench_value` make the bytes `Records` makes.
    private func checkRecordsMatch(_ server: Server) throws {
        for index: Int64 in [1, 2, 1_000_003, Records.phaseBase(1) + 77] {
            let record = Records.record(index)
            let sql = try server.query(
                "SELECT encode(bench_key(\(index)), 'hex') || ' ' || encode(bench_value(\(index)), 'hex')")
            guard sql == record.key.hex + " " + record.value.hex else {
                throw ReplicationBenchError.verification(
                    "PostgreSQL's record \(index) is not PartitionDB's: \(sql) against \(record.key.hex) \(record.value.hex)"
                )
            }
        }
    }
}

/// One PostgreSQL server of a round: its data folder, port and process.
final class Server: Sendable {
    let side: PostgreSQLSide
    let name: String
    let port: Int
    /// The running `postgres`; set by `start`, cleared by `stop` (the sampler thread only queries).
    private let running = Mutex<Child?>(nil)

    var data: String { side.directory + "/data/" + name }
    var sockets: String { side.directory + "/sockets" }
    /// psql's and pgbench's connection: the Unix socket (the writer's round trip is not loopback TCP).
    var connection: [String] { ["-h", sockets, "-p", "\(port)", "-U", "bench"] }

    init(side: PostgreSQLSide, name: String, port: Int) throws {
        self.side = side
        self.name = name
        self.port = port
    }

    /// `initdb` and the configuration: WAL for replicas, fsync and synchronous commit on, no
    /// synchronous standby, TLS for the replication connection.
    func initialize() throws {
        try Processes.check(
            side.bin + "/initdb",
            ["-D", data, "-U", "bench", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions"], as: side.runAs,
            timeout: 120, logs: side.logs, label: "initdb-\(name)")
        let tls = side.directory + "/tls"
        let settings = """

            # partitiondb-replication-bench
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = '\(sockets)'
            wal_level = replica
            fsync = on
            synchronous_commit = on
            synchronous_standby_names = ''
            full_page_writes = on
            max_wal_senders = 4
            hot_standby = on
            ssl = on
            ssl_cert_file = '\(tls)/server.crt'
            ssl_key_file = '\(tls)/server.key'
            ssl_min_protocol_version = 'TLSv1.3'

            """
        try append(settings, to: data + "/postgresql.conf")
        // Local clients (pgbench, psql) over the socket; replication only over TLS on loopback.
        try """
        local all bench trust
        hostssl replication bench 127.0.0.1/32 trust
        hostssl all bench 127.0.0.1/32 trust

        """.write(toFile: data + "/pg_hba.conf", atomically: false, encoding: .utf8)
    }

    /// `pg_basebackup -R` from `primary` into this server's folder, over TLS: the standby's
    /// configuration (`standby.signal`, `primary_conninfo`) is written by it.
    func baseBackup(from primary: Server) throws {
        try Processes.check(
            side.bin + "/pg_basebackup",
            [
                "-D", data, "-R", "-X", "stream", "-c", "fast", "-d",
                "host=127.0.0.1 port=\(primary.port) user=bench sslmode=require application_name=\(name)",
            ], as: side.runAs, timeout: side.settings.catchUpTimeout, logs: side.logs, label: "pg_basebackup-\(name)")
        try append("\nport = \(port)\n", to: data + "/postgresql.conf")
    }

    /// Starts `postgres` and waits until it accepts connections (a standby: once consistent).
    func start() throws {
        let child = try Processes.start(
            side.bin + "/postgres", ["-D", data], as: side.runAs, name: "postgres \(name)",
            log: side.logs + "/postgres-\(name).log", stopSignal: SIGINT)
        running.withLock { $0 = child }
        let deadline = monotonicNanoseconds() + 120_000_000_000
        while monotonicNanoseconds() < deadline {
            guard child.isRunning else {
                throw ReplicationBenchError.setup("postgres \(name) exited; its log ends:\n\(child.logTail())")
            }
            let ready = try Processes.run(
                side.bin + "/pg_isready", ["-q", "-t", "1"] + connection, timeout: 10, logs: side.logs,
                label: "pg_isready-\(name)")
            if ready.status == 0 { return }
            usleep(20_000)
        }
        throw ReplicationBenchError.timeout("postgres \(name) did not accept connections within 120 s")
    }

    /// The table, the record functions, and the server-side loops that sample and wait.
    func setUp() throws {
        try execute(
            """
            CREATE TABLE bench (key bytea PRIMARY KEY, value bytea NOT NULL);
            \(Records.sqlFunctions)
            -- replay_lag of the streaming standby every 10 ms, after 0.5 s, until 0.5 s before the end.
            CREATE FUNCTION sample_replay_lag(samples int) RETURNS SETOF float8 LANGUAGE plpgsql AS $$
            DECLARE
                lag interval;
            BEGIN
                PERFORM pg_sleep(0.5);
                FOR i IN 1..samples LOOP
                    SELECT replay_lag INTO lag FROM pg_stat_replication WHERE state = 'streaming' LIMIT 1;
                    IF lag IS NOT NULL THEN
                        RETURN NEXT extract(epoch FROM lag) * 1000;
                    END IF;
                    PERFORM pg_sleep(0.01);
                END LOOP;
            END $$;
            -- The time a standby first streams at the primary's newest LSN, or NULL after timeout_s.
            CREATE FUNCTION wait_for_streaming_standby(timeout_s float8) RETURNS float8 LANGUAGE plpgsql AS $$
            DECLARE
                deadline timestamptz := clock_timestamp() + timeout_s * interval '1 second';
            BEGIN
                LOOP
                    IF EXISTS (SELECT 1 FROM pg_stat_replication
                               WHERE state = 'streaming' AND replay_lsn >= pg_current_wal_lsn()) THEN
                        RETURN extract(epoch FROM clock_timestamp());
                    END IF;
                    IF clock_timestamp() > deadline THEN
                        RETURN NULL;
                    END IF;
                    PERFORM pg_sleep(0.002);
                END LOOP;
            END $$;
            """, timeout: 60)
    }

    func execute(_ sql: String, timeout: Double) throws {
        try Processes.check(
            side.bin + "/psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql] + connection,
            timeout: timeout, logs: side.logs, label: "psql-\(name)")
    }

    /// One value of one row, as text.
    func query(_ sql: String, timeout: Double = 60) throws -> String {
        try Processes.check(
            side.bin + "/psql",
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql] + connection,
            timeout: timeout, logs: side.logs, label: "psql-\(name)"
        ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func currentWAL() throws -> String { try query("SELECT pg_current_wal_lsn()") }

    /// The standby's replication connection is TLS 1.3, as PartitionDB's streams are.
    func checkReplicationUsesTLS() throws {
        let tls = try query(
            "SELECT count(*) FROM pg_stat_replication JOIN pg_stat_ssl USING (pid) WHERE ssl AND version = 'TLSv1.3'")
        guard tls == "1" else {
            throw ReplicationBenchError.verification("the standby's replication connection is not TLS 1.3")
        }
    }

    /// Waits (in the server, polling every 2 ms) until a standby streams at this primary's newest
    /// LSN; returns that moment in seconds since 1970.
    func waitForStreamingStandby(timeout: Double) throws -> Double {
        let text = try query("SELECT wait_for_streaming_standby(\(timeout))", timeout: timeout + 30)
        guard let moment = Double(text) else {
            throw ReplicationBenchError.timeout(
                "no standby streamed at the primary's LSN within \(Int(timeout)) s; the standby's log is in "
                    + side.logs)
        }
        return moment
    }

    /// `replay_lag` in milliseconds every 10 ms over a steady run of `seconds`.
    func sampleReplayLag(seconds: Double) throws -> [Double] {
        let samples = max(1, Int((seconds - 1) * 100))
        return try query("SELECT * FROM sample_replay_lag(\(samples))", timeout: seconds + 60)
            .split(separator: "\n").compactMap { Double($0) }
    }

    /// Stops the server (fast shutdown). Idempotent.
    func stop() {
        running.withLock { $0 }?.stop(seconds: 60)
        running.withLock { $0 = nil }
    }

    private func append(_ text: String, to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ReplicationBenchError.system(operation: "open", path: path, errno: errno)
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }
}

/// The number after `prefix` in `text` (pgbench's summary lines).
func number(after prefix: String, in text: String) -> Double? {
    guard let range = text.range(of: prefix) else { return nil }
    let digits = text[range.upperBound...].prefix { $0.isNumber || $0 == "." }
    return Double(digits)
}

/// The apparent size of every file under `path`.
func directorySize(_ path: String) throws -> Int {
    var total = 0
    guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
    while let name = enumerator.nextObject() as? String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path + "/" + name)
        if attributes[.type] as? FileAttributeType == .typeRegular {
            total += (attributes[.size] as? NSNumber)?.intValue ?? 0
        }
    }
    return total
}
