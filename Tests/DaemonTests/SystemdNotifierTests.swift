import Daemon
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// SystemdNotifier against a real AF_UNIX datagram socket playing systemd's part: what
/// arrives must be exactly what sd_notify(3) would have sent, one datagram per call.
@Suite struct SystemdNotifierTests {

    // MARK: The sending side

    @Test func aFilesystemSocketReceivesEveryMessageVerbatim() throws {
        let receiver = try DatagramReceiver(filesystemIn: FileManager.default.temporaryDirectory.path)
        defer { receiver.close() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        #expect(notifier.socketPath == receiver.notifySocket)

        notifier.ready(status: "Geregistreerd bij de centrale")
        #expect(try receiver.next() == "READY=1\nSTATUS=Geregistreerd bij de centrale")
        notifier.status("In gesprek met post-utrecht-1")
        #expect(try receiver.next() == "STATUS=In gesprek met post-utrecht-1")
        notifier.watchdog()
        #expect(try receiver.next() == "WATCHDOG=1")
        notifier.stopping()
        #expect(try receiver.next() == "STOPPING=1")
        #expect(notifier.send("EXTEND_TIMEOUT_USEC=5000000"))
        #expect(try receiver.next() == "EXTEND_TIMEOUT_USEC=5000000")
        // One datagram per call, no stray extra ones (and no trailing NUL in any of them).
        #expect(try receiver.nextIfAny() == nil)
    }

    @Test func anAbstractSocketIsReachedThroughItsAtName() throws {
        let receiver = try DatagramReceiver(abstractName: "beeldzorg-test-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { receiver.close() }
        #expect(receiver.notifySocket.hasPrefix("@"))
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])

        notifier.ready(status: "Klaar")
        #expect(try receiver.next() == "READY=1\nSTATUS=Klaar")
        notifier.watchdog()
        #expect(try receiver.next() == "WATCHDOG=1")
        #expect(try receiver.nextIfAny() == nil)
    }

    @Test func nonASCIIStatusTextArrivesAsUTF8() throws {
        let receiver = try DatagramReceiver(filesystemIn: FileManager.default.temporaryDirectory.path)
        defer { receiver.close() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        notifier.status("Geen verbinding — opnieuw proberen over 5 s")
        let bytes = try #require(try receiver.nextBytes())
        #expect(bytes == Array("STATUS=Geen verbinding — opnieuw proberen over 5 s".utf8))
    }

    @Test(arguments: [[:], ["NOTIFY_SOCKET": ""]])
    func withoutANotifySocketNothingIsSent(environment: [String: String]) {
        let notifier = SystemdNotifier(environment: environment)
        #expect(notifier.socketPath == nil)
        #expect(notifier.send("READY=1") == false)
        // The convenience calls must not trap either.
        notifier.ready(status: "x")
        notifier.watchdog()
    }

    @Test func aSocketThatIsNotThereMakesSendReturnFalse() throws {
        let missing = FileManager.default.temporaryDirectory
            .appendingPathComponent("beeldzorg-no-such-socket-\(getpid())-\(UInt32.random(in: 0 ... .max))").path
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": missing])
        #expect(notifier.socketPath == missing)
        #expect(notifier.send("READY=1") == false)
    }

    @Test func aPathTooLongForSockaddrUnIsRefusedNotTruncated() {
        let long = "/tmp/" + String(repeating: "x", count: 200)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": long])
        #expect(notifier.send("READY=1") == false)
    }

    // MARK: The watchdog interval

    @Test(arguments: [
        ("30000000", Duration.seconds(15)),
        ("1000000", .milliseconds(500)),
        ("3", .microseconds(1)),
    ])
    func theWatchdogIntervalIsHalfOfWatchdogUsec(usec: String, expected: Duration) {
        let notifier = SystemdNotifier(environment: [
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": usec,
            "WATCHDOG_PID": "\(getpid())",
        ])
        #expect(notifier.watchdogInterval == expected)
    }

    @Test func withoutWatchdogPidTheWatchdogStillApplies() {
        // sd_watchdog_enabled(3): WATCHDOG_PID is optional; without it the watchdog is meant for us.
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "20000000"])
        #expect(notifier.watchdogInterval == .seconds(10))
    }

    @Test func aWatchdogMeantForAnotherProcessIsIgnored() {
        let other = getppid() == getpid() ? 1 : getppid()
        let notifier = SystemdNotifier(environment: [
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": "\(other)",
        ])
        #expect(notifier.watchdogInterval == nil)
    }

    @Test(arguments: [[:], ["WATCHDOG_USEC": "0"], ["WATCHDOG_USEC": "soon"], ["WATCHDOG_USEC": "-5"]])
    func noUsableWatchdogUsecMeansNoWatchdog(environment: [String: String]) {
        var environment = environment
        environment["WATCHDOG_PID"] = "\(getpid())"
        #expect(SystemdNotifier(environment: environment).watchdogInterval == nil)
    }
}
