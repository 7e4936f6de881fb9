@testable import Devices
import Foundation
import Logging
import Testing

@Suite("Test and demo button (FIFO, stdin)")
struct LineButtonSourceTests {
    @Test func parsesCommands() {
        #expect(ButtonCommand(line: "press") == .press)
        #expect(ButtonCommand(line: "") == .press, "Enter on a terminal is a press")
        #expect(ButtonCommand(line: "  LONG\r") == .long)
        #expect(ButtonCommand(line: "l") == .long)
        #expect(ButtonCommand(line: "down") == .down)
        #expect(ButtonCommand(line: "up") == .up)
        #expect(ButtonCommand(line: "pres") == nil)
    }

    @Test func wholePressesGoThroughTheRecogniserOnAVirtualTimeline() {
        var feeder = ButtonCommandFeeder(recognizer: ButtonRecognizer())
        let t0: Duration = .seconds(100)
        #expect(feeder.apply(.press, realNow: t0) == [.shortPress])
        #expect(feeder.apply(.long, realNow: t0 + .milliseconds(1)) == [.longPress])
        #expect(feeder.offset > .seconds(2), "the long press moved the virtual clock ahead")
        #expect(feeder.nextDeadline == nil)
        // Raw edges after that are still ordered after the synthetic ones.
        #expect(feeder.apply(.down, realNow: t0 + .milliseconds(2)).isEmpty)
        let deadline = try! #require(feeder.nextDeadline)
        #expect(deadline == t0 + .milliseconds(2) + .milliseconds(30), "deadlines come back in real time")
        #expect(feeder.tick(realNow: t0 + .milliseconds(2) + .seconds(2)) == [.longPress])
    }

    @Test func aWholePressRightAfterARawReleaseStillCounts() {
        var feeder = ButtonCommandFeeder(recognizer: ButtonRecognizer())
        let t0: Duration = .seconds(50)
        #expect(feeder.apply(.down, realNow: t0).isEmpty)
        #expect(feeder.tick(realNow: t0 + .seconds(3)) == [.longPress])
        #expect(feeder.apply(.up, realNow: t0 + .seconds(3)).isEmpty)
        // 1 ms later, long before the release has settled:
        #expect(feeder.apply(.press, realNow: t0 + .seconds(3) + .milliseconds(1)) == [.shortPress])
    }

    @Test func fifoDrivesTheSameEvents() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("button.fifo")
        let source = try LineButtonSource.fifo(
            path: path, timing: ButtonTiming(debounce: .milliseconds(20), longPress: .milliseconds(200), stuckAfter: .seconds(5)))
        let received = Recorder<ButtonEvent>()
        let stream = source.events()
        let consumer = Task { for await e in stream { received.append(e) } }

        func say(_ text: String) {
            // Each writer opens and closes, as `echo press > fifo` does.
            let fd = open(path, O_WRONLY)
            precondition(fd >= 0)
            _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
            close(fd)
        }

        say("press\nbogus\nlong\n")
        #expect(await eventually { received.all == [.shortPress, .longPress] })

        // Raw edges are timed by arrival: down held past the long-press time is a long press.
        say("down\n")
        #expect(await eventually { received.all == [.shortPress, .longPress, .longPress] })
        say("up\n")
        // Input timing, not an assertion: a real finger stays off longer than the debounce.
        try await Task.sleep(for: .milliseconds(60))
        // down+up in one write is shorter than the debounce: bounce, not a press.
        say("down\nup\n")
        try await Task.sleep(for: .milliseconds(60))
        #expect(received.count == 3, "a glitch would have been reported 20 ms after its up")
        say("press\n")
        #expect(await eventually { received.all.count == 4 })
        #expect(received.all == [.shortPress, .longPress, .longPress, .shortPress])

        source.stop()
        await consumer.value
    }

    @Test func standardInputStyleSourceEndsAtEndOfInput() async {
        var fds: [Int32] = [-1, -1]
        _ = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
        let source = LineButtonSource(
            fileDescriptor: fds[0], name: "test-stdin", closeOnStop: true,
            keyCode: KeyCode.enter, timing: ButtonTiming(), logger: Logger(label: "test"))
        let received = Recorder<ButtonEvent>()
        let stream = source.events()
        let consumer = Task { for await e in stream { received.append(e) } }
        let text = "\nl\n"
        _ = text.utf8CString.withUnsafeBufferPointer { write(fds[1], $0.baseAddress, $0.count - 1) }
        close(fds[1])
        await consumer.value  // finishes by itself at end of input
        #expect(received.all == [.shortPress, .longPress])
        source.stop()
    }
}
