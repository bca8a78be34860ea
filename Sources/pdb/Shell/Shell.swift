import ArgumentParser
import Dispatch
import Foundation
import PartitionDB

/// `pdb shell DIR|pdb://… [-c 'CMD; CMD']`: the operator's interactive view of a database
/// (spec/cli.md#pdb-shell), read-only. On a terminal: line editing, history, Tab completion,
/// paging, Ctrl-C to stop a long command, Ctrl-D to leave. Otherwise the commands of `-c`, or
/// of standard input's lines.
struct Shell: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect a database or a running host interactively (read-only unless --write).",
        discussion: """
            Commands: help, partitions, use, tables, get, scan, count, stat, owner, home, check, \
            quit; with --write also put, del, begin, commit, rollback. `help COMMAND` shows one. With -c, runs the commands given (separated by ;) and \
            exits; with standard input not a terminal, runs its lines. Exits 1 when a command \
            failed in those modes.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Option(name: .customShort("c"), help: "Commands to run, separated by ;, instead of reading them.")
    var commands: String?

    @Flag(help: "Allow put, del and transactions (begin, commit, rollback) on a database directory.")
    var write = false

    func validate() throws {
        if write, location.remoteAddress != nil {
            throw ValidationError(
                "--write works on a database directory; on a running host use pdb put, del or apply through pdb://")
        }
    }

    /// Whether this invocation runs on the operator's side and sends each line to the host
    /// (interactive or standard input over `pdb://`), rather than being sent whole.
    var runsLinesRemotely: Bool { location.remoteAddress != nil && commands == nil }

    func execute() throws {
        if let commands {
            let lines = try Self.split(commands)
            let failed = try location.withDatabase(readOnly: !write) { database, _ in
                let session = ShellSession(database: database, writable: write) { try Output.shared.line($0) }
                defer { session.end() }
                return runLines(lines, session: session)
            }
            if failed { throw ExitCode.failure }
            return
        }
        let interactive = isatty(0) == 1
        if location.remoteAddress != nil {
            return try RemoteShell(location: location).run(interactive: interactive)
        }
        try location.withDatabase(readOnly: !write) { database, _ in
            let session = ShellSession(database: database, writable: write) { try Output.shared.line($0) }
            defer { session.end() }
            if interactive {
                try Interactive(
                    prompt: { "pdb \(session.current ?? "")\(session.transaction == nil ? "" : "*")> " },
                    completer: { before, word in Self.complete(before, word, session: session) },
                    interruption: session.interruption
                ) { line, pager in
                    session.pager = pager
                    Self.runReporting(line, session: session)
                }.run()
            } else {
                var failed = false
                while let line = Swift.readLine() {
                    if ShellSession.isQuit(line) { break }
                    failed = !Self.runReporting(line, session: session) || failed
                }
                if failed { throw ExitCode.failure }
            }
        }
    }

    /// Runs each line; whether one failed.
    private func runLines(_ lines: [String], session: ShellSession) -> Bool {
        var failed = false
        for line in lines {
            if ShellSession.isQuit(line) { break }
            failed = !Self.runReporting(line, session: session) || failed
        }
        return failed
    }

    /// Runs `line`, printing a failure as `error: …` on stderr; whether it succeeded.
    @discardableResult
    static func runReporting(_ line: String, session: ShellSession) -> Bool {
        do {
            try session.run(line)
            try Output.shared.flush()
            return true
        } catch let problem as ShellSession.Problem {
            Output.shared.note("error: \(problem.message)")
        } catch {
            Output.shared.note("error: \(describe(error).message)")
        }
        return false
    }

    /// The `;`-separated commands of `-c` (a `;` inside "…" is kept).
    static func split(_ text: String) throws -> [String] {
        var commands: [String] = []
        var current = ""
        var inQuotes = false
        var escaped = false
        for character in text {
            if escaped {
                escaped = false
            } else if character == "\\" && inQuotes {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
            } else if character == ";" && !inQuotes {
                commands.append(current)
                current = ""
                continue
            }
            current.append(character)
        }
        commands.append(current)
        return commands.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Tab completion: commands first, then partitions after `use`, tables after the table
    /// commands, and keys after `get TABLE`.
    static func complete(_ before: String, _ word: String, session: ShellSession) -> [String] {
        let words = before.split(separator: " ").map(String.init)
        let candidates: [String]
        switch (words.first, words.count) {
        case (nil, _):
            candidates = ShellSession.commands.map(\.name)
        case ("use"?, 1):
            candidates = (try? session.database.partitionNames()) ?? []
        case ("get"?, 1), ("scan"?, 1), ("count"?, 1):
            candidates = session.tableNames()
        case ("get"?, 2):
            candidates = session.keys(of: words[1], prefix: word)
        case ("help"?, 1):
            candidates = ShellSession.commands.map(\.name)
        default:
            candidates = []
        }
        return candidates.filter { $0.hasPrefix(word) }.sorted()
    }
}

extension Shell: HostCommand {
    var writtenPartition: String? { nil }
}

/// The terminal loop: a prompt, a line, its command, until Ctrl-D or `quit`. Ctrl-C while a
/// command runs stops it (the shell stays); a scan pauses after each screenful.
struct Interactive {
    let prompt: () -> String
    let completer: LineEditor.Completer
    let interruption: Interruption
    let runLine: (String, (rows: Int, more: () -> Bool)?) -> Void

    init(
        prompt: @escaping () -> String, completer: @escaping LineEditor.Completer, interruption: Interruption,
        runLine: @escaping (String, (rows: Int, more: () -> Bool)?) -> Void
    ) {
        self.prompt = prompt
        self.completer = completer
        self.interruption = interruption
        self.runLine = runLine
    }

    func run() throws {
        let history = ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.pdb_history" }
        let editor = LineEditor(historyFile: history, completer: completer)
        // Ctrl-C: the running command stops at its next record; at the prompt it does nothing.
        Interruption.catchInterrupts()
        defer { editor.saveHistory() }
        let rows = max(Terminal.rows() - 2, 5)
        let pager: (rows: Int, more: () -> Bool)? =
            isatty(1) == 1
            ? (
                rows,
                {
                    guard let answer = editor.readLine(prompt: "-- more: Enter for the next page, q to stop -- ")
                    else { return false }
                    return !answer.lowercased().hasPrefix("q")
                }
            ) : nil
        try Output.shared.line("pdb shell: `help` lists the commands; Ctrl-D leaves.")
        try Output.shared.flush()
        while let line = editor.readLine(prompt: prompt()) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            editor.remember(trimmed)
            if ShellSession.isQuit(trimmed) { break }
            runLine(trimmed, pager)
            if interruption.take() {
                try? Output.shared.line("(interrupted)")
                try? Output.shared.flush()
            }
        }
    }
}

/// The terminal's height in rows (24 when it cannot be asked).
enum Terminal {
    static func rows() -> Int {
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return 24 }
        return Int(size.ws_row)
    }
}
