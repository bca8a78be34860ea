import ArgumentParser
import Foundation
import PartitionDB
import Residency

#if canImport(Glibc)
    import Glibc
#endif

/// Fuzz target `apply`: the input is the stdin of `pdb apply DIR users --no-sync`. The target is
/// compiled together with the sources of `pdb` (all but `PDB.swift`, whose `@main` would clash
/// with libFuzzer's), so it runs the real command: `Apply.parse`, the transaction loop, the JSON
/// lines decoder (`RecordLine`), the engine writes with the residency check of the real
/// `ResidencyDirectory` (alice lives in eu, bob in us). Every input starts from the same small
/// database. Afterwards every partition must check clean. A crash, a hang, an error that `apply`
/// does not turn into an output line, or damage is a bug. Method: spec/testing.md#fuzzing

let directory = Scratch.databaseDirectory("apply")
let template = makeTemplate()

/// A database with partition `users` and two homes, as files.
func makeTemplate() -> [String: [UInt8]] {
    Scratch.reset(directory)
    try? FileManager.default.removeItem(atPath: directory + "/PARTITIONDB")
    do {
        let database = try Database.create(at: directory, region: try Region("eu"))
        let homes = try ResidencyDirectory(database: database)
        _ = try homes.assignHome(try SubjectID("alice"), to: try Region("eu"))
        _ = try homes.assignHome(try SubjectID("bob"), to: try Region("us"))
        try database.createPartition("users")
        try database.close()
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name != "LOCK" {
            files[name] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        }
        // Stdout goes nowhere: `apply` prints a line per transaction.
        let null = open("/dev/null", O_WRONLY)
        dup2(null, STDOUT_FILENO)
        close(null)
        return files
    } catch {
        fatalError("fuzz: cannot build the apply target's database: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    Scratch.reset(directory)
    for (name, bytes) in template where name != "PARTITIONDB" { Scratch.write(bytes, to: directory + "/" + name) }
    let input = Scratch.root + "/apply-input"
    Scratch.write(Array(UnsafeBufferPointer(start: data, count: size)), to: input)
    guard freopen(input, "r", stdin) != nil else { fatalError("fuzz: cannot reopen stdin") }
    do {
        let command = try Apply.parse([directory, "users", "--no-sync"])
        try command.run()
    } catch is ExitCode {
        // Some transaction aborted or rolled back: a correct answer.
    } catch {
        fatalError("fuzz: apply let an error escape: \(error)")
    }
    // A failed write to stdout is a correct answer too (the command then stops).
    try? Output.shared.flush()
    // Whatever the input, the database stays whole.
    guard let database = engine({ try Database.open(at: directory, region: try Region("eu")) }) else {
        fatalError("fuzz: the database does not open after apply")
    }
    defer { engine { try database.close() } }
    for name in ["users", "global"] {
        guard let partition = engine({ try database.partition(name) }) else {
            fatalError("fuzz: partition \(name) does not open after apply")
        }
        guard let report = engine({ try partition.check() }), report.isClean else {
            fatalError("fuzz: partition \(name) is damaged after apply")
        }
        readThrough(partition)
    }
    return 0
}
