import Provisioning
import Testing

/// HealthSchedule as event → action scripts on a test clock (a `Duration` the script moves):
/// when a report is made, what is queued, what is sent and in which order.
@Suite struct HealthScheduleTests {
    typealias Schedule = HealthSchedule<String>

    /// The machine plus a clock and a report counter; `compose` is answered with "rN".
    struct Script {
        var schedule: Schedule
        var now: Duration = .zero
        var made = 0
        var persisted: [String]? = nil

        init(interval: Duration = .seconds(300), queueLimit: Int = 24) {
            schedule = Schedule(settings: .init(interval: interval, queueLimit: queueLimit))
        }

        mutating func advance(_ by: Duration) { now += by }

        /// Feeds a sample; answers every `compose` with a fresh report and records `persist`.
        /// Returns the other actions (compose reasons, sends, drops) in order.
        mutating func observe(faults: Set<String> = [], unregistered: Set<String> = []) -> [String] {
            run(schedule.observed(.init(faults: faults, unregisteredProxies: unregistered), at: now))
        }

        mutating func succeeded() -> [String] { run(schedule.sendSucceeded(at: now)) }
        mutating func failed() -> [String] { run(schedule.sendFailed(at: now)) }
        mutating func rejected() -> [String] { run(schedule.sendRejected(at: now)) }

        private mutating func run(_ actions: [Schedule.Action]) -> [String] {
            var pending = actions
            var log: [String] = []
            while !pending.isEmpty {
                switch pending.removeFirst() {
                case .compose(let reason, let faults):
                    made += 1
                    log.append("compose \(reason.rawValue) [\(faults.sorted().joined(separator: ","))]")
                    pending += schedule.enqueue("r\(made)", at: now)
                case .persist(let queue):
                    persisted = queue
                case .send(let report):
                    log.append("send \(report)")
                case .dropped(let count):
                    log.append("dropped \(count)")
                }
            }
            return log
        }
    }

    @Test func firstSampleReportsAtOnceThenEveryInterval() {
        var s = Script(interval: .seconds(300))
        #expect(s.observe() == ["compose start []", "send r1"])
        #expect(s.succeeded() == [])
        #expect(s.persisted == [])
        s.advance(.seconds(5))
        #expect(s.observe() == [])
        s.advance(.seconds(294))
        #expect(s.observe() == [])
        s.advance(.seconds(1))
        #expect(s.observe() == ["compose periodic []", "send r2"])
        #expect(s.succeeded() == [])
    }

    @Test func aFaultAppearingAndClearingIsReportedAtOnce() {
        var s = Script(interval: .seconds(300))
        _ = s.observe()
        _ = s.succeeded()
        s.advance(.seconds(5))
        #expect(s.observe(faults: ["device:camera"]) == ["compose faultsChanged [device:camera]", "send r2"])
        _ = s.succeeded()
        s.advance(.seconds(5))
        // The same fault again is no news.
        #expect(s.observe(faults: ["device:camera"]) == [])
        s.advance(.seconds(5))
        #expect(s.observe() == ["compose faultsChanged []", "send r3"])
        _ = s.succeeded()
        #expect(s.persisted == [])
    }

    @Test func notRegisteredBecomesAFaultAfterFiveMinutes() {
        var s = Script(interval: .seconds(600))
        #expect(s.observe(unregistered: ["sip:edge1"]) == ["compose start []", "send r1"])
        _ = s.succeeded()
        s.advance(.seconds(299))
        #expect(s.observe(unregistered: ["sip:edge1"]) == [])
        #expect(s.schedule.unregisteredSince["sip:edge1"] == .zero)
        s.advance(.seconds(1))
        #expect(s.observe(unregistered: ["sip:edge1"]) == ["compose faultsChanged [notRegistered:sip:edge1]", "send r2"])
        _ = s.succeeded()
        // Registered again: the fault clears at once.
        s.advance(.seconds(5))
        #expect(s.observe() == ["compose faultsChanged []", "send r3"])
        #expect(s.schedule.unregisteredSince.isEmpty)
    }

    @Test func aShortRegistrationGapIsNoFault() {
        var s = Script(interval: .seconds(600))
        _ = s.observe()
        _ = s.succeeded()
        s.advance(.seconds(10))
        #expect(s.observe(unregistered: ["sip:edge2"]) == [])
        s.advance(.seconds(200))
        #expect(s.observe() == [])
        // A new gap starts counting afresh.
        s.advance(.seconds(10))
        #expect(s.observe(unregistered: ["sip:edge2"]) == [])
        s.advance(.seconds(299))
        #expect(s.observe(unregistered: ["sip:edge2"]) == [])
    }

    @Test func offlineReportsQueueAndGoNewestFirstWhenTheServerReturns() {
        var s = Script(interval: .seconds(60))
        #expect(s.observe() == ["compose start []", "send r1"])
        #expect(s.failed() == [])
        #expect(s.schedule.isBackingOff)
        // A fault appears while offline: queued, not sent before the retry delay (5 s).
        s.advance(.seconds(2))
        #expect(s.observe(faults: ["device:camera"]) == ["compose faultsChanged [device:camera]"])
        #expect(s.persisted == ["r1", "r2"])
        s.advance(.seconds(3))
        #expect(s.observe(faults: ["device:camera"]) == ["send r2"])
        #expect(s.failed() == [])
        // The next retry waits twice as long (10 s).
        s.advance(.seconds(9))
        #expect(s.observe(faults: ["device:camera"]) == [])
        s.advance(.seconds(1))
        #expect(s.observe(faults: ["device:camera"]) == ["send r2"])
        #expect(s.failed() == [])
        // It clears, still offline.
        s.advance(.seconds(5))
        #expect(s.observe() == ["compose faultsChanged []"])
        #expect(s.persisted == ["r1", "r2", "r3"])
        // Back: the newest state first, then the older ones, newest to oldest.
        s.advance(.seconds(15))
        #expect(s.observe() == ["send r3"])
        #expect(s.succeeded() == ["send r2"])
        #expect(s.persisted == ["r1", "r2"])
        #expect(s.succeeded() == ["send r1"])
        #expect(s.succeeded() == [])
        #expect(s.persisted == [])
        #expect(!s.schedule.isBackingOff)
    }

    @Test func retryDelayIsCappedAtTheIntervalOrAMinute() {
        var s = Script(interval: .seconds(20))
        _ = s.observe()
        var waits: [Duration] = []
        for _ in 0..<4 {
            _ = s.failed()
            var waited = Duration.zero
            var sent = false
            while !sent {
                s.advance(.seconds(1))
                waited += .seconds(1)
                // No fault change, and the periodic report is composed and queued, not sent.
                sent = s.observe().contains { $0.hasPrefix("send") }
            }
            waits.append(waited)
        }
        #expect(waits == [.seconds(5), .seconds(10), .seconds(20), .seconds(20)])
    }

    @Test func theQueueIsBoundedAndDropsTheOldest() {
        var s = Script(interval: .seconds(10), queueLimit: 3)
        #expect(s.observe() == ["compose start []", "send r1"])
        _ = s.failed()
        var log: [String] = []
        for _ in 0..<4 {
            s.advance(.seconds(10))
            let out = s.observe()
            log += out
            if out.contains(where: { $0.hasPrefix("send") }) { _ = s.failed() }
        }
        #expect(log.filter { $0.hasPrefix("dropped") } == ["dropped 1", "dropped 1"])
        #expect(s.schedule.queue == ["r3", "r4", "r5"])
        #expect(s.persisted == ["r3", "r4", "r5"])
    }

    @Test func aRefusedReportLeavesTheQueueAndTheNextGoes() {
        var s = Script(interval: .seconds(60))
        _ = s.observe()
        _ = s.failed()
        s.advance(.seconds(2))
        _ = s.observe(faults: ["store"])
        s.advance(.seconds(5))
        #expect(s.observe(faults: ["store"]) == ["send r2"])
        #expect(s.rejected() == ["send r1"])
        #expect(s.persisted == ["r1"])
        #expect(s.succeeded() == [])
        #expect(s.persisted == [])
    }

    @Test func restoredReportsAreSentAfterTheFreshOne() {
        var s = Script(interval: .seconds(60))
        #expect(s.schedule.restored(["old1", "old2"]) == [])
        #expect(s.observe() == ["compose start []", "send r1"])
        #expect(s.succeeded() == ["send old2"])
        #expect(s.succeeded() == ["send old1"])
        #expect(s.succeeded() == [])
        #expect(s.persisted == [])
    }

    @Test func oneReportInFlightAtATime() {
        var s = Script(interval: .seconds(10))
        #expect(s.observe() == ["compose start []", "send r1"])
        // The send takes long; a fault appears meanwhile: queued, no second send.
        s.advance(.seconds(3))
        #expect(s.observe(faults: ["device:button"]) == ["compose faultsChanged [device:button]"])
        #expect(s.succeeded() == ["send r2"])
        #expect(s.succeeded() == [])
    }
}
