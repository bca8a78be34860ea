// Small wrappers over the C library for files, memory and processes. The harness avoids
// Foundation so that the memory it adds to each engine's peak is only the Swift runtime's.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

func makeDirectory(_ path: String) throws {
    guard mkdir(path, 0o755) == 0 else { throw BenchError.system(operation: "mkdir", path: path, errno: errno) }
}

/// `mkdir -p`.
func makeDirectories(_ path: String) throws {
    if isDirectory(path) { return }
    let parent = parentDirectory(path)
    if parent != path, !parent.isEmpty { try makeDirectories(parent) }
    if mkdir(path, 0o755) != 0 && errno != EEXIST {
        throw BenchError.system(operation: "mkdir", path: path, errno: errno)
    }
}

func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// The names in directory `path`, without `.` and `..`.
func directoryEntries(_ path: String) throws -> [String] {
    guard let directory = opendir(path) else {
        throw BenchError.system(operation: "opendir", path: path, errno: errno)
    }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// The apparent size in bytes of every file under `path` (the sum of `st_size`).
func directorySize(_ path: String) throws -> Int {
    var total = 0
    for name in try directoryEntries(path) {
        let child = path + "/" + name
        var info = stat()
        guard lstat(child, &info) == 0 else { throw BenchError.system(operation: "stat", path: child, errno: errno) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            total += try directorySize(child)
        } else {
            total += Int(info.st_size)
        }
    }
    return total
}

/// `rm -r`, not following symbolic links.
func removeTree(_ path: String) throws {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in try directoryEntries(path) { try removeTree(path + "/" + name) }
        guard rmdir(path) == 0 else { throw BenchError.system(operation: "rmdir", path: path, errno: errno) }
    } else {
        guard unlink(path) == 0 else { throw BenchError.system(operation: "unlink", path: path, errno: errno) }
    }
}

func readTextFile(_ path: String) throws -> String {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { throw BenchError.system(operation: "open", path: path, errno: errno) }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw BenchError.system(operation: "read", path: path, errno: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half.
func writeTextFile(_ path: String, _ text: String) throws {
    let temporary = path + ".writing"
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard descriptor >= 0 else { throw BenchError.system(operation: "open", path: temporary, errno: errno) }
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 {
            if errno == EINTR { continue }
            let error = errno
            close(descriptor)
            throw BenchError.system(operation: "write", path: temporary, errno: error)
        }
        offset += written
    }
    close(descriptor)
    guard rename(temporary, path) == 0 else { throw BenchError.system(operation: "rename", path: path, errno: errno) }
}

/// The peak resident set size of this process in bytes: `VmHWM` from /proc/self/status on
/// Linux (anonymous memory plus resident file pages, so LMDB's touched map pages count), the
/// `getrusage` maximum elsewhere.
func peakResidentBytes() throws -> Int {
    #if os(Linux)
        let status = try readTextFile("/proc/self/status")
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 3, let value = Int(fields[1]), fields[2] == "kB" else { break }
            return value * 1024
        }
        throw BenchError.system(operation: "reading VmHWM", path: "/proc/self/status", errno: 0)
    #else
        var usage = rusage()
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
    #endif
}

/// The path of the running executable, to run it again as a child.
func currentExecutable() -> String {
    #if os(Linux)
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if count > 0 { return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    #endif
    return CommandLine.arguments[0]
}

/// Runs `executable` with `arguments`, sharing this process's standard streams, and returns its
/// exit status (128 + signal if it was killed).
func runChild(_ executable: String, _ arguments: [String]) throws -> Int32 {
    let argv = ([executable] + arguments).map { strdup($0) }
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let code = posix_spawn(&pid, executable, nil, nil, argv + [nil], environ)
    guard code == 0 else { throw BenchError.system(operation: "posix_spawn", path: executable, errno: code) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw BenchError.system(operation: "waitpid", path: executable, errno: errno) }
    }
    // The WIFEXITED / WEXITSTATUS macros, which Swift does not import.
    let signal = status & 0x7F
    return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
}

/// Runs each body on a thread of its own, all at once, and returns their results in order.
func runOnThreads<T>(_ bodies: [@Sendable () throws -> T]) throws -> [T] {
    let boxes = bodies.map { _ in ResultBox<T>() }
    var threads: [pthread_t] = []
    for (body, box) in zip(bodies, boxes) {
        // Each thread writes only its own box, which is read after the join.
        let task = ThreadTask { box.result = Result { try body() } }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(task).toOpaque()
        let code = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<ThreadTask>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard code == 0 else {
            Unmanaged<ThreadTask>.fromOpaque(context).release()
            for started in threads { pthread_join(started, nil) }
            throw BenchError.system(operation: "pthread_create", path: "-", errno: code)
        }
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    return try boxes.map { try $0.result!.get() }
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>? = nil
}

private final class ThreadTask: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Writes `text` to standard error, unbuffered (progress lines of children and parent interleave
/// cleanly).
func printError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}
