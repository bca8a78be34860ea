import NIOConcurrencyHelpers
import NIOPosix

/// Hashes and verifies passwords with Argon2id on a pool of its own threads, never on an event
/// loop or the cooperative pool. Each running hash holds `parameters.memoryKiB` of memory, so at
/// most `concurrency` run at once (2 x 19 MiB by default) and up to `maxQueued` more wait their
/// turn; past that a request is refused at once with `AuthError.busy` instead of queueing
/// without bound. A flood of logins therefore costs bounded memory and gets a clear answer.
public final class PasswordHasher: Sendable {
    /// The parameters new hashes get; a verified hash with others `needsRehash`.
    public let parameters: PasswordParameters
    public let concurrency: Int
    public let maxQueued: Int
    private let threads: NIOThreadPool
    private let state = NIOLockedValueBox(State())

    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Void, any Error>] = []
        var peakRunning = 0
        var peakWaiting = 0
        var refused = 0
        var completed = 0
    }

    /// How busy the pool is, and has been.
    public struct Load: Sendable, Equatable {
        public var running: Int
        public var waiting: Int
        public var peakRunning: Int
        public var peakWaiting: Int
        /// Requests refused with `busy` because `maxQueued` were waiting.
        public var refused: Int
        /// Hashes and verifications that ran to the end (or failed in libargon2).
        public var completed: Int
    }

    public init(parameters: PasswordParameters = .owasp, concurrency: Int = 2, maxQueued: Int = 256) throws {
        try parameters.check()
        precondition(concurrency >= 1 && maxQueued >= 0, "a hashing pool needs a thread and a non-negative queue")
        self.parameters = parameters
        self.concurrency = concurrency
        self.maxQueued = maxQueued
        threads = NIOThreadPool(numberOfThreads: concurrency)
        threads.start()
    }

    /// Stops the pool's threads once the running hashes end; later calls throw.
    public func shutdown() async {
        try? await threads.shutdownGracefully()
    }

    /// The PHC string of `password` with a new random salt and `parameters`. The password rules
    /// are checked first (`PasswordRules`).
    public func hash(_ password: String) async throws -> PasswordHash {
        try PasswordRules.check(password)
        let parameters = parameters
        var random = SystemRandomNumberGenerator()
        let salt = (0..<PasswordHash.saltBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
        let phc = try await run {
            try Argon2id.hash(password: Array(password.utf8), salt: salt, parameters: parameters)
        }
        return try PasswordHash(phc: phc)
    }

    /// Whether `password` matches `hash`, in the time of one hash with `hash`'s parameters.
    public func verify(_ password: String, against hash: PasswordHash) async throws -> Bool {
        try await run { try Argon2id.verify(password: Array(password.utf8), hash: hash) }
    }

    /// Spends the time and memory of one verification with `parameters` and answers nothing: for
    /// a login that has no user or is locked out, so it takes as long as a wrong password.
    /// (The password's length barely matters to Argon2id: it is hashed once with BLAKE2b.)
    public func verifyNothing() async throws {
        _ = try await hash("not a password")
    }

    /// Whether `hash` was made with other parameters than the current ones.
    public func needsRehash(_ hash: PasswordHash) -> Bool { hash.parameters != parameters }

    public var load: Load {
        state.withLockedValue {
            Load(
                running: $0.running, waiting: $0.waiting.count, peakRunning: $0.peakRunning,
                peakWaiting: $0.peakWaiting, refused: $0.refused, completed: $0.completed)
        }
    }

    /// `body` on a pool thread once one of the `concurrency` places is free.
    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await threads.runIfActive(body)
    }

    private func acquire() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let answer: Result<Void, AuthError>? = state.withLockedValue { state in
                if state.running < concurrency {
                    state.running += 1
                    state.peakRunning = max(state.peakRunning, state.running)
                    return .success(())
                }
                guard state.waiting.count < maxQueued else {
                    state.refused += 1
                    return .failure(.busy(queued: state.waiting.count))
                }
                state.waiting.append(continuation)
                state.peakWaiting = max(state.peakWaiting, state.waiting.count)
                return nil
            }
            if let answer { continuation.resume(with: answer) }
        }
    }

    /// Hands the place to the longest-waiting request, or frees it.
    private func release() {
        let next: CheckedContinuation<Void, any Error>? = state.withLockedValue { state in
            state.completed += 1
            guard !state.waiting.isEmpty else {
                state.running -= 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
