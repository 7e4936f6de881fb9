public import Devices

/// I420 (the decoder's and the camera's format) to XRGB8888 (the connector's), scaled into a
/// rectangle of a `ScreenImage` in one pass.
///
/// Scaling is nearest-neighbour: a camera picture of 640×480 is enlarged about 1.7× on a
/// 1280×800 panel, where bilinear filtering would soften it slightly but cost roughly four
/// times the memory reads per pixel. Nearest keeps the conversion at a few milliseconds a
/// frame on one core (see `screen-benchmark`), which leaves the core to the codecs. Colour is
/// BT.601 limited range (what libvpx produces and V4L2 webcams deliver), in 8.8 fixed point
/// with per-component lookup tables.
public enum I420Converter {
    private struct Tables: Sendable {
        var luma = [Int32](repeating: 0, count: 256)
        var redFromV = [Int32](repeating: 0, count: 256)
        var greenFromU = [Int32](repeating: 0, count: 256)
        var greenFromV = [Int32](repeating: 0, count: 256)
        var blueFromU = [Int32](repeating: 0, count: 256)
        /// Clamps (value >> 8) from -512…767 into 0…255, indexed with an offset of 512.
        var clamp = [UInt32](repeating: 0, count: 1280)

        init() {
            for i in 0..<256 {
                let c = Int32(i)
                luma[i] = 298 * (c - 16) + 128
                redFromV[i] = 409 * (c - 128)
                greenFromU[i] = -100 * (c - 128)
                greenFromV[i] = -208 * (c - 128)
                blueFromU[i] = 516 * (c - 128)
            }
            for i in 0..<1280 { clamp[i] = UInt32(max(0, min(255, i - 512))) }
        }
    }

    private static let tables = Tables()

    /// Draws `frame` scaled to exactly `rect` (clipped to the image). Callers keep the aspect
    /// ratio by choosing `rect` with `Rect.fitting`.
    public static func draw(_ frame: VideoFrame, into image: inout ScreenImage, rect: Rect) {
        let visible = rect.clipped(width: image.width, height: image.height)
        guard !visible.isEmpty, rect.width > 0, rect.height > 0 else { return }
        let srcW = frame.width, srcH = frame.height
        let chromaW = srcW / 2
        let uOffset = frame.lumaCount, vOffset = frame.lumaCount + frame.chromaCount
        // Source column for every visible destination column, computed once per frame.
        var columns = [Int](repeating: 0, count: visible.width)
        for i in 0..<visible.width {
            columns[i] = min(srcW - 1, ((visible.x + i - rect.x) * srcW) / rect.width)
        }
        let imageWidth = image.width
        let t = Self.tables
        t.luma.withUnsafeBufferPointer { luma in
        t.redFromV.withUnsafeBufferPointer { rv in
        t.greenFromU.withUnsafeBufferPointer { gu in
        t.greenFromV.withUnsafeBufferPointer { gv in
        t.blueFromU.withUnsafeBufferPointer { bu in
        t.clamp.withUnsafeBufferPointer { clamp in
        columns.withUnsafeBufferPointer { columns in
        frame.planes.withUnsafeBufferPointer { src in
        image.pixels.withUnsafeMutableBufferPointer { dst in
            for row in 0..<visible.height {
                let sy = min(srcH - 1, ((visible.y + row - rect.y) * srcH) / rect.height)
                let yRow = sy * srcW
                let cRow = (sy / 2) * chromaW
                var out = (visible.y + row) * imageWidth + visible.x
                for column in 0..<visible.width {
                    let sx = columns[column]
                    let y = luma[Int(src[yRow + sx])]
                    let ci = cRow + sx / 2
                    let u = Int(src[uOffset + ci]), v = Int(src[vOffset + ci])
                    let r = clamp[Int((y + rv[v]) >> 8) + 512]
                    let g = clamp[Int((y + gu[u] + gv[v]) >> 8) + 512]
                    let b = clamp[Int((y + bu[u]) >> 8) + 512]
                    dst[out] = (r << 16) | (g << 8) | b
                    out += 1
                }
            }
        }}}}}}}}}
    }

    /// The XRGB colour of one I420 sample (for tests and the integration check).
    public static func colour(y: UInt8, u: UInt8, v: UInt8) -> UInt32 {
        let t = Self.tables
        let l = t.luma[Int(y)]
        let r = t.clamp[Int((l + t.redFromV[Int(v)]) >> 8) + 512]
        let g = t.clamp[Int((l + t.greenFromU[Int(u)] + t.greenFromV[Int(v)]) >> 8) + 512]
        let b = t.clamp[Int((l + t.blueFromU[Int(u)]) >> 8) + 512]
        return (r << 16) | (g << 8) | b
    }
}
