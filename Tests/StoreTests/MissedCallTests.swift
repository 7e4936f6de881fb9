import Foundation
import Testing
@testable import Store

/// Issue 20, problem 3: a contact's call nobody took stays on the idle screen until the next
/// call with that contact. The call log is the one owner of that fact; these are its rules,
/// on a real SQLite file.
@Suite("Missed calls not yet returned")
struct MissedCallTests {
    let anna = "sip:anna@zorg.example"
    let piet = "sip:piet@zorg.example"

    func incoming(_ store: BeeldzorgStore, _ id: String, from peer: String, name: String?, at second: Int,
                  answered: Bool = false, outcome: CallOutcome) throws {
        try store.recordCallStarted(id: id, direction: .incoming, peerURI: peer, peerName: name, at: t(second))
        if answered { try store.recordAnswered(id: id, at: t(second + 5)) }
        try store.recordEnded(id: id, outcome: outcome, failureReason: nil, at: t(second + 30))
    }

    @Test func aMissedCallIsListedUntilTheNextAnsweredCallWithThatContact() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let store = try BeeldzorgStore(path: dir.dbPath)
        try incoming(store, "a1", from: anna, name: "Anna", at: 0, outcome: .missed)
        #expect(try store.missedCallsNotReturned() == [MissedCall(peerURI: anna, peerName: "Anna", at: t(0))])

        // Anna tries again and is missed again: one line, the newer time.
        try incoming(store, "a2", from: anna, name: "Anna", at: 600, outcome: .missed)
        // Piet calls while the client is in another call (busy): listed too, newest first.
        try incoming(store, "p1", from: piet, name: "Piet", at: 900, outcome: .busy)
        #expect(try store.missedCallsNotReturned() == [
            MissedCall(peerURI: piet, peerName: "Piet", at: t(900)),
            MissedCall(peerURI: anna, peerName: "Anna", at: t(600)),
        ])
        #expect(try store.missedCallsNotReturned(limit: 1).map(\.peerURI) == [piet])

        // Anna calls and the client answers: her line goes, Piet's stays.
        try incoming(store, "a3", from: anna, name: "Anna", at: 1200, answered: true, outcome: .answered)
        #expect(try store.missedCallsNotReturned().map(\.peerURI) == [piet])

        // A power cut and a restart keep what is still open.
        try store.close()
        let reopened = try BeeldzorgStore(path: dir.dbPath)
        #expect(try reopened.missedCallsNotReturned().map(\.peerURI) == [piet])
    }

    @Test func declinedStrangersAndOutgoingCallsAreNotMissedCalls() throws {
        let store = try BeeldzorgStore.inMemory()
        try incoming(store, "d", from: anna, name: "Anna", at: 0, outcome: .rejected)
        try incoming(store, "s", from: "sip:onbekend@elders.example", name: nil, at: 10, outcome: .notAContact)
        try store.recordCallStarted(id: "o", direction: .outgoing, peerURI: "centrale", peerName: "centrale", at: t(20))
        try store.recordEnded(id: "o", outcome: .unreachable, failureReason: "no post", at: t(50))
        #expect(try store.missedCallsNotReturned().isEmpty)
    }

    @Test func aCallAnsweredAfterwardButInterruptedStillSettlesIt() throws {
        // Answered, then the power went: the client did speak with Anna.
        let store = try BeeldzorgStore.inMemory()
        try incoming(store, "a1", from: anna, name: "Anna", at: 0, outcome: .missed)
        try incoming(store, "a2", from: anna, name: "Anna", at: 100, answered: true, outcome: .connectionLost)
        #expect(try store.missedCallsNotReturned().isEmpty)
        // A call missed after that one is new again.
        try incoming(store, "a3", from: anna, name: "Anna", at: 500, outcome: .missed)
        #expect(try store.missedCallsNotReturned() == [MissedCall(peerURI: anna, peerName: "Anna", at: t(500))])
    }
}
