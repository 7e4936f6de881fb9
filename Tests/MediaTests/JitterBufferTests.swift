import Testing
@testable import Media

@Suite struct JitterBufferTests {
    static func payload(_ sequence: UInt16) -> [UInt8] { [UInt8(sequence >> 8), UInt8(sequence & 0xFF)] }

    @Test func waitsForTheTargetThenPlaysInOrder() {
        var buffer = AudioJitterBuffer(targetFrames: 2)
        buffer.insert(sequence: 11, payload: Self.payload(11))
        #expect(buffer.pop() == .silence)
        // Reordered: 10 arrives after 11.
        buffer.insert(sequence: 10, payload: Self.payload(10))
        #expect(buffer.pop() == .payload(Self.payload(10)))
        #expect(buffer.pop() == .payload(Self.payload(11)))
    }

    @Test func missingPacketIsConcealedWithTheNextOneForFEC() {
        var buffer = AudioJitterBuffer(targetFrames: 2)
        for sequence: UInt16 in [65_534, 0, 1] { buffer.insert(sequence: sequence, payload: Self.payload(sequence)) }
        #expect(buffer.pop() == .payload(Self.payload(65_534)))
        // 65535 is lost; 0 is here for FEC, and is still played afterwards.
        #expect(buffer.pop() == .missing(next: Self.payload(0)))
        #expect(buffer.pop() == .payload(Self.payload(0)))
        #expect(buffer.pop() == .payload(Self.payload(1)))
    }

    @Test func underrunConcealsThenRefillsDeeper() {
        var buffer = AudioJitterBuffer(targetFrames: 2, ceilingFrames: 3)
        buffer.insert(sequence: 1, payload: Self.payload(1))
        buffer.insert(sequence: 2, payload: Self.payload(2))
        #expect(buffer.pop() == .payload(Self.payload(1)))
        #expect(buffer.pop() == .payload(Self.payload(2)))
        #expect(buffer.pop() == .missing(next: nil))
        #expect(buffer.targetFrames == 3 && buffer.underruns == 1)
        buffer.insert(sequence: 4, payload: Self.payload(4))
        buffer.insert(sequence: 5, payload: Self.payload(5))
        #expect(buffer.pop() == .silence)
        buffer.insert(sequence: 6, payload: Self.payload(6))
        #expect(buffer.pop() == .payload(Self.payload(4)))
    }

    @Test func targetGrowsToTheCeilingAndShrinksWhenCalm() {
        var buffer = AudioJitterBuffer(targetFrames: 2, ceilingFrames: 3, calmPops: 50)
        var sequence: UInt16 = 0
        // Three underruns: the target stops at the 60 ms ceiling.
        for _ in 0..<3 {
            while buffer.pop() == .silence {
                buffer.insert(sequence: sequence, payload: Self.payload(sequence))
                sequence &+= 1
            }
            while case .payload = buffer.pop() {}
        }
        #expect(buffer.underruns == 3)
        #expect(buffer.targetFrames == 3)
        // A steady stream for 50 ticks: back to 40 ms.
        for _ in 0..<60 {
            buffer.insert(sequence: sequence, payload: Self.payload(sequence))
            sequence &+= 1
            _ = buffer.pop()
        }
        #expect(buffer.targetFrames == 2)
        #expect(buffer.underruns == 3)
    }

    @Test func latePacketsAreDroppedAndABurstIsTrimmed() {
        var buffer = AudioJitterBuffer(targetFrames: 2, maximumFrames: 4)
        buffer.insert(sequence: 100, payload: Self.payload(100))
        buffer.insert(sequence: 101, payload: Self.payload(101))
        #expect(buffer.pop() == .payload(Self.payload(100)))
        buffer.insert(sequence: 99, payload: Self.payload(99))
        #expect(buffer.latePackets == 1)
        for sequence: UInt16 in 102...106 { buffer.insert(sequence: sequence, payload: Self.payload(sequence)) }
        // When 105 makes five queued (101…105) > 4, the buffer trims back to the newest two
        // (104, 105); 106 then joins them.
        #expect(buffer.count == 3)
        #expect(buffer.droppedForDelay == 3)
        #expect(buffer.pop() == .payload(Self.payload(104)))
        #expect(buffer.pop() == .payload(Self.payload(105)))
    }

    @Test func renumberedStreamIsFollowedInBothDirections() {
        var buffer = AudioJitterBuffer(targetFrames: 2, maximumFrames: 4)
        buffer.insert(sequence: 1_000, payload: Self.payload(1_000))
        buffer.insert(sequence: 1_001, payload: Self.payload(1_001))
        #expect(buffer.pop() == .payload(Self.payload(1_000)))
        #expect(buffer.pop() == .payload(Self.payload(1_001)))
        // Forward jump: played at once instead of concealing 20 000 frames.
        buffer.insert(sequence: 21_000, payload: Self.payload(21_000))
        buffer.insert(sequence: 21_001, payload: Self.payload(21_001))
        #expect(buffer.pop() == .payload(Self.payload(21_000)))
        #expect(buffer.pop() == .payload(Self.payload(21_001)))
        // Backward jump: first taken as late, then followed.
        var outputs: [JitterBufferOutput] = []
        for sequence: UInt16 in 500...510 {
            buffer.insert(sequence: sequence, payload: Self.payload(sequence))
            outputs.append(buffer.pop())
        }
        #expect(outputs.contains(.payload(Self.payload(508))) || outputs.contains(.payload(Self.payload(509))))
    }
}
