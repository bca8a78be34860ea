#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Descriptors 0, 1 and 2 kept open, so that no file of the database can take their numbers.
///
/// A process started with stdout closed (`pdb apply ... >&-`) has no descriptor 1; the first
/// `open` then returns 1, and every line `pdb` prints lands in that file. It was the database's
/// `LOCK`. Opening `/dev/null` onto each closed one, before anything else is opened, makes the
/// output vanish instead, which is what the shell asked for. Rule: spec/cli.md#conventions
enum StandardDescriptors {
    static func ensureOpen() {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            // The lower descriptors are open by now, so `open` returns `fd` itself; dup2 covers
            // a system where it would not.
            let opened = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            guard opened >= 0 else {
                // Without /dev/null there is nothing safe to put there; refuse to run rather than
                // risk writing into a database file.
                exit(70)
            }
            if opened != fd {
                _ = dup2(opened, fd)
                _ = close(opened)
            }
        }
    }
}
