/// A picture that keeps a video encoder busy, for checking rate control: a pattern that moves
/// every frame with sensor-like noise on top, as a cheap camera gives in a dim room. The
/// noise is a fixed sequence per frame number, so a measurement can be repeated exactly.
public enum NoisyPicture {
    public static func render(width: Int, height: Int, frameNumber: Int, timestamp: Duration,
                              noise: Int = 24) -> VideoFrame {
        var planes = [UInt8](repeating: 128, count: width * height * 3 / 2)
        var state = UInt32(truncatingIfNeeded: 2_654_435_761 &* (frameNumber + 1))
        planes.withUnsafeMutableBufferPointer { luma in
            for y in 0..<height {
                for x in 0..<width {
                    state = state &* 1_664_525 &+ 1_013_904_223
                    let jitter = Int(state >> 24) % (2 * noise + 1) - noise
                    let base = ((x + 3 * frameNumber) ^ (y + 2 * frameNumber)) & 0xFF
                    luma[y * width + x] = UInt8(clamping: base + jitter)
                }
            }
        }
        return VideoFrame(width: width, height: height, planes: planes, timestamp: timestamp)
    }
}
