import ArgumentParser

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print machine-readable JSON (see spec/cli.md) instead of text.")
    var json = false
}
