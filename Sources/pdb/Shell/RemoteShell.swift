import ArgumentParser
import Foundation

/// `pdb shell pdb://…` on a terminal, or with lines on standard input: each line runs on the
/// host as `pdb shell pdb://… -c "use P; LINE"` over the operator connection, with the
/// partition chosen here, so the host keeps no session and every command reads one committed
/// state there.
struct RemoteShell {
    let location: DatabaseArgument

    func run(interactive: Bool) throws {
        var current: String? = nil
        /// Runs `line` on the host and prints its answer; whether it succeeded.
        func send(_ line: String) -> Bool {
            let commands = (current.map { "use \"\($0)\"; " } ?? "") + line
            do {
                try Output.shared.flush()
                let answer = try RemoteClient.answer(
                    arguments: ["shell", location.directory, "-c", commands], location: location)
                FileHandle.standardOutput.write(Data(answer.stdout))
                FileHandle.standardError.write(Data(answer.stderr))
                return answer.status == 0
            } catch {
                Output.shared.note("error: \(describe(error).message)")
                return false
            }
        }
        /// A `use` is tried on the host first, then kept here.
        func runLine(_ line: String) -> Bool {
            let words = (try? ShellSession.words(line)) ?? []
            if words.first == "use", words.count == 2 {
                let chosen = words[1]
                guard send(line) else { return false }
                current = chosen
                return true
            }
            return send(line)
        }
        if interactive {
            let partitions =
                (try? RemoteClient.answer(
                    arguments: ["shell", location.directory, "-c", "partitions --json"], location: location))
                .map { answer in
                    String(decoding: answer.stdout, as: UTF8.self).split(separator: "\n").compactMap { line in
                        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["partition"]
                            as? String
                    }
                } ?? []
            try Interactive(
                prompt: { "pdb \(location.directory) \(current ?? "")> " },
                completer: { before, word in
                    let words = before.split(separator: " ")
                    let candidates =
                        words.isEmpty || (words == ["help"])
                        ? ShellSession.commands.map(\.name) : (words == ["use"] ? partitions : [])
                    return candidates.filter { $0.hasPrefix(word) }.sorted()
                },
                interruption: Interruption()
            ) { line, _ in _ = runLine(line) }.run()
            return
        }
        var failed = false
        while let line = Swift.readLine() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            if ShellSession.isQuit(trimmed) { break }
            failed = !runLine(trimmed) || failed
        }
        if failed { throw ExitCode.failure }
    }
}
