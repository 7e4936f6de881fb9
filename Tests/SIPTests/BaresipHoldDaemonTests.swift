import Foundation
import Testing

/// The built `beeldzorgd` in a call with a real baresip post (TLS through Kamailio, SRTP
/// mandatory) that puts it on hold and resumes (`hold`/`resume` over ctrl_tcp): the daemon
/// notes the hold and the resume and keeps its media session (same ports, same key), so after
/// the resume our SRTP still reaches baresip and decrypts there. A first version restarted media
/// on resume with new ports and a fresh key, and baresip could not decrypt ours any more
/// ("srtp: failed to decrypt RTP packet": it does not take a new key from the answer to its own
/// re-INVITE), which is what this test guards.
@Suite(.serialized) struct BaresipHoldDaemonTests {
    @Test func aBaresipPostHoldsAndResumesTheDaemonsCall() async throws {
        try await BaresipDaemonTests.withRegisteredDaemon(post: "holdpost") { post, _, daemon in
            try await daemon.waitFor("the post liveness check") { daemon.log.contains("post liveness") }
            try daemon.button("press")
            try await daemon.waitFor("the call to be up") { daemon.phase == "inCall" }
            try await post.next("CALL_ESTABLISHED")
            func media() -> [String: Any]? { daemon.status?["media"] as? [String: Any] }
            try await daemon.waitFor("SRTP audio from the post") { (media()?["audioPacketsReceived"] as? Int ?? 0) >= 25 }

            try await post.command("hold")
            try await daemon.waitFor("the daemon to take the hold") { daemon.log.contains("call held by the post") }
            #expect(daemon.phase == "inCall")

            try await post.command("resume")
            try await daemon.waitFor("the daemon to take the resume") { daemon.log.contains("call resumed by the post") }
            // Ours reaches baresip after the resume and decrypts there: its status line (sent/received
            // bit/s, averaged over a few seconds) shows it receiving, and it never fails to decrypt.
            let logBefore = post.log.count
            func receivedByPost() -> [Int] {
                post.log.dropFirst(logBefore).split(whereSeparator: \.isNewline).compactMap { line -> Int? in
                    guard let range = line.range(of: "audio=") else { return nil }
                    let figures = line[range.upperBound...].prefix { $0 != " " }.split(separator: "/")
                    return figures.count == 2 ? Int(figures[1]) : nil
                }
            }
            try await daemon.waitFor("baresip to receive our audio after the resume") { (receivedByPost().last ?? 0) > 10_000 }
            #expect(!post.log.contains("failed to decrypt"), "\(post.log.suffix(2000))")
            #expect((media()?["authenticationFailures"] as? Int) == 0)
            #expect(!(await post.all()).contains { $0.type == "CALL_CLOSED" })
            #expect(!daemon.log.contains("re-INVITE refused"), "\(daemon.log.suffix(3000))")
            // baresip 1.0.0 sends nothing after `hold` and did not start again after `resume` here
            // (its status line shows 0 bit/s sent while it receives ours), with our answer sendrecv
            // on unchanged ports and key; not yet tried against another post.
            let resumedAt = media()?["audioPacketsReceived"] as? Int ?? 0
            await withKnownIssue("baresip 1.0.0 does not send again after resume", isIntermittent: true) {
                try await daemon.waitFor("SRTP audio from the post after resuming", timeout: .seconds(5)) {
                    (media()?["audioPacketsReceived"] as? Int ?? 0) >= resumedAt + 50
                }
            }

            try daemon.button("long")
            try await post.next("CALL_CLOSED")
        }
    }
}
