import CEdit
import Foundation

/// Line editing, history and Tab completion for `pdb shell`, through libedit's readline
/// interface. This is the shell's one file of C calls: libedit keeps its state in globals, so
/// there is one editor per process.
final class LineEditor {
    /// Completes the word under the cursor: the line before it, and the word's start.
    typealias Completer = (_ before: String, _ word: String) -> [String]

    /// The completer libedit's callback asks (there is one editor per process).
    nonisolated(unsafe) private static var completer: Completer = { _, _ in [] }
    private let historyFile: String?

    init(historyFile: String?, completer: @escaping Completer) {
        self.historyFile = historyFile
        Self.completer = completer
        pdb_edit_setup(strdup("pdb")) { text, start, _ in
            pdb_edit_own_matches_only()
            let word = text.map { String(cString: $0) } ?? ""
            let line = pdb_edit_line().map { String(cString: $0) } ?? ""
            let before = String(line.utf8.prefix(Int(start))) ?? ""
            return LineEditor.matches(LineEditor.completer(before, word))
        }
        stifle_history(1000)
        if let historyFile { _ = read_history(historyFile) }
    }

    /// The next line typed after `prompt`, without its newline; nil at end of input (Ctrl-D).
    func readLine(prompt: String) -> String? {
        guard let raw = readline(prompt) else { return nil }
        defer { free(raw) }
        return String(cString: raw)
    }

    /// Adds `line` to the history (kept in the history file when the shell ends).
    func remember(_ line: String) {
        add_history(line)
    }

    func saveHistory() {
        if let historyFile { _ = write_history(historyFile) }
    }

    /// libedit's form of a completion: the matches' common prefix, each match, then NULL, all
    /// malloc'ed (libedit frees them); NULL for none.
    private static func matches(_ candidates: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard let first = candidates.first else { return nil }
        var common = first
        for candidate in candidates.dropFirst() {
            while !candidate.hasPrefix(common) { common.removeLast() }
        }
        let all = [common] + (candidates.count > 1 ? candidates : [])
        let slot = MemoryLayout<UnsafeMutablePointer<CChar>?>.stride
        // malloc'ed, since libedit frees it.
        let array = malloc(slot * (all.count + 1))!.bindMemory(
            to: UnsafeMutablePointer<CChar>?.self, capacity: all.count + 1)
        for (index, text) in all.enumerated() { array[index] = strdup(text) }
        array[all.count] = nil
        return array
    }
}
