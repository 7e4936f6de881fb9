import CallFlow
import TestSupport
import Testing

/// Seeded random event sequences (deterministic: the seed is the test argument) that check
/// invariants after every event, covering state × event combinations no script thought of.
/// The harness already fails on a cancelled timer that was not pending, a timer scheduled
/// twice, and any timer left pending at rest.
@Suite("Random walks")
struct RandomWalkTests {
    /// What the client would perceive, rebuilt from the actions alone.
    struct Observed {
        var indicator: Indicator = .idle
        var toneOn = false
        var mediaOn = false
        var openRecords: Set<CallRecordID> = []
        var endedRecords: Set<CallRecordID> = []
        var invited: Set<CallLegID> = []
        var everScheduled: Set<CallFlowTimer> = []
    }

    static let callers = [marieke, checkIn, stranger]

    @Test("invariants hold along random event sequences", arguments: 0..<120 as Range<UInt64>)
    func randomWalk(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let policy: RingPolicy = seed.isMultiple(of: 2) ? .ringAll : .hunt(perPostTimeout: .seconds(7))
        var h = Harness(config(policy, posts: [postA, postB, postC], queueCallback: seed % 3 != 0))
        var seen = Observed()
        var nextIncoming: UInt64 = 1
        var trace: [String] = []

        for _ in 0..<250 {
            let status = h.flow.status
            let inFlight = status.legsInFlight
            let anyLeg: CallLegID? = inFlight.randomElement(using: &rng) ?? seen.invited.randomElement(using: &rng)
            var event: CallFlowEvent
            switch Int.random(in: 0..<20, using: &rng) {
            case 0, 1, 2: event = .shortPress
            case 3: event = .longPress
            case 4: event = Bool.random(using: &rng) ? .buttonStuck : .buttonReleased
            case 5: event = .provisional(anyLeg ?? out(1), code: [100, 180, 183].randomElement(using: &rng)!)
            case 6, 7: event = .answered(anyLeg ?? out(1))
            case 8: event = .failed(anyLeg ?? out(1), code: [nil, 404, 486, 487, 503].randomElement(using: &rng)!, reason: "x")
            case 9:
                event = .incomingCall(inc(nextIncoming), Self.callers.randomElement(using: &rng)!)
                nextIncoming += 1
            case 10: event = .remoteCancelled(anyLeg ?? inc(1))
            case 11: event = .remoteHungUp(anyLeg ?? inc(1))
            case 12: event = .network(up: Int.random(in: 0..<3, using: &rng) != 0)
            case 13: event = .registration(up: Bool.random(using: &rng))
            case 14: event = .postAvailability(postID: ["a", "b", "c"].randomElement(using: &rng)!, alive: Bool.random(using: &rng))
            case 15: event = .mediaFailed([.camera, .microphone, .speaker, .transport].randomElement(using: &rng)!)
            case 17: event = .connectionLost(anyLeg ?? out(1))
            case 16:
                // A stale timer: one scheduled earlier that is no longer pending.
                let stale = seen.everScheduled.subtracting(h.pendingTimers)
                guard let timer = stale.randomElement(using: &rng) else { continue }
                event = .timerFired(timer)
            default:
                // Time passes: the earliest pending timer fires.
                guard let timer = h.pendingTimers.first else { continue }
                event = .timerFired(timer)
            }

            let actions: [CallFlowAction]
            if case .timerFired(let timer) = event, h.pendingTimers.contains(timer) {
                actions = h.fire(timer)
            } else {
                actions = h.send(event)
            }
            trace.append("\(event) -> \(h.phase)")
            apply(actions, to: &seen, trace: trace)
            check(h.flow.status, seen, trace: trace)
        }
    }

    private func apply(_ actions: [CallFlowAction], to seen: inout Observed, trace: [String]) {
        // The answer is on record before camera and microphone open (a power cut between the
        // two must not leave an answered call without `answeredAt`).
        var answerLogged = false
        for action in actions {
            switch action {
            case .sendInvite(let leg, _):
                #expect(!seen.invited.contains(leg), "leg \(leg) invited twice\n\(trace.suffix(5))")
                seen.invited.insert(leg)
            case .setIndicator(let indicator): seen.indicator = indicator
            case .playTone(.ringback), .playTone(.incomingRing): seen.toneOn = true
            case .stopTone:
                #expect(seen.toneOn, "stopTone without a tone\n\(trace.suffix(5))")
                seen.toneOn = false
            case .startMedia:
                #expect(answerLogged, "media started before the answer was logged\n\(trace.suffix(5))")
                #expect(!seen.mediaOn, "media started twice\n\(trace.suffix(5))")
                seen.mediaOn = true
            case .stopMedia:
                #expect(seen.mediaOn, "stopMedia without media\n\(trace.suffix(5))")
                seen.mediaOn = false
            case .stopVideo:
                #expect(seen.mediaOn, "stopVideo without media\n\(trace.suffix(5))")
            case .callLog(.started(let record, _, _)):
                #expect(!seen.openRecords.contains(record) && !seen.endedRecords.contains(record))
                seen.openRecords.insert(record)
            case .callLog(.answered(let record, _)):
                answerLogged = true
                #expect(seen.openRecords.contains(record), "answered record \(record) not open\n\(trace.suffix(5))")
            case .callLog(.ended(let record, _, _, _)):
                #expect(seen.openRecords.contains(record), "ended record \(record) not open\n\(trace.suffix(5))")
                seen.openRecords.remove(record)
                seen.endedRecords.insert(record)
            case .scheduleTimer(let timer, _):
                seen.everScheduled.insert(timer)
            case .cancelInvite(let leg):
                #expect(seen.invited.contains(leg), "cancel for a leg never invited\n\(trace.suffix(5))")
            case .playTone(.pressAck), .cancelTimer, .answer, .reject, .sendBye, .playPrompt, .queueCallbackRequest, .centraleReached:
                break
            }
        }
    }

    private func check(_ status: CallFlowStatus, _ seen: Observed, trace: [String]) {
        let context = Comment(rawValue: trace.suffix(6).joined(separator: "\n"))
        // The light always matches the state: feedback came with every transition.
        let expectedIndicators: [Indicator] =
            switch status.phase {
            case .idle: [.idle]
            case .fault: [.fault]
            case .callingCentrale, .ringingOut: [.calling]
            case .incomingRinging: [.ringing]
            case .inCall: [.inCall]
            case .ending, .connectionLost: [.idle, .fault]
            case .unreachable: [.unreachable]
            }
        #expect(expectedIndicators.contains(seen.indicator), context)
        // Ringing sounds exactly while something rings; camera and microphone only in a call.
        #expect(seen.toneOn == (status.phase == .ringingOut || status.phase == .incomingRinging), context)
        #expect(seen.mediaOn == (status.phase == .inCall), context)
        // One call-log record is open exactly while a call is under way.
        let active: Set<CallFlowStatus.Phase> = [.callingCentrale, .ringingOut, .incomingRinging, .inCall]
        #expect(seen.openRecords.count == (active.contains(status.phase) ? 1 : 0), context)
        if status.phase == .inCall || status.phase == .incomingRinging {
            #expect(status.legsInFlight.count == 1, context)
        }
        if !active.contains(status.phase) {
            #expect(status.legsInFlight.isEmpty, context)
        }
    }
}
