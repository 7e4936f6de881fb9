import Devices
import Testing

/// Rising zero crossings per second over a window: the dominant frequency of a clean sine.
private func frequency(_ s: ArraySlice<Int16>, rate: Int) -> Double {
    var crossings = 0
    var previous = s.first ?? 0
    for v in s.dropFirst() {
        if previous < 0 && v >= 0 { crossings += 1 }
        previous = v
    }
    return Double(crossings) * Double(rate) / Double(s.count)
}

private func peak(_ s: ArraySlice<Int16>) -> Int { s.map { abs(Int($0)) }.max() ?? 0 }

@Suite("Feedback tones")
struct FeedbackToneTests {
    @Test func ringbackIsDutch425HzOneSecondOnFourOff() {
        let clip = FeedbackTones.ringback(duration: .seconds(10))
        #expect(clip.samples.count == 480_000)
        let s = clip.samples
        #expect(abs(frequency(s[4800..<43200], rate: 48_000) - 425) < 5)
        #expect(peak(s[4800..<43200]) > 5000, "audible while on")
        #expect(peak(s[48_100..<240_000]) == 0, "silent for four seconds")
        #expect(peak(s[240_000 + 4800..<240_000 + 43200]) > 5000, "and again")
    }

    @Test func incomingRingIsDistinctFromRingback() {
        let ring = FeedbackTones.incomingRing(duration: .seconds(6))
        let s = ring.samples
        #expect(s.count == 288_000)
        #expect(peak(s[2400..<16800]) > 5000, "rings at once")
        #expect(peak(s[20_000..<28_000]) == 0, "gap between the two rings")
        #expect(peak(s[30_000..<46_000]) > 5000, "second ring")
        #expect(peak(s[60_000..<144_000]) == 0, "pause")
        #expect(peak(s[144_000 + 2400..<144_000 + 16800]) > 5000, "repeats every 3 s")
        let ringback = FeedbackTones.ringback(duration: .seconds(6))
        let different = ring != ringback
        #expect(different)
    }

    @Test func pressAckIsShortAndClickFree() {
        let ack = FeedbackTones.pressAck()
        #expect(ack.duration == .milliseconds(80))
        #expect(abs(Int(ack.samples.first!)) < 50 && abs(Int(ack.samples.last!)) < 50, "soft edges, no click")
        #expect(peak(ack.samples[...]) > 3000)
    }
}
