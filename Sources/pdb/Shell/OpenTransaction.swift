import Foundation
import PartitionDB

/// An explicit transaction of `pdb shell --write` (`begin` … `commit` or `rollback`), open
/// across prompts. The engine's write transactions live inside a closure, so one runs on a
/// thread of its own for as long as the transaction is open, and each command of the shell is
/// handed to it; the shell waits for each. While it is open the partition's writer lock is held
/// (other writers wait, as with SQLite's `BEGIN IMMEDIATE`), and reads in the shell see its
/// changes.
final class OpenTransaction: @unchecked Sendable {
    let partition: String
    /// How many writes it holds.
    private(set) var writes = 0

    private enum Request {
        case work((WriteTransaction) throws -> Void)
        case commit
        case rollback
    }

    private struct RolledBack: Error {}

    // The shell's thread and the transaction's take turns: one request, one answer.
    private let requested = DispatchSemaphore(value: 0)
    private let answered = DispatchSemaphore(value: 0)
    private var request: Request?
    private var failure: (any Error)?
    private var committed: LSN?
    private var finished = false

    /// Opens a durable write transaction of `partition`; throws what opening it throws.
    init(_ partition: Partition) throws {
        self.partition = partition.name
        let thread = Thread { [self] in
            do {
                committed = try partition.write(durability: .durable) { tx in
                    // The transaction is open: the shell may go on.
                    answered.signal()
                    while true {
                        requested.wait()
                        switch request! {
                        case .work(let body):
                            do {
                                try body(tx)
                                failure = nil
                            } catch {
                                failure = error
                            }
                            answered.signal()
                        case .commit:
                            return tx.lsn
                        case .rollback:
                            throw RolledBack()
                        }
                    }
                }
                failure = nil
            } catch is RolledBack {
                failure = nil
            } catch {
                failure = error
            }
            finished = true
            answered.signal()
        }
        thread.start()
        answered.wait()
        if finished, let failure { throw failure }
    }

    /// Runs `body` in the transaction; a failure leaves the transaction open.
    func run<T>(write: Bool, _ body: @escaping (WriteTransaction) throws -> T) throws -> T {
        var result: T?
        request = .work { tx in result = try body(tx) }
        requested.signal()
        answered.wait()
        if let failure { throw failure }
        if write { writes += 1 }
        return result!
    }

    /// Commits; the commit's LSN.
    func commit() throws -> LSN {
        request = .commit
        requested.signal()
        answered.wait()
        if let failure { throw failure }
        return committed!
    }

    /// Rolls back everything since `begin`.
    func rollback() {
        request = .rollback
        requested.signal()
        answered.wait()
    }
}
