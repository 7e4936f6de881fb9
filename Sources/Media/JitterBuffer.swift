// Audio jitter buffer: reorders packets by sequence number, holds a small reserve so a late
// packet still plays, and tells the playout loop when to conceal. Playout pulls one 20 ms
// frame per tick; the buffer never blocks.

/// What the playout loop should do for the next 20 ms.
public enum JitterBufferOutput: Sendable, Equatable {
    /// Decode this payload.
    case payload([UInt8])
    /// The packet is missing: conceal, using `next` (the following packet) if it is here.
    case missing(next: [UInt8]?)
    /// Not playing yet (filling) — play silence.
    case silence
}

/// Adaptive in the simplest way that keeps the delay low: it starts at `minimumFrames`
/// (40 ms), grows by one frame after each underrun up to `ceilingFrames` (60 ms), and
/// shrinks by one again after `calmPops` ticks (10 s) without an underrun.
public struct AudioJitterBuffer: Sendable {
    /// Frames held before playout starts (and after an underrun); adapts.
    public private(set) var targetFrames: Int
    public let minimumFrames: Int
    public let ceilingFrames: Int
    /// Above this the buffer drops the oldest frames to get back to the target delay.
    public let maximumFrames: Int
    public let calmPops: Int
    public private(set) var underruns = 0
    private var popsSinceUnderrun = 0
    private var packets: [UInt16: [UInt8]] = [:]
    private var nextSequence: UInt16?
    private var playing = false
    public private(set) var latePackets = 0
    public private(set) var droppedForDelay = 0
    private var consecutiveLate = 0

    public init(targetFrames: Int = 2, ceilingFrames: Int = 3, maximumFrames: Int = 8, calmPops: Int = 500) {
        self.minimumFrames = max(1, targetFrames)
        self.targetFrames = minimumFrames
        self.ceilingFrames = max(minimumFrames, ceilingFrames)
        self.maximumFrames = max(self.ceilingFrames + 1, maximumFrames)
        self.calmPops = max(1, calmPops)
    }

    public var count: Int { packets.count }

    public mutating func insert(sequence: UInt16, payload: [UInt8]) {
        if let nextSequence, !isNewer(sequence, than: nextSequence), sequence != nextSequence {
            latePackets += 1
            consecutiveLate += 1
            guard consecutiveLate > maximumFrames else { return }
            // Not late but renumbered (the peer restarted its stream): start over.
            packets = [:]
            self.nextSequence = nil
            playing = false
        }
        consecutiveLate = 0
        packets[sequence] = payload
        if packets.count > maximumFrames {
            // Delay has built up (a burst after a stall): skip ahead to the target.
            let ordered = packets.keys.sorted { isNewer($1, than: $0) }
            for sequence in ordered.prefix(packets.count - targetFrames) {
                packets[sequence] = nil
                droppedForDelay += 1
            }
            nextSequence = packets.keys.min { isNewer($1, than: $0) }
        }
    }

    public mutating func pop() -> JitterBufferOutput {
        if !playing {
            if let expected = nextSequence {
                // Anything older than what we were waiting for is too late to play.
                for key in packets.keys where isNewer(expected, than: key) { packets[key] = nil }
            }
            guard packets.count >= targetFrames else { return .silence }
            playing = true
            if nextSequence == nil || packets[nextSequence!] == nil {
                nextSequence = packets.keys.min { isNewer($1, than: $0) }
            }
        }
        guard let sequence = nextSequence else { return .silence }
        if packets.isEmpty {
            // Underrun: conceal this tick, then refill (to a deeper target) before playing
            // again, from the packet we were waiting for if it turns up.
            playing = false
            underruns += 1
            popsSinceUnderrun = 0
            targetFrames = min(ceilingFrames, targetFrames + 1)
            return .missing(next: nil)
        }
        popsSinceUnderrun += 1
        if popsSinceUnderrun >= calmPops, targetFrames > minimumFrames {
            popsSinceUnderrun = 0
            targetFrames -= 1
        }
        if let oldest = packets.keys.min(by: { isNewer($1, than: $0) }), oldest &- sequence > UInt16(maximumFrames),
           isNewer(oldest, than: sequence) {
            // A jump forward far beyond any loss burst we conceal: resynchronise on it.
            nextSequence = oldest &+ 1
            return .payload(packets.removeValue(forKey: oldest)!)
        }
        nextSequence = sequence &+ 1
        if let payload = packets.removeValue(forKey: sequence) { return .payload(payload) }
        return .missing(next: packets[sequence &+ 1])
    }
}
