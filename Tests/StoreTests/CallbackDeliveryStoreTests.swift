import Foundation
import Testing

@testable import Store

/// Issue 19: a callback request's delivery to the centrale, as the store keeps it across restarts.
@Suite struct CallbackDeliveryStoreTests {
    @Test func pendingAcknowledgedEscalatedClearedAndLinkedToTheCallback() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.recordCallStarted(id: "press", direction: .outgoing, peerURI: "centrale", peerName: "centrale", at: t(0))
        try store.recordEnded(id: "press", outcome: .unreachable, failureReason: "every post failed", at: t(60))
        try store.enqueueCallbackRequest(id: "cb", reason: "every post failed", callID: "press", pressedAt: t(0),
                                         postsTried: ["post-1", "post-2"], at: t(60))
        var outstanding = try store.outstandingCallbackRequests()
        #expect(outstanding.map(\.id) == ["cb"])
        #expect(outstanding[0].state == .pending)
        #expect(outstanding[0].pressedAt == t(0))
        #expect(outstanding[0].postsTried == ["post-1", "post-2"])

        try store.markCallbackEscalated(id: "cb", at: t(180))
        try store.markCallbackAcknowledged(id: "cb", at: t(181), by: "fallback")
        // A second acknowledgement (a late 2xx) keeps the first.
        try store.markCallbackAcknowledged(id: "cb", at: t(190), by: "primary")
        outstanding = try store.outstandingCallbackRequests()
        #expect(outstanding[0].state == .acknowledged)
        #expect(outstanding[0].acknowledgedAt == t(181))
        #expect(outstanding[0].acknowledgedBy == "fallback")
        #expect(outstanding[0].escalatedAt == t(180))

        // The centrale calls back: the request is done and that call points at it.
        try store.recordCallStarted(id: "back", direction: .incoming, peerURI: "sip:post1@h", peerName: nil, at: t(600))
        try store.markCallbacksCleared(ids: ["cb"], at: t(600), callID: "back")
        #expect(try store.outstandingCallbackRequests().isEmpty)
        #expect(try store.callbackDeliveries().map(\.state) == [.cleared])
        #expect(try store.callbackRequestID(forCall: "back") == "cb")
        #expect(try store.callbackRequestID(forCall: "press") == nil)
    }
}
