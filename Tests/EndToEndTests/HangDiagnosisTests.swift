import Foundation
import XCTest

/// The kill test's watch over its child: a child that waits for nothing it will get is reported
/// as hanging, with where it waits; a child that keeps making system calls gets more time.
final class HangDiagnosisTests: XCTestCase {
    func testAChildWaitingOnInputIsReportedAsHanging() throws {
        let child = try ApplyChild(binary: URL(fileURLWithPath: "/bin/cat"), arguments: [])
        defer { _ = child.kill() }
        guard case .timedOut(let diagnosis) = child.waitForLines(moreThan: 0, patience: 1, limit: 30) else {
            return XCTFail("cat without input printed a line or ended")
        }
        XCTAssertTrue(diagnosis.contains("no acknowledgement for"), diagnosis)
        XCTAssertTrue(diagnosis.contains("state S"), diagnosis)
        let kernelStackReadable = FileManager.default.isReadableFile(atPath: "/proc/self/stack")
        if kernelStackReadable {
            XCTAssertTrue(diagnosis.contains("pipe_read"), diagnosis)
        }
    }

    func testABusyChildGetsMoreTimeUpToTheLimit() throws {
        let loop = "while :; do echo busy > /dev/null; done"
        let child = try ApplyChild(binary: URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", loop])
        defer { _ = child.kill() }
        let started = Date()
        guard case .timedOut(let diagnosis) = child.waitForLines(moreThan: 0, patience: 1, limit: 3) else {
            return XCTFail("the loop printed a line or ended")
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 3, diagnosis)
    }
}
