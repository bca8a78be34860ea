import Foundation

/// What Linux's `/proc` says about a running process: the state of each of its threads, where
/// each waits in the kernel, and counters of the work it has done. Two snapshots a minute apart
/// tell a process that waits on a slow disk (a thread in `D`, or counters that moved) from one
/// that hangs (every thread asleep, nothing moved), and the text of a snapshot says where.
struct ProcessSnapshot {
    struct Thread {
        var id: String
        var name: String
        /// The one-letter state of `/proc/PID/task/TID/stat`: R running, S sleeping, D disk...
        var state: String
        /// The kernel function the thread sleeps in, "0" when it runs.
        var waitChannel: String
        /// The kernel stack (readable by root only; empty otherwise).
        var kernelStack: String
    }

    let pid: Int32
    let threads: [Thread]
    /// User and system clock ticks of the whole process.
    let cpuTicks: UInt64
    /// Read and write system calls the process has made.
    let systemCalls: UInt64

    /// Nil when the process is gone.
    init?(pid: Int32) {
        let base = "/proc/\(pid)"
        guard let stat = ProcessSnapshot.read("\(base)/stat") else { return nil }
        self.pid = pid
        cpuTicks = ProcessSnapshot.cpuTicks(stat)
        var calls: UInt64 = 0
        for line in (ProcessSnapshot.read("\(base)/io") ?? "").split(separator: "\n")
        where line.hasPrefix("syscr:") || line.hasPrefix("syscw:") {
            calls += UInt64(line.split(separator: " ").last ?? "") ?? 0
        }
        systemCalls = calls
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: "\(base)/task")) ?? []
        threads = ids.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { id in
            let task = "\(base)/task/\(id)"
            let stat = ProcessSnapshot.read("\(task)/stat") ?? ""
            return Thread(
                id: id,
                name: (ProcessSnapshot.read("\(task)/comm") ?? "?").trimmingCharacters(in: .whitespacesAndNewlines),
                state: ProcessSnapshot.fieldsAfterName(stat).first.map(String.init) ?? "?",
                waitChannel: ProcessSnapshot.read("\(task)/wchan") ?? "?",
                kernelStack: ProcessSnapshot.read("\(task)/stack") ?? "")
        }
    }

    /// Whether the process read or wrote anything between `earlier` and this snapshot, or waits
    /// on the disk now: the signs of a slow machine rather than a hang. (CPU time alone is not:
    /// a thread that spins without system calls hangs.)
    func showsProgress(since earlier: ProcessSnapshot) -> Bool {
        systemCalls != earlier.systemCalls || threads.contains { $0.state == "D" }
    }

    /// One paragraph per thread: state, wait channel, kernel stack.
    var description: String {
        var text = "process \(pid): \(cpuTicks) CPU ticks, \(systemCalls) read/write calls\n"
        for thread in threads {
            text += "  thread \(thread.id) \(thread.name): state \(thread.state), waits in \(thread.waitChannel)\n"
            for frame in thread.kernelStack.split(separator: "\n").prefix(12) { text += "    \(frame)\n" }
        }
        return text
    }

    /// The user-space stacks of every thread, from `gdb` or the toolchain's `lldb`, whichever
    /// runs here; a note why not otherwise. Each debugger gets 60 s.
    static func userStacks(pid: Int32) -> String {
        let debuggers = [
            ["gdb", "-batch", "-p", String(pid), "-ex", "thread apply all bt"],
            ["lldb", "--batch", "-p", String(pid), "-o", "thread backtrace all"],
        ]
        var notes: [String] = []
        for arguments in debuggers {
            let (status, text) = run(arguments, timeout: 60)
            // Only the frames and thread headers: gdb also prints pages of symbol-reading noise.
            let frames = text.split(separator: "\n").filter {
                $0.hasPrefix("#") || $0.hasPrefix("Thread ") || $0.hasPrefix("* thread") || $0.hasPrefix("  thread")
                    || $0.hasPrefix("    frame")
            }
            if status == 0 { return frames.prefix(200).joined(separator: "\n") }
            notes.append("\(arguments[0]): \(text.split(separator: "\n").last ?? "exit \(status)")")
        }
        return "no user-space stacks (" + notes.joined(separator: "; ") + ")"
    }

    /// Runs a program found on the PATH; its exit status (-1 when it did not start or finish in
    /// `timeout`) and its stdout and stderr together.
    private static func run(_ arguments: [String], timeout: TimeInterval) -> (Int32, String) {
        let program = Process()
        program.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        program.arguments = arguments
        let output = Pipe()
        program.standardOutput = output
        program.standardError = output
        do { try program.run() } catch { return (-1, "\(error)") }
        let collected = CollectedOutput()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            collected.data = output.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            program.terminate()
            return (-1, "did not finish in \(Int(timeout)) s")
        }
        program.waitUntilExit()
        return (program.terminationStatus, String(decoding: collected.data, as: UTF8.self))
    }

    /// What the reader of a program's output collected; read after the semaphore says it is done.
    private final class CollectedOutput: @unchecked Sendable {
        var data = Data()
    }

    private static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The fields of a `stat` line after `(comm)`, which may itself hold spaces and parentheses.
    private static func fieldsAfterName(_ stat: String) -> [Substring] {
        guard let close = stat.lastIndex(of: ")") else { return [] }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    /// utime + stime: fields 14 and 15 of `stat`, the 12th and 13th after the name.
    private static func cpuTicks(_ stat: String) -> UInt64 {
        let fields = fieldsAfterName(stat)
        guard fields.count > 12 else { return 0 }
        return (UInt64(fields[11]) ?? 0) + (UInt64(fields[12]) ?? 0)
    }
}
