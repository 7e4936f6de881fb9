/// What `volume` answers (`beeldzorgctl volume`): the levels the daemon keeps and sets, what
/// the mixer reads back now, and the limits. Levels in percent of the mixer element's range.
public struct VolumeReport: Codable, Sendable, Equatable {
    /// The levels the daemon keeps (one for prompts, ringing and calls alike).
    public var playback: Int
    public var capture: Int
    /// Read back from the mixer now (nil: no element, or the mixer could not be read).
    public var mixerPlayback: Int?
    public var mixerCapture: Int?
    public var floor: Int
    public var ceiling: Int
    /// Where the kept levels came from: `configuration`, `provisioning` or `technician`.
    public var source: String
    /// Why the mixer could not be read or set, if it could not.
    public var problem: String?

    public init(playback: Int, capture: Int, mixerPlayback: Int?, mixerCapture: Int?, floor: Int, ceiling: Int,
                source: String, problem: String?) {
        self.playback = playback
        self.capture = capture
        self.mixerPlayback = mixerPlayback
        self.mixerCapture = mixerCapture
        self.floor = floor
        self.ceiling = ceiling
        self.source = source
        self.problem = problem
    }
}
