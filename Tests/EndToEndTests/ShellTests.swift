import Foundation
import XCTest

/// `pdb shell` (spec/cli.md#pdb-shell): its commands from `-c` and standard input, on a
/// directory and through `pdb://`, and a person at a terminal: typing, Tab completion, history
/// with the arrow keys, Ctrl-C stopping a long scan without leaving the shell, Ctrl-D leaving.
final class ShellTests: ClusterTestCase {
    /// A database whose `users` holds `count` records k00000… of alice in table `profile`.
    func makeProfiles(_ count: Int) throws {
        try makeDatabase()
        var lines: [String] = []
        for i in 0..<count {
            let key = "k" + String(format: "%05d", i)
            lines.append(#"{"op":"put","table":"profile","key":"\#(key)","value":"value \#(i)","owner":"alice"}"#)
        }
        lines.append(#"{"op":"commit"}"#)
        assertExit(try pdb("apply", db, "users", "--no-sync", stdin: lines.joined(separator: "\n") + "\n"), 0)
    }

    func testCommandsRunFromDashCAndFromStandardInput() throws {
        try makeProfiles(30)
        let result = try pdb(
            "shell", db, "-c",
            "partitions; tables; get profile k00003; count profile; scan profile prefix k0002 limit 3; home alice; owner bob"
        )
        assertExit(result, 0)
        XCTAssertEqual(
            result.lines,
            [
                "  global  global  LSN 2", "* users   eu      LSN 1", "profile  30 records",
                "k00003 = value 3  [owner alice]", "30", "k00020 = value 20  [owner alice]",
                "k00021 = value 21  [owner alice]", "k00022 = value 22  [owner alice]", "(3 records)", "eu",
                "(0 records at LSN 1)",
            ])
        let json = try pdb("shell", db, "-c", "scan profile reverse limit 1 --json; stat --json")
        assertExit(json, 0)
        let objects = try json.objects()
        XCTAssertEqual(objects.first?["key"] as? String, "k00029")
        XCTAssertEqual(objects.last?["pages"] as? Int, try XCTUnwrap(objects.last?["pages"] as? Int))
        XCTAssertEqual(objects.last?["lsn"] as? Int, 1)
        let tree = try pdb("shell", db, "-c", "tree profile")
        assertExit(tree, 0)
        XCTAssertEqual(tree.lines.first, "level  pages  cells  fill  kind")
        XCTAssertTrue(
            tree.lines.contains { $0.hasPrefix("0      1      30     ") && $0.hasSuffix("leaves") }, tree.stdout)
        XCTAssertEqual(tree.lines.last, "depth 1")

        // A failed command is reported on stderr; the others still run; the exit status is 1.
        let failing = try pdb(
            "shell", db, stdin: "get profile nope\nuse nowhere\nbogus\ncount profile\nquit\ncount profile\n")
        assertExit(failing, 1)
        XCTAssertEqual(failing.lines, ["30"], "one count, then quit")
        XCTAssertTrue(failing.stderr.contains("error: no record nope in table profile"), failing.stderr)
        XCTAssertTrue(failing.stderr.contains("error: there is no partition nowhere"), failing.stderr)
        XCTAssertTrue(failing.stderr.contains("error: unknown command bogus"), failing.stderr)
        // Read-only: the directory is opened as by the read-only commands.
        assertExit(try pdb("shell", db, "-c", "put profile x y"), 1)
    }

    func testWriteModeHasExplicitTransactions() throws {
        try makeProfiles(1)
        let run = try pdb(
            "shell", db, "--write", "-c",
            #"put profile bob "Bob B." owner alice; begin; put profile carl C owner alice; get profile carl; count profile; rollback; get profile carl; begin; del profile bob; put profile dan D owner alice; commit; scan profile"#
        )
        assertExit(run, 1)  // the `get` after the rollback finds nothing
        XCTAssertEqual(
            run.lines,
            [
                "committed at LSN 2", "carl = C  [owner alice]", "3", "rolled back 1 change",
                "committed 2 changes at LSN 3", "dan = D  [owner alice]", "k00000 = value 0  [owner alice]",
                "(2 records)",
            ])
        XCTAssertTrue(run.stderr.contains("error: no record carl in table profile"), run.stderr)
        XCTAssertEqual(try pdb("get", db, "users", "profile", "dan").stdout, "D\n")
        // The engine's rules hold inside a transaction; a refused write leaves it open.
        let refused = try pdb(
            "shell", db, "--write", "-c", "begin; put profile x y owner bob; put profile e E owner alice; commit")
        XCTAssertTrue(refused.stderr.contains("subject bob lives in region us"), refused.stderr)
        XCTAssertEqual(refused.lines, ["committed 1 change at LSN 4"])
        // A transaction still open when the input ends is rolled back.
        let open = try pdb("shell", db, "--write", stdin: "begin\nput profile f F owner alice\n")
        assertExit(open, 0)
        XCTAssertEqual(open.lines, ["rolled back 1 change"])
        assertExit(try pdb("get", db, "users", "profile", "f"), 1)
        assertExit(try pdb("check", db), 0)
    }

    func testAPersonAtATerminal() throws {
        try makeProfiles(50_000)
        let home = root.appendingPathComponent("home").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let driver = root.appendingPathComponent("drive.py").path
        try Data(Self.driver.utf8).write(to: URL(fileURLWithPath: driver))
        let run = try self.run(
            [driver, Self.binary.path, db, home], executable: URL(fileURLWithPath: "/usr/bin/python3"), timeout: 120)
        assertExit(run, 0)
        XCTAssertEqual(run.lines.count, 4, run.stdout)
        XCTAssertEqual(run.lines.first, "completion ok", "Tab completed a command and a table")
        XCTAssertEqual(run.lines.dropFirst().first, "history ok", "the up arrow brought the last line back")
        XCTAssertTrue(run.lines.dropFirst(2).first?.hasPrefix("interrupt ok after ") == true, run.stdout)
        XCTAssertEqual(run.lines.last, "exit 0", "Ctrl-D left the shell")
        let history = try String(contentsOfFile: home + "/.pdb_history", encoding: .utf8)
        XCTAssertTrue(history.contains("scan\\040profile"), history)
    }

    func testTheShellOfARunningHost() throws {
        // One host: the directory has no replica to wait for.
        try layOut(regions: "eu:1")
        try start("eu-1")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        assertExit(try remote("put", "eu-1", "users", "profile", "alice", "Alice A.", "--owner", "alice"), 0)
        let commands = try remote("shell", "eu-1", "-c", "count profile; get profile alice")
        assertExit(commands, 0)
        XCTAssertEqual(commands.lines, ["1", "alice = Alice A.  [owner alice]"])
        let replication = try remote("shell", "eu-1", "-c", "replication")
        assertExit(replication, 0)
        XCTAssertEqual(replication.lines.first?.hasPrefix("host eu-1 (region eu)"), true, replication.stdout)
        XCTAssertTrue(replication.lines.contains { $0.hasPrefix("users: primary") }, replication.stdout)
        // Lines on standard input: each runs on the host, with the partition chosen here.
        let lines = try remote("shell", "eu-1", stdin: "use global\ntables\nuse users\ncount profile\n")
        assertExit(lines, 0)
        XCTAssertEqual(lines.lines.first.map { $0.hasPrefix("homes") }, true, lines.stdout)
        XCTAssertEqual(lines.lines.last, "1")
    }

    /// Drives `pdb shell DIR` through a pseudo-terminal as a person would; prints one line per
    /// step that worked, and exits non-zero (with what it saw) on the first that did not.
    static let driver = #"""
        import os, pty, sys, select, time, fcntl, termios, struct, re, signal
        binary, db, home = sys.argv[1], sys.argv[2], sys.argv[3]
        # As from a terminal: no signal blocked (a test runner may block some in its children).
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["HOME"] = home
            os.environ["TERM"] = "xterm"
            os.execv(binary, [binary, "shell", db])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 10000, 200, 0, 0))
        seen = b""
        def expect(pattern, timeout=20):
            global seen
            deadline = time.time() + timeout
            while True:
                m = re.search(pattern.encode(), seen)
                if m:
                    seen = seen[m.end():]
                    return m
                left = deadline - time.time()
                if left <= 0:
                    sys.exit("timed out waiting for %r; saw %r" % (pattern, seen[-800:]))
                r, _, _ = select.select([fd], [], [], left)
                if r:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        sys.exit("the shell ended while waiting for %r; saw %r" % (pattern, seen[-800:]))
                    seen += data
        def send(text):
            # After a prompt appears, libedit may not have put the terminal in its mode yet: a key
            # typed that early is read by the line discipline instead. A person is slower than that.
            time.sleep(0.2)
            os.write(fd, text.encode())
        expect(r"pdb users> ")
        send("cou\t")
        time.sleep(0.3)
        send(" pro\t")
        time.sleep(0.3)
        send("\r")
        expect(r"\r\n50000\r\n")
        expect(r"pdb users> ")
        print("completion ok", flush=True)
        send("\x1b[A\r")
        expect(r"count profile")
        expect(r"\r\n50000\r\n")
        expect(r"pdb users> ")
        print("history ok", flush=True)
        send("scan profile\r")
        expect(r"k00100 = ")
        send("\x03")
        m = expect(r"\(stopped after (\d+) records\)")
        stopped = int(m.group(1))
        expect(r"\(interrupted\)")
        expect(r"pdb users> ")
        if stopped >= 50000: sys.exit("Ctrl-C did not stop the scan")
        print("interrupt ok after %d" % stopped, flush=True)
        send("get profile k00007\r")
        expect(r"k00007 = value 7")
        expect(r"pdb users> ")
        send("\x04")
        deadline = time.time() + 20
        pressed = time.time()
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done: break
            if time.time() - pressed > 3:
                # As a person would: press it again.
                send("\x04")
                pressed = time.time()
            if time.time() > deadline:
                os.kill(pid, 9)
                sys.exit("Ctrl-D did not end the shell; saw %r" % seen[-300:])
            try:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r: seen += os.read(fd, 65536)
            except OSError:
                pass
        print("exit", os.waitstatus_to_exitcode(status), flush=True)
        """#
}
