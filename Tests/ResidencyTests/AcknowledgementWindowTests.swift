import Synchronization
import XCTest

@testable import Residency

/// The primary's flow control (spec/replication.md#flow-control): a batch goes out only while
/// fewer than the limit are unacknowledged.
final class AcknowledgementWindowTests: XCTestCase {
    private final class Flag: Sendable {
        private let storage = Atomic(false)
        var isSet: Bool { storage.load(ordering: .acquiring) }
        func set() { storage.store(true, ordering: .releasing) }
    }

    /// Starts a sender waiting for room; its flag is set when it returns.
    private func waitingSender(_ window: AcknowledgementWindow, limit: Int) -> (Task<Void, Never>, Flag) {
        let returned = Flag()
        let task = Task {
            await window.waitForRoom(limit: limit)
            returned.set()
        }
        return (task, returned)
    }

    func testRoomWhileFewerThanTheLimitAreUnacknowledged() async {
        let window = AcknowledgementWindow()
        await window.waitForRoom(limit: 2)
        window.sent(through: 5)
        await window.waitForRoom(limit: 2)
        XCTAssertEqual(window.unacknowledged, 1)
    }

    func testASenderWaitsUntilAnAcknowledgementCoversABatch() async throws {
        let window = AcknowledgementWindow()
        window.sent(through: 5)
        window.sent(through: 9)
        let (task, returned) = waitingSender(window, limit: 2)
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertFalse(returned.isSet, "a sender went on with two batches unacknowledged")
        // An acknowledgement below the oldest batch (a heartbeat's answer of LSN 0 during a
        // snapshot, or one repeated) makes no room.
        window.acknowledged(0)
        window.acknowledged(4)
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertFalse(returned.isSet, "an acknowledgement of no batch made room")
        window.acknowledged(7)
        await task.value
        XCTAssertEqual(window.unacknowledged, 1)
        // One acknowledgement covers every batch up to its LSN.
        window.sent(through: 12)
        window.acknowledged(12)
        XCTAssertEqual(window.unacknowledged, 0)
    }

    /// After a snapshot of a restored or compacted partition, whose LSN may be lower than the
    /// batches of the old file still counted, the stream starts with an empty window.
    func testAResetForgetsTheBatchesInFlight() async {
        let window = AcknowledgementWindow()
        window.sent(through: 900)
        window.sent(through: 901)
        let (task, _) = waitingSender(window, limit: 2)
        window.reset()
        await task.value
        XCTAssertEqual(window.unacknowledged, 0)
        window.sent(through: 40)
        window.acknowledged(40)
        XCTAssertEqual(window.unacknowledged, 0)
    }

    func testClosingReleasesTheSenderAndEveryLaterWait() async throws {
        let window = AcknowledgementWindow()
        window.sent(through: 1)
        let (task, _) = waitingSender(window, limit: 1)
        try await Task.sleep(for: .milliseconds(20))
        window.close()
        await task.value
        await window.waitForRoom(limit: 1)
        XCTAssertEqual(window.unacknowledged, 1)
    }
}
